#include "mill/eval/tasks.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <cstdlib>

#include "mill/base/atomic_file.hpp"
#include "mill/base/embedded.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/yaml_limits.hpp"
#include "mill/eval/answer_filter.hpp"
#include "mill/eval/engine.hpp"
#include "mill/eval/fewshot.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/prompt.hpp"

namespace mill {

std::string to_string(OutputType type) {
  switch (type) {
    case OutputType::logprobs: return "logprobs";
    case OutputType::generative: return "generative";
    case OutputType::perplexity: return "perplexity";
  }
  return "?";
}

namespace {

constexpr std::string_view kBuiltinPrefix = "builtin:";

// YAML has untyped scalars; quoted ones stay strings, plain ones become numbers/booleans/null when they read so.
nlohmann::json to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
    case YAML::NodeType::Sequence: {
      auto array = nlohmann::json::array();
      for (const auto& item : node) array.push_back(to_json(item));
      return array;
    }
    case YAML::NodeType::Map: {
      auto object = nlohmann::json::object();
      for (const auto& item : node) object[item.first.as<std::string>()] = to_json(item.second);
      return object;
    }
    case YAML::NodeType::Scalar: {
      const auto& text = node.Scalar();
      if (node.Tag() == "!") return text;  // quoted
      if (text == "true" || text == "True") return true;
      if (text == "false" || text == "False") return false;
      if (text == "~" || text == "null") return nullptr;
      if (!text.empty() && text.find_first_not_of("0123456789+-.eE") == std::string::npos &&
          text.find_first_of("0123456789") != std::string::npos) {
        char* end = nullptr;
        const long long integer = std::strtoll(text.c_str(), &end, 10);
        if (*end == '\0') return integer;
        const double real = std::strtod(text.c_str(), &end);
        if (*end == '\0') return real;
      }
      return text;
    }
  }
  return nullptr;
}

// `overlay` wins; objects merge key by key, anything else is replaced.
void merge_into(nlohmann::json& base, const nlohmann::json& overlay) {
  if (!base.is_object() || !overlay.is_object()) {
    base = overlay;
    return;
  }
  for (const auto& [key, value] : overlay.items()) {
    if (base.contains(key) && base[key].is_object() && value.is_object()) {
      merge_into(base[key], value);
    } else {
      base[key] = value;
    }
  }
}

// Replaces ${name} in every string; an unknown variable is an error.
void substitute(nlohmann::json& node, const nlohmann::json& vars, const std::string& where) {
  if (node.is_string()) {
    std::string text = node.get<std::string>();
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
      if (text.compare(i, 2, "${") == 0) {
        const auto close = text.find('}', i);
        if (close == std::string::npos) throw Error(fmt::format("{}: unclosed '${{' in {}", where, quote_value(text)));
        const auto name = text.substr(i + 2, close - i - 2);
        if (!vars.contains(name)) {
          throw Error(fmt::format("{}: unknown variable ${{{}}} (defined: {})", where, name,
                                  vars.empty() ? std::string("none") : [&] {
                                    std::vector<std::string> names;
                                    for (const auto& item : vars.items()) names.push_back(item.key());
                                    return join(names, ", ");
                                  }()));
        }
        const auto& value = vars[name];
        out += value.is_string() ? value.get<std::string>() : value.dump();
        i = close + 1;
      } else {
        out += text[i++];
      }
    }
    node = out;
  } else if (node.is_array() || node.is_object()) {
    for (auto& child : node) substitute(child, vars, where);
  }
}

bool valid_task_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

struct Document {
  std::string text;
  std::string source;
};

Document read_document(const std::string& source_dir_or_builtin, const std::string& relative) {
  if (source_dir_or_builtin.rfind(kBuiltinPrefix, 0) == 0) {
    const auto path = (std::filesystem::path(source_dir_or_builtin.substr(kBuiltinPrefix.size())) / relative)
                          .lexically_normal()
                          .string();
    auto content = embedded::find(path);
    if (!content) throw Error(fmt::format("built-in task file {} not found", path));
    return {std::string(*content), std::string(kBuiltinPrefix) + path};
  }
  const auto path = (std::filesystem::path(source_dir_or_builtin) / relative).lexically_normal();
  return {read_file(path, "task file"), path.string()};
}

