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

#include "mill/atomic_file.hpp"
#include "mill/error.hpp"
#include "mill/job.hpp"
#include "mill/model_list.hpp"
#include "mill/model_identity.hpp"
#include "mill/model_spec.hpp"
#include "mill/plan.hpp"
#include "mill/rollup.hpp"
#include "mill/text.hpp"
#include "mill/version.hpp"
#include "mill/shell.hpp"

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
  // O_NOFOLLOW: a symlink in the results tree is not mill's, and is not read as a result.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    problem = fmt::format("cannot open: {}", error == ELOOP ? "it is a symbolic link" : std::strerror(error));
    errno = error;
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
  // The entries of one directory; one that exists but cannot be listed (or stops listing) is recorded, not skipped.
  const auto list = [&](const std::filesystem::path& dir) {
    std::vector<std::filesystem::directory_entry> entries;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    for (std::filesystem::directory_iterator end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
    if (ec && !(dir == root && ec == std::errc::no_such_file_or_directory)) {
      scan.unreadable.push_back({dir, fmt::format("cannot list the directory: {}", ec.message())});
    }
    return entries;
  };
  // The layout is fixed (results/<model>/<task>/<file>), so three flat listings beat a recursive walk.
  std::error_code ec;
  for (const auto& model_dir : list(root)) {
    if (!model_dir.is_directory(ec)) continue;
    for (const auto& task_dir : list(model_dir.path())) {
      if (!task_dir.is_directory(ec)) continue;
      for (const auto& file : list(task_dir.path())) {
        const auto name = file.path().filename().native();
        if (!ends_with(name, ".json") || name.front() == '.') continue;
        files.push_back(file.path());
      }
    }
  }
  std::sort(files.begin(), files.end());

  std::vector<std::optional<CollectedResult>> parsed(files.size());
  std::vector<std::string> problems(files.size());
  std::vector<char> cannot_open(files.size(), 0);  // permissions, not damage
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> bytes{0};
  const auto work = [&] {
    std::string content;
    std::size_t local_bytes = 0;
    while (true) {
      const auto i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= files.size()) break;
      if (!read_whole_file(files[i], content, problems[i])) {
        cannot_open[i] = errno == EACCES || errno == EPERM;
        continue;
      }
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
    } else if (cannot_open[i]) {
      scan.unreadable.push_back({files[i], problems[i]});
    } else {
      scan.skipped.push_back({files[i], problems[i].empty() ? "not a valid result" : problems[i]});
    }
  }
  std::sort(scan.unreadable.begin(), scan.unreadable.end(),
            [](const SkippedFile& a, const SkippedFile& b) { return a.path < b.path; });
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
    const auto match = match_job_key(key, result.key, result.key_inputs);
    if (match.same) continue;
    if (const auto newer = newer_scoring_version(result.key_inputs, key.inputs)) {
      stale[result.path.string()] = fmt::format("computed by a newer mill (scoring_version {}; this mill's is {}): left "
                                                "as it is",
                                                *newer, key.inputs["scoring_version"].get<int>());
      continue;
    }
    stale[result.path.string()] = stale_reason(match.differing);
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
  std::shared_ptr<const ScheduleSettings> settings;
};

CheckEntry entry_for(const ExpectedJob& job, ResultState state, std::string reason, std::filesystem::path result) {
  return CheckEntry{job.spec, job.task->name, job.n_shot, job.limit, state, std::move(reason), std::move(result),
                    job.settings};
}

void file_entry(CheckReport& report, CheckEntry entry) {
  switch (entry.state) {
    case ResultState::done: ++report.done; break;
    case ResultState::missing: report.missing.push_back(std::move(entry)); break;
    case ResultState::stale: report.stale.push_back(std::move(entry)); break;
    case ResultState::corrupt: report.corrupt.push_back(std::move(entry)); break;
  }
}

