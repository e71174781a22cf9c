#include "mill/collect.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <map>
#include <spdlog/spdlog.h>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "mill/error.hpp"
#include "mill/job.hpp"
#include "mill/model_identity.hpp"
#include "mill/model_spec.hpp"
#include "mill/plan.hpp"
#include "mill/rollup.hpp"
#include "mill/text.hpp"

namespace mill {

namespace {

std::string model_identity_of(const std::string& spec) {
  try {
    return ModelSpec::parse(spec).identity();
  } catch (const Error&) {
    return spec;  // not a spec mill can parse: compare it as written
  }
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Reads a whole file with plain syscalls: collect reads 100k small files, where stream set-up would dominate.
bool read_whole_file(const std::filesystem::path& path, std::string& out, std::string& problem) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problem = fmt::format("cannot open: {}", std::strerror(errno));
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    problem = fmt::format("cannot stat: {}", std::strerror(errno));
    ::close(fd);
    return false;
  }
  out.resize(static_cast<std::size_t>(info.st_size));
  std::size_t done = 0;
  while (true) {
    if (done == out.size()) out.resize(out.size() + 4096);  // the file grew, or st_size was 0 (procfs-like)
    const auto got = ::read(fd, out.data() + done, out.size() - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      problem = fmt::format("cannot read: {}", std::strerror(errno));
      ::close(fd);
      return false;
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  out.resize(done);
  ::close(fd);
  return true;
}

std::optional<double> number_or_null(const nlohmann::json& object, const char* field) {
  const auto it = object.find(field);
  if (it == object.end() || !it->is_number()) return std::nullopt;
  const double value = it->get<double>();
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

std::string string_field(const nlohmann::json& object, const char* field) {
  const auto it = object.find(field);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::optional<CollectedResult> parse_collected_result(const std::filesystem::path& path, std::string_view content,
                                                      const TaskRegistry& registry, std::string& problem) {
  auto document = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    problem = content.empty() ? "empty file" : "not valid JSON (truncated or damaged)";
    return std::nullopt;
  }
  problem = result_document_problem(document);
  if (!problem.empty()) return std::nullopt;

  CollectedResult result;
  result.path = path;
  result.task = document["task"].get<std::string>();
  result.n_shot = document["n_shot"].get<int>();
  result.n_samples = document["n_samples"].get<long long>();
  result.key = document["key"].get<std::string>();
  result.key_inputs = std::move(document["key_inputs"]);
  // The model is the one its results directory stands for (results/<model>/<task>/<file>): results moved there by
  // `mill migrate` and those of a moved checkpoint (found by content) share their directory's row.
  const auto model_directory = path.parent_path().parent_path().filename().string();
  auto identity = model_directory.empty() ? std::string() : name_from_path_component(model_directory);
  if (identity.empty()) identity = string_field(document, "model_identity");
  if (identity.empty()) identity = string_field(result.key_inputs, "model");
  result.model = identity.empty() ? model_identity_of(document["model"].get<std::string>()) : identity;
  if (const auto it = result.key_inputs.find("limit"); it != result.key_inputs.end() && it->is_number_integer()) {
    result.limit = it->get<int>();
  }
  const auto* task = registry.find(result.task);
  result.benchmark = string_field(document, "benchmark");
  if (result.benchmark.empty() && task) result.benchmark = task->benchmark;
  result.output_type = string_field(document, "output_type");
  if (result.output_type.empty() && task) result.output_type = to_string(task->output_type);
  result.primary_metric = string_field(document, "primary_metric");
  auto document_method = string_field(document, "stderr_method");
  // The engine records how its standard errors were made under provenance.bootstrap (resamples, seed).
  if (document_method.empty() && document.contains("provenance") && document["provenance"].is_object() &&
      document["provenance"].contains("bootstrap")) {
    document_method = "bootstrap";
  }

  for (auto& [name, metric] : document["metrics"].items()) {
    const auto value = number_or_null(metric, "value");
    if (!value) continue;  // a metric the run could not compute (null) is not a number to average
    CollectedMetric out;
    out.name = name;
    out.value = *value;
    out.standard_error = number_or_null(metric, "stderr");
    out.stderr_method = string_field(metric, "stderr_method");
    if (out.stderr_method.empty()) out.stderr_method = document_method;
    if (out.stderr_method.empty() && out.standard_error) out.stderr_method = "result";
    const auto n = metric.find("n");
    out.n = n != metric.end() && n->is_number_integer() ? n->get<long long>() : result.n_samples;
    result.metrics.push_back(std::move(out));
  }
  if (result.metrics.empty()) {
    problem = "no metric has a numeric value";
    return std::nullopt;
  }
  return result;
}

ResultScan scan_results(const std::filesystem::path& output_dir, const TaskRegistry& registry, unsigned threads) {
  ResultScan scan;
  std::vector<std::filesystem::path> files;
  const auto root = output_dir / "results";
  std::error_code ec;
  // The layout is fixed (results/<model>/<task>/<file>), so three flat listings beat a recursive walk.
  for (const auto& model_dir : std::filesystem::directory_iterator(root, ec)) {
    if (!model_dir.is_directory(ec)) continue;
    for (const auto& task_dir : std::filesystem::directory_iterator(model_dir.path(), ec)) {
      if (!task_dir.is_directory(ec)) continue;
      for (const auto& file : std::filesystem::directory_iterator(task_dir.path(), ec)) {
        const auto name = file.path().filename().native();
        if (!ends_with(name, ".json") || name.front() == '.') continue;
        files.push_back(file.path());
      }
    }
  }
  std::sort(files.begin(), files.end());

  std::vector<std::optional<CollectedResult>> parsed(files.size());
  std::vector<std::string> problems(files.size());
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> bytes{0};
  const auto work = [&] {
    std::string content;
    std::size_t local_bytes = 0;
    while (true) {
      const auto i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= files.size()) break;
      if (!read_whole_file(files[i], content, problems[i])) continue;
      local_bytes += content.size();
      try {
        parsed[i] = parse_collected_result(files[i], content, registry, problems[i]);
      } catch (const std::exception& e) {
        // A result that parses as JSON but has fields of unexpected types: skip it like any damaged file.
        problems[i] = one_line(e.what());
      }
    }
    bytes += local_bytes;
  };
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(1, files.size() / 64)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();

  scan.bytes = bytes;
  scan.results.reserve(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (parsed[i]) {
      scan.results.push_back(std::move(*parsed[i]));
    } else {
      scan.skipped.push_back({files[i], problems[i].empty() ? "not a valid result" : problems[i]});
    }
  }
  return scan;
}

bool CollectFilter::accepts(const CollectedResult& result) const {
  if (!model_identities.empty() && !model_identities.count(result.model)) return false;
  if (!tasks.empty() && !tasks.count(result.task)) return false;
  if (!n_shots.empty() && !n_shots.count(result.n_shot)) return false;
  return true;
}

std::string primary_metric_of(const CollectedResult& result, const std::string& requested) {
  const auto has = [&](const std::string& name) {
    return std::any_of(result.metrics.begin(), result.metrics.end(),
                       [&](const CollectedMetric& m) { return m.name == name; });
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
    if (task.benchmark == benchmark) ++count;
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
    const auto match = match_job_key(key, result.key, result.key_inputs);
    if (!match.same) stale[result.path.string()] = stale_reason(match.differing);
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
      if (result.benchmark.empty()) continue;
      auto& group = groups[{result.model, result.n_shot, limit_order(result.limit), result.benchmark, metric.name}];
      group.subjects.push_back({metric.value, metric.standard_error, metric.n});
      if (metric.standard_error) group.methods.insert(metric.stderr_method);
      if (group.output_type.empty()) group.output_type = result.output_type;
      group.primary = group.primary || row.primary;
      group.stale += is_stale;
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
      row.benchmark = benchmark;
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
  std::string out =
      "model,task,benchmark,n_shot,limit,metric,aggregation,value,stderr,stderr_method,n_samples,n_tasks,"
      "n_tasks_expected,output_type,primary,stale,key\n";
  out.reserve(out.size() + rows.size() * 160);
  for (const auto& row : rows) {
    out += csv_field(row.model);
    out += ',';
    out += csv_field(row.task);
    out += ',';
    out += csv_field(row.benchmark);
    out += fmt::format(",{},{},", row.n_shot, row.limit ? std::to_string(*row.limit) : std::string());
    out += csv_field(row.metric);
    out += ',';
    out += row.aggregation;
    out += ',';
    out += csv_number(row.value);
    out += ',';
    out += row.standard_error ? csv_number(*row.standard_error) : std::string();
    out += ',';
    out += csv_field(row.stderr_method);
    out += fmt::format(",{},{},{},", row.n_samples, row.n_tasks, row.n_tasks_expected);
    out += csv_field(row.output_type);
    out += row.primary ? ",1," : ",0,";
    out += std::to_string(row.stale);
    out += ',';
    out += row.key;
    out += '\n';
  }
  return out;
}

// ---- --check ----

std::string shell_word(std::string_view word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_./:=,@%+-").find(c) != std::string_view::npos;
  });
  if (safe) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

namespace {

// "5shot" or "5shot-limit10" → (5, 10).
bool parse_result_stem(const std::string& stem, int& n_shot, std::optional<int>& limit) {
  int shots = 0, lim = 0, used = 0;
  if (std::sscanf(stem.c_str(), "%dshot-limit%d%n", &shots, &lim, &used) == 2 && used == static_cast<int>(stem.size())) {
    n_shot = shots;
    limit = lim;
    return true;
  }
  used = 0;
  if (std::sscanf(stem.c_str(), "%dshot%n", &shots, &used) == 1 && used == static_cast<int>(stem.size())) {
    n_shot = shots;
    limit.reset();
    return true;
  }
  return false;
}

struct ExpectedJob {
  std::string spec;
  const TaskInfo* task = nullptr;
  int n_shot = 0;
  std::optional<int> limit;
};

CheckEntry entry_for(const std::string& model, const std::string& task, int n_shot, const std::optional<int>& limit,
                     ResultState state, std::string reason, std::filesystem::path result) {
  return CheckEntry{model, task, n_shot, limit, state, std::move(reason), std::move(result)};
}

void file_entry(CheckReport& report, CheckEntry entry) {
  switch (entry.state) {
    case ResultState::done: ++report.done; break;
    case ResultState::missing: report.missing.push_back(std::move(entry)); break;
    case ResultState::stale: report.stale.push_back(std::move(entry)); break;
    case ResultState::corrupt: report.corrupt.push_back(std::move(entry)); break;
  }
}

}  // namespace

CheckReport check_results(const CheckRequest& request, const ResultScan& scan, const StaleResults& stale,
                          const TaskRegistry& registry) {
  CheckReport report;
  if (!request.models.empty() && !request.tasks.empty()) {
    PlanRequest plan_request{request.models, request.tasks, request.n_shots, std::nullopt, request.output_dir};
    const auto plan = build_plan(plan_request, registry);
    for (const auto& job : plan.jobs) {
      ++report.expected;
      file_entry(report, entry_for(job.job.model.to_string(), job.job.task->name, job.job.n_shot, job.job.limit,
                                   job.check.state, job.check.reason, job.result));
    }
  } else {
    // Narrowing by whatever was given.
    std::set<std::string> model_filter, task_filter;
    for (const auto& model : request.models) model_filter.insert(ModelSpec::parse(model).identity());
    if (!request.tasks.empty()) {
      for (const auto* task : registry.expand(request.tasks)) task_filter.insert(task->name);
    }
    std::set<int> shot_filter;
    if (request.n_shots) shot_filter.insert(request.n_shots->begin(), request.n_shots->end());
    const auto wanted = [&](const std::string& identity, const std::string& task, int n_shot) {
      return (model_filter.empty() || model_filter.count(identity)) && (task_filter.empty() || task_filter.count(task)) &&
             (shot_filter.empty() || shot_filter.count(n_shot));
    };

    std::unordered_map<std::string, const CollectedResult*> found;
    for (const auto& result : scan.results) found.emplace(result.path.string(), &result);
    std::unordered_map<std::string, const SkippedFile*> damaged;
    for (const auto& skipped : scan.skipped) damaged.emplace(skipped.path.string(), &skipped);

    // One entry per job, whatever its sources: keyed by the result path the job writes.
    std::unordered_map<std::string, ExpectedJob> expected;
    std::unordered_map<std::string, std::string> results_models;  // spec as written → its results directory's model
    const auto add_planned = [&](const std::string& spec_text, const std::string& task_name, int n_shot,
                                 const std::optional<int>& limit, const std::string& source) {
      const auto* task = registry.find(task_name);
      if (!task) {
        report.warnings.push_back(fmt::format("{} names task {} which mill does not know (pass --extra_task_paths?); "
                                              "not checked",
                                              source, quote_value(task_name)));
        return;
      }
      ModelSpec spec;
      try {
        spec = ModelSpec::parse(spec_text);
      } catch (const Error& e) {
        report.warnings.push_back(fmt::format("{}: {}; not checked", source, e.what()));
        return;
      }
      if (!wanted(spec.identity(), task->name, n_shot)) return;
      // A checkpoint folder's results may live under the name of the path they were first written for.
      auto [where, first_time] = results_models.try_emplace(spec_text);
      if (first_time) where->second = local_checkpoint_folder(spec) ? results_model(request.output_dir, identify_model(spec))
                                                                     : spec.identity();
      expected.try_emplace(result_path(request.output_dir, Job{spec, task, n_shot, limit, where->second}).string(),
                           ExpectedJob{spec_text, task, n_shot, limit});
    };

    // Sweeps first: their specs carry the execution arguments a resubmission should keep.
    std::error_code ec;
    std::vector<std::filesystem::path> manifests;
    for (const auto& sweep : std::filesystem::directory_iterator(request.output_dir / "sweeps", ec)) {
      if (std::filesystem::is_regular_file(sweep.path() / "manifest.json", ec)) manifests.push_back(sweep.path() / "manifest.json");
    }
    std::sort(manifests.begin(), manifests.end());
    for (const auto& manifest_path : manifests) {
      std::string content, problem;
      nlohmann::json manifest;
      if (read_whole_file(manifest_path, content, problem)) manifest = nlohmann::json::parse(content, nullptr, false);
      if (!manifest.is_object() || !manifest.contains("elements") || !manifest["elements"].is_array()) {
        report.warnings.push_back(fmt::format("sweep manifest {} is unreadable or not a mill manifest; skipped",
                                              manifest_path.string()));
        continue;
      }
      for (const auto& element : manifest["elements"]) {
        const auto model = string_field(element, "model");
        if (model.empty() || !element.contains("jobs") || !element["jobs"].is_array()) continue;
        for (const auto& job : element["jobs"]) {
          if (!job.is_object() || !job.contains("n_shot") || !job["n_shot"].is_number_integer()) continue;
          std::optional<int> limit;
          if (job.contains("limit") && job["limit"].is_number_integer()) limit = job["limit"].get<int>();
          add_planned(model, string_field(job, "task"), job["n_shot"].get<int>(), limit, manifest_path.string());
        }
      }
    }
    // Results found: their own path is the job's (no spec parsing per file: 100k of them is common).
    std::map<std::string, std::size_t> unknown_tasks;  // one warning per task, not per file
    for (const auto& result : scan.results) {
      const auto* task = registry.find(result.task);
      if (!task) {
        ++unknown_tasks[result.task];
        continue;
      }
      if (!wanted(result.model, result.task, result.n_shot)) continue;
      expected.try_emplace(result.path.string(), ExpectedJob{result.model, task, result.n_shot, result.limit});
    }
    for (const auto& [task, count] : unknown_tasks) {
      report.warnings.push_back(fmt::format("{} result(s) of task {}, which mill does not know (pass "
                                            "--extra_task_paths?), are aggregated but not checked",
                                            count, quote_value(task)));
    }
    for (const auto& skipped : scan.skipped) {
      // A damaged file still says, through its path, which job it was meant to be.
      int n_shot = 0;
      std::optional<int> limit;
      if (!parse_result_stem(skipped.path.stem().string(), n_shot, limit)) continue;
      add_planned(name_from_path_component(skipped.path.parent_path().parent_path().filename().string()),
                  skipped.path.parent_path().filename().string(), n_shot, limit, skipped.path.string());
    }

    for (const auto& [path, job] : expected) {
      ++report.expected;
      ResultState state = ResultState::missing;
      std::string reason;
      if (found.count(path)) {
        const auto it = stale.find(path);
        state = it == stale.end() ? ResultState::done : ResultState::stale;
        if (it != stale.end()) reason = it->second;
      } else if (const auto bad = damaged.find(path); bad != damaged.end()) {
        state = ResultState::corrupt;
        reason = bad->second->reason;
      }
      if (state != ResultState::done) {
        file_entry(report, entry_for(job.spec, job.task->name, job.n_shot, job.limit, state, reason, path));
      } else {
        ++report.done;
      }
    }
    const auto by_job = [](const CheckEntry& a, const CheckEntry& b) {
      return std::make_tuple(std::cref(a.model), std::cref(a.task), a.n_shot, limit_order(a.limit)) <
             std::make_tuple(std::cref(b.model), std::cref(b.task), b.n_shot, limit_order(b.limit));
    };
    for (auto* list : {&report.missing, &report.stale, &report.corrupt}) std::sort(list->begin(), list->end(), by_job);
  }
  std::vector<const CheckEntry*> pending;
  for (const auto* list : {&report.missing, &report.stale, &report.corrupt}) {
    for (const auto& entry : *list) pending.push_back(&entry);
  }
  report.resubmit_commands = resubmit_commands(pending, request.output_dir, request.extra_task_paths, registry);
  return report;
}

std::vector<std::string> resubmit_commands(const std::vector<const CheckEntry*>& pending,
                                           const std::filesystem::path& output_dir,
                                           const std::vector<std::string>& extra_task_paths,
                                           const TaskRegistry& registry) {
  std::map<std::string, std::size_t> task_order;
  for (std::size_t i = 0; i < registry.tasks().size(); ++i) task_order[registry.tasks()[i].name] = i;
  const auto by_registry_order = [&](const std::string& a, const std::string& b) {
    const auto ia = task_order.count(a) ? task_order[a] : task_order.size();
    const auto ib = task_order.count(b) ? task_order[b] : task_order.size();
    return std::tie(ia, a) < std::tie(ib, b);
  };

  // 1. tasks per (limit, n_shot, model).
  std::map<std::tuple<int, int, std::string>, std::set<std::string>> tasks_of;
  for (const auto* entry : pending) tasks_of[{limit_order(entry->limit), entry->n_shot, entry->model}].insert(entry->task);

  // 2. a task set as the user would type it: a benchmark whose every task is pending is written by its name.
  const auto task_words = [&](const std::set<std::string>& tasks) {
    std::vector<std::string> names(tasks.begin(), tasks.end());
    std::sort(names.begin(), names.end(), by_registry_order);
    std::vector<std::string> words;
    std::set<std::string> covered;
    for (const auto& benchmark : registry.benchmarks()) {
      bool all = true, any = false;
      for (const auto& task : registry.tasks()) {
        if (task.benchmark != benchmark) continue;
        any = true;
        if (!tasks.count(task.name)) all = false;
      }
      if (any && all) covered.insert(benchmark);
    }
    std::set<std::string> written;
    for (const auto& name : names) {
      const auto* task = registry.find(name);
      if (task && covered.count(task->benchmark)) {
        if (written.insert(task->benchmark).second) words.push_back(task->benchmark);
      } else {
        words.push_back(name);
      }
    }
    return join(words, ",");
  };

  // 3. models with the same (limit, n_shot, tasks) share a command; a spec with a comma inside stays alone so the
  // list never becomes ambiguous.
  std::map<std::tuple<int, int, std::string>, std::vector<std::vector<std::string>>> models_of;
  for (const auto& [key, tasks] : tasks_of) {
    const auto& [limit, n_shot, model] = key;
    auto& lists = models_of[{limit, n_shot, task_words(tasks)}];
    const bool has_comma = model.find(',') != std::string::npos;
    if (has_comma || lists.empty() || lists.back().front().find(',') != std::string::npos) {
      lists.push_back({model});
    } else {
      lists.back().push_back(model);
    }
  }

  // 4. n_shots with the same (limit, models, tasks) share a command.
  std::map<std::tuple<int, std::string, std::string>, std::vector<int>> shots_of;
  for (const auto& [key, lists] : models_of) {
    const auto& [limit, n_shot, tasks] = key;
    for (const auto& models : lists) shots_of[{limit, join(models, ","), tasks}].push_back(n_shot);
  }

  std::vector<std::string> commands;
  for (const auto& [key, shots] : shots_of) {
    const auto& [limit, models, tasks] = key;
    std::vector<std::string> shot_text;
    for (int n : shots) shot_text.push_back(std::to_string(n));
    auto command = fmt::format("mill --output_dir {} schedule {} {} --n_shots {}", shell_word(output_dir.string()),
                               shell_word(models), shell_word(tasks), join(shot_text, ","));
    if (limit >= 0) command += fmt::format(" --limit {}", limit);
    if (!extra_task_paths.empty()) command += " --extra_task_paths " + shell_word(join(extra_task_paths, ","));
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace mill