nlohmann::json parse_yaml(const std::string& text, const std::string& source) {
  try {
    const auto root = YAML::Load(text);
    check_yaml_size(root, source);  // before to_json walks it: an alias bomb is refused, not expanded
    auto json = to_json(root);
    if (!json.is_object()) throw Error(fmt::format("{}: expected a mapping at the top level", source));
    return json;
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("{}: invalid YAML at line {}, column {}: {}", source, e.mark.line + 1, e.mark.column + 1,
                            e.msg));
  }
}

std::string directory_of(const std::string& source) {
  const bool builtin = source.rfind(kBuiltinPrefix, 0) == 0;
  const auto path = std::filesystem::path(builtin ? source.substr(kBuiltinPrefix.size()) : source);
  return (builtin ? std::string(kBuiltinPrefix) : std::string()) + path.parent_path().string();
}

// Resolves `include:` chains (relative to the including file) underneath the node.
nlohmann::json resolve_includes(nlohmann::json node, const std::string& source, int depth = 0) {
  if (!node.contains("include")) return node;
  if (depth > 8) throw Error(fmt::format("{}: `include` nests deeper than 8 files (a cycle?)", source));
  if (!node["include"].is_string()) throw Error(fmt::format("{}: `include` must be a file name", source));
  const auto document = read_document(directory_of(source), node["include"].get<std::string>());
  auto base = resolve_includes(parse_yaml(document.text, document.source), document.source, depth + 1);
  node.erase("include");
  merge_into(base, node);
  return base;
}

TaskInfo make_task(nlohmann::json definition, const std::string& source) {
  TaskInfo task;
  if (!definition.contains("task") || !definition["task"].is_string()) {
    throw Error(fmt::format("{}: a task needs `task: NAME`", source));
  }
  task.name = definition["task"].get<std::string>();
  const auto where = fmt::format("{}: task {}", source, task.name);
  if (!valid_task_name(task.name)) {
    throw Error(fmt::format("{}: field `task`: {} is not a valid name (letters, digits, '_', '-', '.')", source,
                            quote_value(task.name)));
  }
  const auto vars = definition.value("vars", nlohmann::json::object());
  if (!vars.is_object()) throw Error(fmt::format("{}: field `vars` must be a mapping of names to values", where));
  definition.erase("vars");
  substitute(definition, vars, where);

  const auto type = definition.value("output_type", nlohmann::json());
  if (type == "logprobs" || type == "multiple_choice" || type == "loglikelihood") {
    task.output_type = OutputType::logprobs;
  } else if (type == "generative" || type == "generate_until") {
    task.output_type = OutputType::generative;
  } else if (type == "perplexity" || type == "loglikelihood_rolling") {
    task.output_type = OutputType::perplexity;
  } else {
    throw Error(fmt::format("{}: field `output_type`: {} is not one of logprobs, generative, perplexity", where,
                            type.is_null() ? "missing" : type.dump()));
  }
  const auto shots = definition.value("default_n_shots", nlohmann::json(0));
  if (!shots.is_number_integer() || shots.get<int>() < 0) {
    throw Error(fmt::format("{}: field `default_n_shots`: {} is not a non-negative integer", where, shots.dump()));
  }
  task.default_n_shots = shots.get<int>();
  if (definition.contains("benchmark") && !definition["benchmark"].is_string()) {
    throw Error(fmt::format("{}: field `benchmark` must be a name", where));
  }
  task.benchmark = definition.value("benchmark", std::string());
  if (definition.contains("groups")) {
    // Further groups (MMLU's categories): they name the task for expansion and rollups but do not change what it
    // computes, so they stay out of the definition and its fingerprint.
    const auto& groups = definition["groups"];
    bool ok = groups.is_array();
    for (const auto& group : ok ? groups : nlohmann::json::array()) {
      ok = ok && group.is_string() && valid_task_name(group.get<std::string>());
      if (ok) task.groups.push_back(group.get<std::string>());
    }
    if (!ok) throw Error(fmt::format("{}: field `groups` must be a list of group names (letters, digits, '_', '-', '.')", where));
    definition.erase("groups");
  }
  task.source = source;
  auto numeric = definition;
  numeric.erase("metadata");
  numeric.erase("benchmark");
  task.fingerprint = content_hash(numeric.dump());
  task.definition = std::move(definition);
  return task;
}