// One job a sweep's manifest planned, with the settings it was planned with.
struct SweepJob {
  std::string spec;  // as the sweep had it (execution arguments kept)
  std::string task;
  int n_shot = 0;
  std::optional<int> limit;
  std::shared_ptr<const ScheduleSettings> settings;
  std::string manifest;  // where it was read, for warnings
};

// Every job of every sweep under <output_dir>/sweeps, newest sweep first (ids sort by time), so that the first
// sweep naming a job is the one whose settings a resubmission repeats.
std::vector<SweepJob> read_sweep_jobs(const std::filesystem::path& output_dir, std::vector<std::string>& warnings) {
  std::error_code ec;
  std::vector<std::filesystem::path> manifests;
  for (const auto& sweep : std::filesystem::directory_iterator(output_dir / "sweeps", ec)) {
    if (std::filesystem::is_regular_file(sweep.path() / "manifest.json", ec)) manifests.push_back(sweep.path() / "manifest.json");
  }
  std::sort(manifests.rbegin(), manifests.rend());
  std::vector<SweepJob> jobs;
  for (const auto& manifest_path : manifests) {
    std::string content, problem;
    nlohmann::json manifest;
    if (read_whole_file(manifest_path, content, problem)) manifest = nlohmann::json::parse(content, nullptr, false);
    if (!manifest.is_object() || !manifest.contains("elements") || !manifest["elements"].is_array()) {
      warnings.push_back(fmt::format("sweep manifest {} is unreadable or not a mill manifest; skipped", manifest_path.string()));
      continue;
    }
    const auto settings = std::make_shared<const ScheduleSettings>(
        ScheduleSettings::from_manifest_settings(manifest.value("settings", nlohmann::json::object()), output_dir));
    for (const auto& element : manifest["elements"]) {
      const auto model = string_field(element, "model");
      if (model.empty() || !element.contains("jobs") || !element["jobs"].is_array()) continue;
      for (const auto& job : element["jobs"]) {
        if (!job.is_object() || !job.contains("n_shot") || !job["n_shot"].is_number_integer()) continue;
        std::optional<int> limit;
        if (job.contains("limit") && job["limit"].is_number_integer()) limit = job["limit"].get<int>();
        jobs.push_back({model, string_field(job, "task"), job["n_shot"].get<int>(), limit, settings, manifest_path.string()});
      }
    }
  }
  return jobs;
}

// Jobs that are not done but cannot be judged (their file or directory is unreadable) or need no resubmission
// (queued or running in a sweep) leave the missing/stale/corrupt lists, and so the resubmit lines.
void set_aside_unreadable_and_in_flight(CheckReport& report, const ResultScan& scan, const CheckRequest& request,
                                        const TaskRegistry& registry) {
  std::unordered_map<std::string, const SkippedFile*> unreadable;
  for (const auto& entry : scan.unreadable) unreadable.emplace(entry.path.string(), &entry);
  std::map<std::string, std::string> revisions;  // model spec → revision, resolved once
  const auto in_flight_reason = [&](const CheckEntry& entry) -> std::string {
    if (request.in_flight.empty()) return {};
    const auto* task = registry.find(entry.task);
    if (!task) return {};
    try {
      const auto spec = ModelSpec::parse(entry.model);
      auto [it, inserted] = revisions.try_emplace(entry.model);
      if (inserted) it->second = resolve_model_revision(spec);
      const auto key = make_job_key(Job{spec, task, entry.n_shot, entry.limit}, it->second);
      const auto found = request.in_flight.find(key.digest);
      return found == request.in_flight.end() ? std::string() : found->second;
    } catch (const Error&) {
      return {};
    }
  };
  for (auto* list : {&report.missing, &report.stale, &report.corrupt}) {
    std::vector<CheckEntry> kept;
    for (auto& entry : *list) {
      const SkippedFile* blocked = nullptr;
      for (auto path = entry.result; !blocked && path.has_relative_path() && path != request.output_dir;
           path = path.parent_path()) {
        if (const auto it = unreadable.find(path.string()); it != unreadable.end()) blocked = it->second;
      }
      if (blocked) {
        entry.reason = fmt::format("{}: {}", blocked->path.string(), blocked->reason);
        report.unreadable.push_back(std::move(entry));
      } else if (auto where = in_flight_reason(entry); !where.empty()) {
        entry.reason = std::move(where);
        report.in_flight.push_back(std::move(entry));
      } else {
        kept.push_back(std::move(entry));
      }
    }
    *list = std::move(kept);
  }
}

}  // namespace

