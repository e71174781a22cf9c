#include "mill/eval/task_check.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "mill/eval/answer_filter.hpp"
#include "mill/eval/engine.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/fewshot.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/prompt.hpp"
#include "mill/base/text.hpp"

namespace mill {

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