void add_tasks_of_file(std::string_view text, const std::string& source, std::vector<TaskInfo>& tasks) {
  auto document = resolve_includes(parse_yaml(std::string(text), source), source);
  if (document.contains("group")) {
    if (!document["group"].is_string() || !valid_task_name(document["group"].get<std::string>())) {
      throw Error(fmt::format("{}: field `group` must be a name (letters, digits, '_', '-', '.')", source));
    }
    const auto group = document["group"].get<std::string>();
    const auto defaults = resolve_includes(document.value("defaults", nlohmann::json::object()), source);
    if (!document.contains("tasks") || !document["tasks"].is_array() || document["tasks"].empty()) {
      throw Error(fmt::format("{}: group {} needs a non-empty `tasks` list", source, group));
    }
    for (const auto& entry : document["tasks"]) {
      if (!entry.is_object()) throw Error(fmt::format("{}: every entry of `tasks` must be a mapping", source));
      auto definition = defaults;
      merge_into(definition, resolve_includes(entry, source));
      definition["benchmark"] = group;
      tasks.push_back(make_task(std::move(definition), source));
    }
  } else if (document.contains("task")) {
    tasks.push_back(make_task(std::move(document), source));
  }
  // A file with neither `task` nor `group` is a template for `include` only.
}

}  // namespace

void TaskRegistry::add_file(std::string_view text, const std::string& source) {
  // Values of an unexpected type (a list where a name belongs...) surface as JSON type errors: name the file.
  try {
    add_tasks_of_file(text, source, tasks_);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: a field has the wrong type ({})", source, e.what()));
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("{}: {}", source, e.what()));
  }
}

TaskRegistry TaskRegistry::load(const std::vector<std::filesystem::path>& extra_paths) {
  TaskRegistry registry;
  for (const auto& file : embedded::all_files()) {
    if (file.path.rfind("tasks/", 0) != 0) continue;
    registry.add_file(file.content, std::string(kBuiltinPrefix) + std::string(file.path));
  }
  const auto builtin_benchmarks = registry.benchmarks();
  const auto builtin_count = registry.tasks_.size();
  for (const auto& extra : extra_paths) {
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_regular_file(extra, ec)) {
      files.push_back(extra);
    } else if (std::filesystem::is_directory(extra, ec)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(extra, ec)) {
        const auto extension = entry.path().extension();
        if (entry.is_regular_file() && (extension == ".yaml" || extension == ".yml")) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
    } else {
      throw Error(fmt::format("--extra_task_paths: {} is neither a directory nor a YAML file", quote_value(extra.string())));
    }
    for (const auto& path : files) registry.add_file(read_file(path, "task file"), path.string());
  }
  // A user group named like a built-in benchmark would silently join it (`mmlu` would run 58 subjects).
  for (std::size_t i = builtin_count; i < registry.tasks_.size(); ++i) {
    const auto& task = registry.tasks_[i];
    if (std::find(builtin_benchmarks.begin(), builtin_benchmarks.end(), task.benchmark) != builtin_benchmarks.end()) {
      throw Error(fmt::format("{}: group {} is the name of a built-in benchmark (built-in: {}); give your group "
                              "another name",
                              task.source, task.benchmark, join(builtin_benchmarks, ", ")));
    }
  }
  std::map<std::string, const TaskInfo*> seen;
  for (const auto& task : registry.tasks_) {
    auto [it, inserted] = seen.emplace(task.name, &task);
    if (!inserted) {
      throw Error(fmt::format("task {} is defined twice: in {} and in {} (rename one)", task.name, it->second->source,
                              task.source));
    }
  }
  for (const auto& benchmark : registry.benchmarks()) {
    if (auto it = seen.find(benchmark); it != seen.end()) {
      throw Error(fmt::format("{}: task name {} is also a benchmark name", it->second->source, benchmark));
    }
  }
  return registry;
}

