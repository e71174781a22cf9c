// Aggregation: collected results into rows (benchmarks rolled up, the primary metric chosen), stale results
// found, and the aggregate table as CSV.
#include "mill/collect/collect.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <iterator>
#include <map>
#include <tuple>

#include "mill/base/error.hpp"
#include "mill/collect/rollup.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::string primary_metric_of(const CollectedResult& result, const std::string& requested) {
  const auto has = [&](const std::string& name) {
    return std::any_of(result.metrics.begin(), result.metrics.end(),
                       [&](const ResultMetric& m) { return m.name == name; });
  };
  if (!requested.empty()) return requested;
  if (!result.primary_metric.empty() && has(result.primary_metric)) return result.primary_metric;
  for (const char* name : {"acc", "exact_match"}) {
    if (has(name)) return name;
  }
  return result.metrics.front().name;
}

namespace {

using RollupKey = std::tuple<std::string, int, int, std::string, std::string>;  // model, n_shot, limit, bench, metric

int limit_order(const std::optional<int>& limit) { return limit ? *limit : -1; }

int benchmark_size(const TaskRegistry& registry, const std::string& benchmark, int found) {
  int count = 0;
  for (const auto& task : registry.tasks()) {
    if (task.in_group(benchmark)) ++count;
  }
  return count > 0 ? count : found;  // a benchmark mill no longer defines: only what was found can be counted
}

}  // namespace

StaleResults find_stale_results(const ResultScan& scan, const TaskRegistry& registry) {
  StaleResults stale;
  std::map<std::string, std::optional<std::pair<ModelSpec, ModelIdentity>>> models;  // model → spec, identity
  for (const auto& result : scan.results) {
    const auto* task = registry.find(result.task);
    if (!task) continue;
    auto [it, inserted] = models.try_emplace(result.model);
    if (inserted) {
      try {
        auto spec = ModelSpec::parse(result.model);
        auto identity = identify_model(spec);
        it->second.emplace(std::move(spec), std::move(identity));
      } catch (const Error&) {
        // Not a spec mill can parse: no key to compare with.
      }
    }
    if (!it->second) continue;
    // A checkpoint's result is judged by the content of its folder; a folder that is gone or unreadable here
    // (moved, or on a machine that cannot see it) cannot be judged.
    const auto& identity = it->second->second;
    if (result.key_inputs.contains("model_content") && (!identity.is_checkpoint_folder() || !identity.problem.empty())) {
      continue;
    }
    const auto key = make_job_key(Job{it->second->first, task, result.n_shot, result.limit}, identity);
    const auto check = compare_result_key(key, result.key, result.key_inputs);
    if (check.state == ResultState::stale) stale[result.path.string()] = check.reason;
  }
  return stale;
}

