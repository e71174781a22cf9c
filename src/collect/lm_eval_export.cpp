#include "mill/collect/lm_eval_export.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "mill/base/atomic_file.hpp"
#include "mill/collect/collect_output.hpp"
#include "mill/base/error.hpp"
#include "mill/base/host.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "mill/eval/job.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/results.hpp"

namespace mill {

namespace {

// lm-eval's output_type for mill's.
std::string lm_eval_output_type(const std::string& output_type) {
  if (output_type == "generative") return "generate_until";
  if (output_type == "perplexity") return "loglikelihood_rolling";
  return "multiple_choice";
}

// true when a larger value is better, false when smaller is, null for counts (tokens, bytes).
nlohmann::json higher_is_better(const std::string& metric) {
  const auto better = metric_kind(metric).higher_is_better;
  return better ? nlohmann::json(*better) : nlohmann::json();
}

// The version of the lm-eval task a mill task reproduces, from its `metadata.lm_eval` ("gsm8k 3.0 @ 4e7e0d47").
nlohmann::json task_version(const TaskInfo* task) {
  if (!task) return nullptr;
  const auto metadata = task->definition.find("metadata");
  if (metadata == task->definition.end() || !metadata->is_object()) return nullptr;
  const auto reference = metadata->find("lm_eval");
  if (reference == metadata->end() || !reference->is_string()) return nullptr;
  const auto words = split_list(reference->get<std::string>(), ' ');
  if (words.size() < 2) return nullptr;
  char* end = nullptr;
  const double number = std::strtod(words[1].c_str(), &end);
  if (end == words[1].c_str() || *end != '\0' || !std::isfinite(number)) return nullptr;
  return number;
}

// lm-eval's model_args string: comma-separated key=value, led by pretrained=NAME for a model mill runs itself.
std::string model_args_of(const std::string& model) {
  std::vector<std::string> parts;
  try {
    const auto spec = ModelSpec::parse(model);
    if (spec.backend() == "local" && spec.name != "mill-demo") parts.push_back("pretrained=" + spec.name);
    for (const auto& [key, value] : spec.args) parts.push_back(key + "=" + value);
  } catch (const Error&) {
    parts.push_back("pretrained=" + model);
  }
  return join(parts, ",");
}

std::string model_type_of(const std::string& model) {
  try {
    const auto spec = ModelSpec::parse(model);
    return spec.name == "mill-demo" ? "mill-demo" : "mill-" + spec.backend();
  } catch (const Error&) {
    return "mill";
  }
}

// lm-eval's configs entry for a task, from mill's definition where mill has the fact.
nlohmann::json task_config(const std::string& name, const TaskInfo* task, const std::string& output_type, int n_shot,
                           const std::vector<std::string>& metrics) {
  nlohmann::json config = {{"task", name}, {"output_type", lm_eval_output_type(output_type)}};
  nlohmann::json metadata = {{"version", task_version(task)}};
  if (task) {
    const auto& definition = task->definition;
    config["test_split"] = definition.value("eval_split", std::string("test"));
    if (const auto split = definition.value("fewshot_split", std::string()); !split.empty()) config["fewshot_split"] = split;
    const auto& prompt = member(definition, "prompt");
    for (const char* field : {"description", "target_delimiter", "fewshot_delimiter"}) {
      if (member(prompt, field).is_string()) config[field] = member(prompt, field);
    }
    const auto& generation = member(definition, "generation");
    if (output_type == "generative" && generation.is_object()) {
      nlohmann::json kwargs = {{"do_sample", false}};
      if (member(generation, "stop").is_array()) kwargs["until"] = member(generation, "stop");
      if (member(generation, "max_new_tokens").is_number_integer()) kwargs["max_gen_toks"] = member(generation, "max_new_tokens");
      config["generation_kwargs"] = kwargs;
    }
    metadata["mill_task_fingerprint"] = task->fingerprint;
  }
  config["num_fewshot"] = n_shot;
  nlohmann::json metric_list = nlohmann::json::array();
  std::set<std::string> listed;
  for (const auto& metric : metrics) {
    if (!listed.insert(metric).second) continue;
    metric_list.push_back({{"metric", metric}, {"aggregation", "mean"}, {"higher_is_better", higher_is_better(metric)}});
  }
  config["metric_list"] = metric_list;
  config["repeats"] = 1;
  config["should_decontaminate"] = false;
  config["metadata"] = metadata;
  return config;
}

using ExportKey = std::tuple<std::string, int, int>;  // model, n_shot, limit (-1: none)

}  // namespace

std::pair<std::string, std::string> lm_eval_metric_and_filter(const std::string& metric, const TaskInfo* task) {
  if (task && task->definition.contains("answer_filters") && task->definition["answer_filters"].is_array()) {
    for (const auto& filter : task->definition["answer_filters"]) {
      const auto& name = member(filter, "name");
      if (!name.is_string()) continue;
      const auto suffix = "_" + name.get<std::string>();
      if (metric.size() > suffix.size() && metric.ends_with(suffix)) {
        return {metric.substr(0, metric.size() - suffix.size()), name.get<std::string>()};
      }
    }
  }
  return {metric, "none"};
}

std::vector<LmEvalExport> build_lm_eval_exports(const std::vector<AggregateRow>& rows,
                                                const std::vector<CollectedResult>& results,
                                                const TaskRegistry& registry, const std::filesystem::path& directory,
                                                double generated_at) {
  std::map<std::tuple<std::string, std::string, int, int>, const CollectedResult*> result_of;  // model, task, n, limit
  for (const auto& result : results) {
    result_of[{result.model, result.task, result.n_shot, result.limit.value_or(-1)}] = &result;
  }
  struct Run {
    std::vector<const AggregateRow*> task_rows;
    std::vector<const AggregateRow*> group_rows;  // micro rollups: lm-eval's group scores weight subjects by size
  };
  std::map<ExportKey, Run> runs;
  for (const auto& row : rows) {
    auto& run = runs[{row.model, row.n_shot, row.limit.value_or(-1)}];
    if (row.aggregation == kAggregationTask) run.task_rows.push_back(&row);
    if (row.aggregation == kAggregationMicro) run.group_rows.push_back(&row);
  }

  std::vector<LmEvalExport> exports;
  for (const auto& [key, run] : runs) {
    const auto& [model, n_shot, limit] = key;
    nlohmann::json results_json = nlohmann::json::object(), groups = nlohmann::json::object();
    nlohmann::json group_subtasks = nlohmann::json::object(), configs = nlohmann::json::object();
    nlohmann::json versions = nlohmann::json::object(), n_shots = nlohmann::json::object();
    nlohmann::json better = nlohmann::json::object(), n_samples = nlohmann::json::object();
    std::map<std::string, std::vector<std::string>> metrics_of;  // task → lm-eval metric names, in row order
    std::map<std::string, std::string> output_type_of;
    std::optional<ResultFile> first_file;  // the first result file that records where and how the model ran
    std::optional<double> started;
    double wall_seconds = 0;

    for (const auto* row : run.task_rows) {
      const auto* task = registry.find(row->task);
      const auto [metric, filter] = lm_eval_metric_and_filter(row->metric, task);
      auto& entry = results_json[row->task];
      if (entry.is_null()) entry = {{"alias", row->task}};
      entry[metric + "," + filter] = row->value;
      entry[metric + "_stderr," + filter] = row->standard_error ? nlohmann::json(*row->standard_error) : nlohmann::json("N/A");
      metrics_of[row->task].push_back(metric);
      better[row->task][metric] = higher_is_better(metric);
      output_type_of[row->task] = row->output_type;
      if (n_samples.contains(row->task)) continue;

      // Once per task: what the rows do not carry, from its result file.
      const auto found = result_of.find({row->model, row->task, row->n_shot, row->limit.value_or(-1)});
      long long original = row->n_samples, effective = row->n_samples;
      if (found != result_of.end()) {
        effective = found->second->n_samples;
        original = effective;
        std::string problem;
        std::optional<ResultFile> file;
        if (const auto text = read_file_if_exists(found->second->path)) file = parse_result(*text, problem);
        if (file) {
          const auto& documents = member(member(file->data, "eval"), "documents");
          if (documents.is_number_integer()) original = documents.get<long long>();
          const auto& provenance = file->provenance;
          if (const auto at = unix_seconds_of(string_field(provenance, "started_at")); at >= 0) {
            started = started ? std::min(*started, static_cast<double>(at)) : static_cast<double>(at);
          }
          if (member(provenance, "wall_seconds").is_number()) wall_seconds += member(provenance, "wall_seconds").get<double>();
          if (!first_file && provenance.is_object()) first_file = std::move(file);
        }
      }
      n_samples[row->task] = {{"original", original}, {"effective", effective}};
      versions[row->task] = task_version(task);
      n_shots[row->task] = row->n_shot;
    }
    for (const auto& [name, metrics] : metrics_of) {
      configs[name] = task_config(name, registry.find(name), output_type_of[name], n_shot, metrics);
    }

    // Groups: the benchmarks and their category groups, scored by the micro (sample-weighted) rollup as lm-eval
    // scores MMLU. A group's metric carries its tasks' filter name (a benchmark's tasks share answer filters).
    std::set<std::string> group_names;
    for (const auto* row : run.group_rows) group_names.insert(row->task);
    std::map<std::string, std::set<std::string>> children;
    for (const auto* row : run.group_rows) {
      const auto& group = row->task;
      auto metric_and_filter = lm_eval_metric_and_filter(row->metric, nullptr);
      for (const auto* task_row : run.task_rows) {
        const auto* task = registry.find(task_row->task);
        if (task_row->metric == row->metric && task && task->in_group(group)) {
          metric_and_filter = lm_eval_metric_and_filter(row->metric, task);
          break;
        }
      }
      const auto& [metric, filter] = metric_and_filter;
      auto& entry = results_json[group];
      if (entry.is_null()) entry = {{"alias", group}};
      entry[metric + "," + filter] = row->value;
      entry[metric + "_stderr," + filter] = row->standard_error ? nlohmann::json(*row->standard_error) : nlohmann::json("N/A");
      better[group][metric] = higher_is_better(metric);
      versions[group] = nullptr;
      n_shots[group] = n_shot;
      if (group != row->benchmark && group_names.count(row->benchmark)) children[row->benchmark].insert(group);
    }
    for (const auto& [name, metrics] : metrics_of) {
      const auto* task = registry.find(name);
      if (!task) continue;
      bool in_category = false;
      for (const auto& group : task->groups) {
        if (!group_names.count(group)) continue;
        children[group].insert(name);
        in_category = true;
      }
      if (!in_category && group_names.count(task->benchmark)) children[task->benchmark].insert(name);
    }
    for (const auto& group : group_names) {
      groups[group] = results_json[group];
      group_subtasks[group] = nlohmann::json(std::vector<std::string>(children[group].begin(), children[group].end()));
    }

    static const nlohmann::json no_provenance;
    const auto& provenance = first_file ? first_file->provenance : no_provenance;
    nlohmann::json revision;
    for (const auto* row : run.task_rows) {
      const auto found = result_of.find({row->model, row->task, row->n_shot, row->limit.value_or(-1)});
      if (found == result_of.end()) continue;
      revision = member(found->second->key_inputs, "model_revision");
      if (!revision.is_string()) revision = nullptr;
      break;
    }
    const auto text_or_null = [](const nlohmann::json& value) {
      if (value.is_string()) return value;
      if (value.is_number()) return nlohmann::json(value.dump());
      return nlohmann::json();
    };
    nlohmann::json config = {
        {"model", model_type_of(model)},
        {"model_args", model_args_of(first_file ? first_file->model : model)},
        {"model_dtype", text_or_null(member(provenance, "dtype"))},
        {"model_revision", revision},
        {"batch_size", text_or_null(member(provenance, "batch_size"))},
        {"batch_sizes", nlohmann::json::array()},
        {"device", text_or_null(member(provenance, "device"))},
        {"use_cache", nullptr},
        {"limit", limit >= 0 ? nlohmann::json(limit) : nlohmann::json()},
        {"bootstrap_iters", member(member(provenance, "bootstrap"), "resamples").is_number_integer()
                                ? member(member(provenance, "bootstrap"), "resamples")
                                : nlohmann::json(0)},
        {"gen_kwargs", nullptr},
    };

    const auto sanitized = path_component(model);
    nlohmann::json document = {
        {"results", results_json},
        {"group_subtasks", group_subtasks},
        {"configs", configs},
        {"versions", versions},
        {"n-shot", n_shots},
        {"higher_is_better", better},
        {"n-samples", n_samples},
        {"config", config},
        {"date", started ? *started : generated_at},
        {"model_source", model_type_of(model)},
        {"model_name", model},
        {"model_name_sanitized", sanitized},
        {"total_evaluation_time_seconds", fmt::format("{}", wall_seconds)},
        {"exported_by", std::string(kExportedByPrefix) + version()},
    };
    if (!groups.empty()) document["groups"] = groups;
    const auto name = "results_" + result_file_stem(n_shot, limit >= 0 ? std::optional<int>(limit) : std::nullopt) + ".json";
    exports.push_back({directory / sanitized / name, std::move(document)});
  }
  return exports;
}

}  // namespace mill