CheckReport check_results(const CheckRequest& request, const ResultScan& scan, const StaleResults& stale,
                          const TaskRegistry& registry) {
  CheckReport report;
  const auto sweep_jobs = read_sweep_jobs(request.output_dir, report.warnings);
  // The result path a planned job writes → its sweep job (the newest sweep's), or null when it names a task mill
  // does not know or a spec it cannot parse (warned about once, here).
  std::unordered_map<std::string, const SweepJob*> sweep_job_at;
  std::vector<std::pair<std::string, ExpectedJob>> planned;  // result path → job, newest sweep's first
  std::unordered_map<std::string, std::optional<ModelSpec>> specs;  // parsed once per model, not per job
  std::unordered_map<std::string, std::string> results_models;     // spec as written → its results directory's model
  for (const auto& job : sweep_jobs) {
    const auto* task = registry.find(job.task);
    if (!task) {
      report.warnings.push_back(fmt::format("{} names task {} which mill does not know (pass --extra_task_paths?); "
                                            "not checked",
                                            job.manifest, quote_value(job.task)));
      continue;
    }
    auto [parsed, first] = specs.try_emplace(job.spec);
    if (first) {
      try {
        parsed->second = ModelSpec::parse(job.spec);
      } catch (const Error& e) {
        report.warnings.push_back(fmt::format("{}: {}; not checked", job.manifest, e.what()));
      }
    }
    if (!parsed->second) continue;
    // A checkpoint folder's results may live under the name of the path they were first written for.
    auto [where, first_time] = results_models.try_emplace(job.spec);
    if (first_time) {
      where->second = local_checkpoint_folder(*parsed->second)
                          ? results_model(request.output_dir, identify_model(*parsed->second))
                          : parsed->second->identity();
    }
    const auto path =
        result_path(request.output_dir, Job{*parsed->second, task, job.n_shot, job.limit, where->second}).string();
    if (sweep_job_at.emplace(path, &job).second) {
      planned.push_back({path, ExpectedJob{job.spec, task, job.n_shot, job.limit, job.settings}});
    }
  }

  if (!request.models.empty() && !request.tasks.empty()) {
    PlanRequest plan_request{request.models, request.tasks, request.n_shots, std::nullopt, request.output_dir};
    const auto plan = build_plan(plan_request, registry);
    for (const auto& job : plan.jobs) {
      ++report.expected;
      ExpectedJob expected{job.job.model.to_string(), job.job.task, job.job.n_shot, job.job.limit, nullptr};
      if (const auto it = sweep_job_at.find(job.result.string()); it != sweep_job_at.end()) {
        expected.settings = it->second->settings;
      }
      auto entry = entry_for(expected, job.check.state, job.check.reason, job.result);
      entry.from_newer_scorer = job.check.newer_scoring_version.has_value();
      file_entry(report, std::move(entry));
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
    // Sweeps first: their specs carry the execution arguments and settings a resubmission should keep.
    for (const auto& [path, entry] : planned) {
      if (wanted(model_identity_of(entry.spec), entry.task->name, entry.n_shot)) expected.try_emplace(path, entry);
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
      expected.try_emplace(result.path.string(), ExpectedJob{result.model, task, result.n_shot, result.limit, nullptr});
    }
    for (const auto& [task, count] : unknown_tasks) {
      report.warnings.push_back(fmt::format("{} result(s) of task {}, which mill does not know (pass "
                                            "--extra_task_paths?), are aggregated but not checked",
                                            count, quote_value(task)));
    }
    std::vector<SkippedFile> named_by_path = scan.skipped;
    named_by_path.insert(named_by_path.end(), scan.unreadable.begin(), scan.unreadable.end());
    for (const auto& skipped : named_by_path) {
      // A damaged or unreadable file still says, through its path, which job it was meant to be.
      int n_shot = 0;
      std::optional<int> limit;
      if (!parse_result_stem(skipped.path.stem().string(), n_shot, limit)) continue;
      const auto spec_text = name_from_path_component(skipped.path.parent_path().parent_path().filename().string());
      const auto task_name = skipped.path.parent_path().filename().string();
      const auto* task = registry.find(task_name);
      if (!task) {
        report.warnings.push_back(fmt::format("{} names task {} which mill does not know (pass --extra_task_paths?); "
                                              "not checked",
                                              skipped.path.string(), quote_value(task_name)));
        continue;
      }
      ModelSpec spec;
      try {
        spec = ModelSpec::parse(spec_text);
      } catch (const Error& e) {
        report.warnings.push_back(fmt::format("{}: {}; not checked", skipped.path.string(), e.what()));
        continue;
      }
      if (!wanted(spec.identity(), task->name, n_shot)) continue;
      expected.try_emplace(result_path(request.output_dir, Job{spec, task, n_shot, limit}).string(),
                           ExpectedJob{spec_text, task, n_shot, limit, nullptr});
    }

    for (const auto& [path, job] : expected) {
      ++report.expected;
      ResultState state = ResultState::missing;
      std::string reason;
      bool newer = false;
      if (const auto result = found.find(path); result != found.end()) {
        const auto it = stale.find(path);
        state = it == stale.end() ? ResultState::done : ResultState::stale;
        if (it != stale.end()) reason = it->second;
        newer = state == ResultState::stale &&
                newer_scoring_version(result->second->key_inputs, {{"scoring_version", kScoringVersion}}).has_value();
      } else if (const auto bad = damaged.find(path); bad != damaged.end()) {
        state = ResultState::corrupt;
        reason = bad->second->reason;
      }
      if (state != ResultState::done) {
        auto entry = entry_for(job, state, reason, path);
        entry.from_newer_scorer = newer;
        file_entry(report, std::move(entry));
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
  set_aside_unreadable_and_in_flight(report, scan, request, registry);
  std::vector<const CheckEntry*> pending;
  for (const auto* list : {&report.missing, &report.stale, &report.corrupt}) {
    for (const auto& entry : *list) {
      if (!entry.from_newer_scorer) pending.push_back(&entry);  // this mill would refuse to overwrite it
    }
  }
  ScheduleSettings fallback;
  fallback.output_dir = request.output_dir;
  fallback.extra_task_paths = request.extra_task_paths;
  report.resubmit_commands = resubmit_commands(pending, fallback, registry, request.list_files_dir);
  return report;
}

namespace {

// A list word too long for one argument goes to a file named by its content (so rerunning collect reuses it),
// one item per line; `option` is --models_file or --tasks_file. Items with a line break cannot be listed so.
std::vector<std::string> list_argument(const std::vector<std::string>& items, const std::string& joined,
                                       const char* option, const std::filesystem::path& list_files_dir) {
  const bool fits = joined.size() <= kLongListBytes;
  const bool one_per_line = std::none_of(items.begin(), items.end(), [](const std::string& item) {
    return item.find_first_of("\r\n") != std::string::npos;
  });
  if (fits || list_files_dir.empty() || !one_per_line) return {joined};
  const auto content = join(items, "\n") + "\n";
  const auto kind = std::string(option) == "--models_file" ? "models" : "tasks";
  const auto path = list_files_dir / fmt::format("{}-{}.txt", kind, content_hash(content).substr(0, 16));
  std::error_code ec;
  std::filesystem::create_directories(list_files_dir, ec);
  write_file_atomically(path, content);
  return {option, path.string()};
}

}  // namespace

std::vector<ResubmitCommand> resubmit_commands(const std::vector<const CheckEntry*>& pending,
                                               const ScheduleSettings& fallback, const TaskRegistry& registry,
                                               const std::filesystem::path& list_files_dir) {
  std::map<std::string, std::size_t> task_order;
  for (std::size_t i = 0; i < registry.tasks().size(); ++i) task_order[registry.tasks()[i].name] = i;
  const auto by_registry_order = [&](const std::string& a, const std::string& b) {
    const auto ia = task_order.count(a) ? task_order[a] : task_order.size();
    const auto ib = task_order.count(b) ? task_order[b] : task_order.size();
    return std::tie(ia, a) < std::tie(ib, b);
  };

  // 0. jobs planned with the same settings may share a command; the settings' JSON text is their grouping key.
  std::map<std::string, const ScheduleSettings*> settings_of;
  const auto settings_key = [&](const CheckEntry& entry) {
    const auto* settings = entry.settings ? entry.settings.get() : &fallback;
    auto key = settings->to_json().dump();
    settings_of.emplace(key, settings);
    return key;
  };

  // 1. tasks per (settings, limit, n_shot, model).
  std::map<std::tuple<std::string, int, int, std::string>, std::set<std::string>> tasks_of;
  for (const auto* entry : pending) {
    tasks_of[{settings_key(*entry), limit_order(entry->limit), entry->n_shot, entry->model}].insert(entry->task);
  }

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
    return words;
  };

  // 3. models with the same (settings, limit, n_shot, tasks) share a command (list items never run together:
  // model_list.hpp).
  std::map<std::tuple<std::string, int, int, std::vector<std::string>>, std::vector<std::string>> models_of;
  for (const auto& [key, tasks] : tasks_of) {
    const auto& [settings, limit, n_shot, model] = key;
    models_of[{settings, limit, n_shot, task_words(tasks)}].push_back(model);
  }

  // 4. n_shots with the same (settings, limit, models, tasks) share a command.
  std::map<std::tuple<std::string, int, std::vector<std::string>, std::vector<std::string>>, std::vector<int>> shots_of;
  for (const auto& [key, models] : models_of) {
    const auto& [settings, limit, n_shot, tasks] = key;
    shots_of[{settings, limit, models, tasks}].push_back(n_shot);
  }

  std::vector<ResubmitCommand> commands;
  for (const auto& [key, shots] : shots_of) {
    const auto& [settings_text, limit, models, tasks] = key;
    const auto& settings = *settings_of.at(settings_text);
    std::vector<std::string> model_items;
    for (const auto& model : models) model_items.push_back(model_list_item(model));
    std::vector<std::string> shot_text;
    for (int n : shots) shot_text.push_back(std::to_string(n));

    ResubmitCommand command;
    auto& argv = command.argv;
    argv.push_back("mill");
    for (auto& word : settings.global_arguments()) argv.push_back(std::move(word));
    argv.push_back("schedule");
    const auto model_words = list_argument(models, join(model_items, ","), "--models_file", list_files_dir);
    const auto task_list = list_argument(tasks, join(tasks, ","), "--tasks_file", list_files_dir);
    // Positional lists first (MODELS TASKS), then the files that stand for the others.
    if (model_words.size() == 1) argv.push_back(model_words.front());
    if (task_list.size() == 1) argv.push_back(task_list.front());
    if (model_words.size() == 2) argv.insert(argv.end(), model_words.begin(), model_words.end());
    if (task_list.size() == 2) argv.insert(argv.end(), task_list.begin(), task_list.end());
    argv.insert(argv.end(), {"--n_shots", join(shot_text, ",")});
    if (limit >= 0) argv.insert(argv.end(), {"--limit", std::to_string(limit)});
    for (auto& word : settings.schedule_arguments()) argv.push_back(std::move(word));

    std::vector<std::string> quoted;
    for (const auto& word : argv) quoted.push_back(shell_word(word));
    command.line = join(quoted, " ");
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace mill