std::vector<AggregateRow> aggregate_results(const std::vector<CollectedResult>& results, const CollectFilter& filter,
                                            const TaskRegistry& registry,
                                            const StaleResults* stale) {
  std::vector<AggregateRow> rows;
  struct Group {
    std::vector<StratumEstimate> subjects;
    std::set<std::string> methods;
    std::string output_type;
    std::string parent;  // the benchmark a category group belongs to (mmlu for mmlu_stem); the group's own name otherwise
    bool primary = false;
    int stale = 0;
  };
  std::map<RollupKey, Group> groups;
  for (const auto& result : results) {
    if (!filter.accepts(result)) continue;
    const auto primary = primary_metric_of(result, filter.metric);
    const int is_stale = stale && stale->count(result.path.string()) ? 1 : 0;
    for (const auto& metric : result.metrics) {
      if (!filter.metric.empty() && metric.name != filter.metric) continue;
      AggregateRow row;
      row.model = result.model;
      row.task = result.task;
      row.benchmark = result.benchmark;
      row.n_shot = result.n_shot;
      row.limit = result.limit;
      row.metric = metric.name;
      row.aggregation = kAggregationTask;
      row.value = metric.value;
      row.standard_error = metric.standard_error;
      row.stderr_method = metric.stderr_method;
      row.n_samples = metric.n;
      row.key = result.key;
      row.output_type = result.output_type;
      row.primary = metric.name == primary;
      row.stale = is_stale;
      rows.push_back(row);
      // The benchmark's rollup, and those of the further groups the task belongs to (mmlu_stem).
      std::vector<std::string> rollups;
      if (!result.benchmark.empty()) rollups.push_back(result.benchmark);
      if (const auto* task = registry.find(result.task)) rollups.insert(rollups.end(), task->groups.begin(), task->groups.end());
      for (const auto& rollup : rollups) {
        auto& group = groups[{result.model, result.n_shot, limit_order(result.limit), rollup, metric.name}];
        if (group.parent.empty()) group.parent = result.benchmark.empty() ? rollup : result.benchmark;
        if (group.parent != rollup && group.parent != result.benchmark) group.parent = rollup;  // shared by benchmarks
        group.subjects.push_back({metric.value, metric.standard_error, metric.n});
        if (metric.standard_error) group.methods.insert(metric.stderr_method);
        if (group.output_type.empty()) group.output_type = result.output_type;
        group.primary = group.primary || row.primary;
        group.stale += is_stale;
      }
    }
  }
  for (const auto& [key, group] : groups) {
    const auto& [model, n_shot, limit, benchmark, metric] = key;
    const int expected = benchmark_size(registry, benchmark, static_cast<int>(group.subjects.size()));
    const std::pair<const char*, RollupEstimate> estimates[] = {{kAggregationMicro, micro_average(group.subjects)},
                                                                {kAggregationMacro, macro_average(group.subjects)}};
    for (const auto& [aggregation, estimate] : estimates) {
      if (!std::isfinite(estimate.value)) continue;
      AggregateRow row;
      row.model = model;
      row.task = benchmark;
      row.benchmark = group.parent;
      row.n_shot = n_shot;
      if (limit >= 0) row.limit = limit;
      row.metric = metric;
      row.aggregation = aggregation;
      row.value = estimate.value;
      row.standard_error = estimate.standard_error;
      // Says how the subjects' errors were combined and what produced them, e.g. "stratified(bootstrap)".
      if (estimate.standard_error) row.stderr_method = "stratified(" + join({group.methods.begin(), group.methods.end()}, "+") + ")";
      row.n_samples = estimate.n;
      row.n_tasks = estimate.n_tasks;
      row.n_tasks_expected = expected;
      row.output_type = group.output_type;
      row.primary = group.primary;
      row.stale = group.stale;
      rows.push_back(row);
    }
  }
  const auto order = [](const AggregateRow& row) {
    const bool rollup = row.aggregation != kAggregationTask;
    const auto& group = row.benchmark.empty() ? row.task : row.benchmark;
    return std::make_tuple(std::cref(row.model), row.n_shot, limit_order(row.limit), std::cref(group), rollup,
                           std::cref(row.task), std::cref(row.metric), row.aggregation == kAggregationMacro);
  };
  std::sort(rows.begin(), rows.end(), [&](const AggregateRow& a, const AggregateRow& b) { return order(a) < order(b); });
  return rows;
}

namespace {

std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_number(double value) {
  if (!std::isfinite(value)) return {};
  return fmt::format("{:.10g}", value);
}

}  // namespace

std::string aggregate_csv(const std::vector<AggregateRow>& rows) {
  std::string out = std::string(kAggregateCsvHeader) + "\n";
  out.reserve(out.size() + rows.size() * 160);
  for (const auto& row : rows) {
    fmt::format_to(std::back_inserter(out), "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                   csv_field(row.model), csv_field(row.task), csv_field(row.benchmark), row.n_shot,
                   row.limit ? std::to_string(*row.limit) : std::string(), csv_field(row.metric), row.aggregation,
                   csv_number(row.value), row.standard_error ? csv_number(*row.standard_error) : std::string(),
                   csv_field(row.stderr_method), row.n_samples, row.n_tasks, row.n_tasks_expected,
                   csv_field(row.output_type), row.primary ? 1 : 0, row.stale, row.key);
  }
  return out;
}

}  // namespace mill