TaskRegistry TaskRegistry::from_text(std::string_view yaml, const std::string& source) {
  TaskRegistry registry;
  registry.add_file(yaml, source);
  return registry;
}

const TaskInfo* TaskRegistry::find(std::string_view name) const {
  for (const auto& task : tasks_) {
    if (task.name == name) return &task;
  }
  return nullptr;
}

bool TaskInfo::in_group(const std::string& name) const {
  return benchmark == name || std::find(groups.begin(), groups.end(), name) != groups.end();
}

std::vector<std::string> TaskRegistry::benchmarks() const {
  std::vector<std::string> names;
  const auto add = [&](const std::string& name) {
    if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  for (const auto& task : tasks_) add(task.benchmark);
  for (const auto& task : tasks_) {
    for (const auto& group : task.groups) add(group);
  }
  return names;
}

std::vector<const TaskInfo*> TaskRegistry::expand(const std::vector<std::string>& names) const {
  std::vector<const TaskInfo*> out;
  auto add = [&](const TaskInfo* task) {
    if (std::find(out.begin(), out.end(), task) == out.end()) out.push_back(task);
  };
  for (const auto& name : names) {
    bool matched = false;
    for (const auto& task : tasks_) {
      if (task.in_group(name)) {
        add(&task);
        matched = true;
      }
    }
    if (matched) continue;
    if (const auto* task = find(name)) {
      add(task);
      continue;
    }
    std::vector<std::string> known = benchmarks();
    for (const auto& task : tasks_) known.push_back(task.name);
    const auto suggestions = closest_names(name, known);
    throw Error(fmt::format("unknown task or benchmark {}{}", quote_value(name),
                            suggestions.empty() ? std::string("; `mill tasks` lists them")
                                                : "; did you mean " + join(suggestions, ", ") + "?"));
  }
  return out;
}

// ---- task definition checks: the fields, metrics, generation settings and answer patterns a task must hold


namespace {

std::string task_where(const TaskInfo& task) { return fmt::format("task {} ({})", task.name, task.source); }

// The dataset fields load_split() reads, checked without reading data.
void check_dataset_fields(const nlohmann::json& dataset, const std::string& where) {
  const auto format = dataset.value("format", nlohmann::json());
  const std::vector<std::string> formats = {"csv", "tsv", "json", "jsonl", "inline"};
  if (!format.is_string() || std::find(formats.begin(), formats.end(), format.get<std::string>()) == formats.end()) {
    throw Error(fmt::format("{}: field `dataset.format`: {} is not one of {}", where,
                            format.is_null() ? std::string("missing") : format.dump(), join(formats, ", ")));
  }
  if (format == "inline") {
    if (!dataset.value("documents", nlohmann::json()).is_object()) {
      throw Error(fmt::format("{}: field `dataset.documents` must map split names to lists of documents", where));
    }
  } else {
    const auto path = dataset.value("path", nlohmann::json());
    if (!path.is_string() || path.get<std::string>().empty()) {
      throw Error(fmt::format("{}: field `dataset.path` is missing (a file under the data directory, {{split}} "
                              "standing for the split name)",
                              where));
    }
  }
  const auto layout = dataset.value("layout", nlohmann::json(""));
  if (format == "csv" && layout != "" && layout != "mmlu" && layout != "header") {
    throw Error(fmt::format("{}: field `dataset.layout`: {} is not one of mmlu, header", where, layout.dump()));
  }
  if (dataset.contains("filter") && !dataset["filter"].is_object()) {
    throw Error(fmt::format("{}: field `dataset.filter` must map field names to values", where));
  }
  if (dataset.contains("labels_path") && (!dataset["labels_path"].is_string() || format == "inline")) {
    throw Error(fmt::format("{}: field `dataset.labels_path` must be a file path (one label per line, {{split}} standing "
                            "for the split name) beside a file-based dataset",
                            where));
  }
  if (dataset.contains("labels_field") && (!dataset["labels_field"].is_string() || !dataset.contains("labels_path"))) {
    throw Error(fmt::format("{}: field `dataset.labels_field` must be a field name, and needs `dataset.labels_path`", where));
  }
  if (dataset.contains("ordered_mappings")) {
    const auto& fields = dataset["ordered_mappings"];
    bool ok = fields.is_array() && (format == "json" || format == "jsonl");
    for (const auto& field : ok ? fields : nlohmann::json::array()) ok = ok && field.is_string();
    if (!ok) {
      throw Error(fmt::format("{}: field `dataset.ordered_mappings` must be a list of field names, for json or jsonl "
                              "datasets",
                              where));
    }
  }
}

}  // namespace

GenerationSettings generation_settings(const TaskInfo& task) {
  GenerationSettings settings;
  const auto where = task_where(task);
  const auto generation = task.definition.value("generation", nlohmann::json::object());
  if (!generation.is_object()) throw Error(fmt::format("{}: field `generation` must be a mapping", where));
  if (generation.contains("stop")) {
    if (!generation["stop"].is_array()) throw Error(fmt::format("{}: field `generation.stop` must be a list", where));
    for (const auto& stop : generation["stop"]) {
      if (!stop.is_string()) throw Error(fmt::format("{}: field `generation.stop` must be a list of strings", where));
      settings.stop.push_back(stop.get<std::string>());
    }
  }
  const auto tokens = generation.value("max_new_tokens", nlohmann::json(256));
  if (!tokens.is_number_integer() || tokens.get<long long>() < 1) {
    throw Error(fmt::format("{}: field `generation.max_new_tokens`: {} is not a positive integer", where, tokens.dump()));
  }
  settings.max_new_tokens = tokens.get<int>();
  const auto temperature = generation.value("temperature", nlohmann::json(0));
  if (!temperature.is_number() || temperature.get<double>() != 0) {
    throw Error(fmt::format("{}: field `generation.temperature`: {} is not supported (mill decodes greedily: 0)", where,
                            temperature.dump()));
  }
  return settings;
}

std::vector<std::string> extraction_patterns(const TaskInfo& task) {
  const auto where = task_where(task);
  const auto extraction = task.definition.value("answer_extraction", nlohmann::json::object());
  std::vector<std::string> patterns;
  if (extraction.contains("patterns")) {
    if (!extraction["patterns"].is_array()) {
      throw Error(fmt::format("{}: field `answer_extraction.patterns` must be a list of regexes", where));
    }
    for (const auto& pattern : extraction["patterns"]) {
      if (!pattern.is_string()) throw Error(fmt::format("{}: field `answer_extraction.patterns` must hold strings", where));
      patterns.push_back(pattern.get<std::string>());
    }
  }
  return patterns;
}


void check_task_definition(const TaskInfo& task) {
  const auto where = task_where(task);
  auto check_keys = [&](const nlohmann::json& object, const std::string& prefix, const std::vector<std::string>& known) {
    if (!object.is_object()) throw Error(fmt::format("{}: field `{}` must be a mapping", where, prefix.substr(0, prefix.size() - 1)));
    for (const auto& item : object.items()) {
      if (std::find(known.begin(), known.end(), item.key()) != known.end()) continue;
      const auto suggestions = closest_names(item.key(), known);
      throw Error(fmt::format("{}: unknown field `{}{}`{} (docs/tasks.md lists the fields)", where, prefix, item.key(),
                              suggestions.empty() ? std::string() : "; did you mean " + join(suggestions, ", ") + "?"));
    }
  };
  const auto& definition = task.definition;
  check_keys(definition, "",
             {"task", "benchmark", "metadata", "output_type", "default_n_shots", "dataset", "eval_split", "fewshot_split",
              "fewshot_sampler", "fewshot_seed", "fewshot_draw_extra", "fewshot_documents", "preprocess", "prompt",
              "answer_field", "answer_labels_field", "target", "target_regex", "text_field", "metrics", "generation",
              "answer_extraction", "answer_filters", "answer_normalization"});
  if (!definition.contains("dataset")) throw Error(fmt::format("{}: field `dataset` is missing (see docs/tasks.md)", where));
  check_keys(definition["dataset"], "dataset.",
             {"format", "path", "layout", "documents", "filter", "revision", "labels_path", "labels_field",
              "ordered_mappings"});
  check_dataset_fields(definition["dataset"], where);
  if (definition.contains("prompt")) {
    check_keys(definition["prompt"], "prompt.",
               {"description", "template", "options_field", "drop_options", "labels", "option_template", "query_suffix",
                "target_delimiter", "fewshot_delimiter", "fewshot_target", "fewshot_replace", "continuation", "suffix"});
  }
  if (definition.contains("generation")) {
    check_keys(definition["generation"], "generation.", {"stop", "max_new_tokens", "temperature"});
  }
  if (definition.contains("answer_extraction")) check_keys(definition["answer_extraction"], "answer_extraction.", {"patterns"});
  fewshot_settings(task);
  if (definition.contains("fewshot_documents")) {
    if (definition.contains("fewshot_split")) {
      throw Error(fmt::format("{}: fields `fewshot_split` and `fewshot_documents` exclude each other (one few-shot pool)", where));
    }
    fewshot_documents(task);
  }
  Preprocessor preprocess(task);  // parses the steps and compiles their regexes
  AnswerNormalizer normalizer(task);
  for (const char* field : {"eval_split", "fewshot_split", "answer_field", "answer_labels_field", "target", "target_regex",
                            "text_field"}) {
    if (definition.contains(field) && !definition[field].is_string()) {
      throw Error(fmt::format("{}: field `{}` must be a string", where, field));
    }
  }
  PromptBuilder prompt(task);  // checks the prompt fields' types
  task_metrics(task);
  if (task.output_type == OutputType::generative) {
    generation_settings(task);
    const auto filters = answer_filters(task);  // compiles them: a bad regex is named here
    const auto patterns = extraction_patterns(task);
    if (filters.empty() == patterns.empty()) {
      throw Error(fmt::format("{}: a generative task needs either `answer_extraction.patterns` (ordered regexes, one "
                              "answer) or `answer_filters` (each reported as its own metric), {}",
                              where, filters.empty() ? "and has neither" : "not both"));
    }
    AnswerExtractor check(patterns);  // compiles them: a bad regex is named here
  } else if (definition.contains("answer_filters") || definition.contains("answer_extraction")) {
    throw Error(fmt::format("{}: `answer_filters` and `answer_extraction` apply only to generative tasks", where));
  }
}

std::vector<std::string> task_metrics(const TaskInfo& task) {
  std::vector<std::string> available;
  std::vector<std::string> opt_in;  // available when asked for in `metrics`, not reported by default
  switch (task.output_type) {
    case OutputType::logprobs: {
      const PromptBuilder prompt(task);
      if (prompt.continuation() == ContinuationKind::target) {
        available = {"perplexity", "greedy_acc"};
        break;
      }
      available = {"acc"};
      if (prompt.continuation_is_text()) available.push_back("acc_norm");
      available.push_back("greedy_acc");
      opt_in = {"mc2"};
      break;
    }
    case OutputType::generative: {
      const auto filters = answer_filters(task);
      if (filters.empty()) {
        available = {"exact_match", "unparsed_rate", "hit_token_limit_rate"};
      } else {
        for (const auto& filter : filters) available.push_back("exact_match_" + filter.name);
        for (const auto& filter : filters) available.push_back("unparsed_rate_" + filter.name);
        available.push_back("hit_token_limit_rate");
      }
      break;
    }
    case OutputType::perplexity: available = {"perplexity", "bits_per_byte"}; break;
  }
  if (!task.definition.contains("metrics")) return available;
  const auto& wanted = task.definition["metrics"];
  std::vector<std::string> chosen;
  for (const auto& item : wanted.is_array() ? wanted : nlohmann::json::array({wanted})) {
    const auto name = item.is_string() ? item.get<std::string>() : item.dump();
    if (std::find(available.begin(), available.end(), name) == available.end() &&
        std::find(opt_in.begin(), opt_in.end(), name) == opt_in.end()) {
      auto all = available;
      all.insert(all.end(), opt_in.begin(), opt_in.end());
      throw Error(fmt::format("{}: field `metrics`: {} is not available for this {} task (available: {})", task_where(task),
                              quote_value(name), to_string(task.output_type), join(all, ", ")));
    }
    chosen.push_back(name);
  }
  if (chosen.empty()) throw Error(fmt::format("{}: field `metrics` is empty", task_where(task)));
  return chosen;
}

}  // namespace mill
