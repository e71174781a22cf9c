// `mill collect`: read every result under --output_dir, write aggregate.csv, report.md and heatmap.svg beside
// it, list what is missing or stale with the command that resubmits it (exit 3), and compare two models.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <iostream>
#include <map>
#include <tuple>

#include "commands.hpp"
#include "mill/atomic_file.hpp"
#include "mill/collect.hpp"
#include "mill/compare.hpp"
#include "mill/error.hpp"
#include "mill/model_list.hpp"
#include "mill/model_spec.hpp"
#include "mill/report.hpp"
#include "mill/slurm.hpp"
#include "mill/submit.hpp"
#include "mill/tasks.hpp"
#include "mill/text.hpp"

namespace mill::cli {

namespace {

struct CollectOptions {
  std::string models;
  std::string tasks;
  std::string n_shots;
  std::string metric;
  std::vector<std::string> compare;
  std::string extra_task_paths;
  bool check = true;
  bool json = false;
  int threads = 0;
  int replicates = kCompareReplicates;
};

std::string utc_now() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string percent(const std::string& metric, double value, const std::optional<double>& error) {
  if (!is_fraction_metric(metric)) return error ? fmt::format("{:.4g} ± {:.2g}", value, *error) : fmt::format("{:.4g}", value);
  return error ? fmt::format("{:.1f} ± {:.1f}", 100 * value, 100 * *error) : fmt::format("{:.1f}", 100 * value);
}

std::string shots(int n_shot, const std::optional<int>& limit) {
  return limit ? fmt::format("{}-shot/limit {}", n_shot, *limit) : fmt::format("{}-shot", n_shot);
}

// Task names as the user typed them: benchmarks expand; a name mill does not define is still accepted when a
// result carries it (a task from a YAML file not passed this time), since collect only filters by it.
std::set<std::string> task_filter(const std::vector<std::string>& names, const TaskRegistry& registry,
                                  const ResultScan& scan) {
  std::set<std::string> tasks;
  for (const auto& name : names) {
    try {
      for (const auto* task : registry.expand({name})) tasks.insert(task->name);
    } catch (const Error&) {
      const bool in_results = std::any_of(scan.results.begin(), scan.results.end(),
                                          [&](const CollectedResult& r) { return r.task == name; });
      if (!in_results) throw;
      tasks.insert(name);
    }
  }
  return tasks;
}

std::string model_identity_or_throw(const std::string& text, const char* option) {
  try {
    return ModelSpec::parse(text).identity();
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", option, e.what()));
  }
}

void print_rollups(const std::vector<AggregateRow>& rows) {
  std::vector<const AggregateRow*> micro;
  std::map<std::tuple<std::string, int, int, std::string, std::string>, const AggregateRow*> macro_of;
  const auto key_of = [](const AggregateRow& row) {
    return std::make_tuple(row.model, row.n_shot, row.limit.value_or(-1), row.benchmark, row.metric);
  };
  for (const auto& row : rows) {
    if (row.aggregation == kAggregationMicro && row.primary) micro.push_back(&row);
    if (row.aggregation == kAggregationMacro && row.primary) macro_of[key_of(row)] = &row;
  }
  if (micro.empty()) return;
  std::size_t model_width = 5, bench_width = 9;
  for (const auto* row : micro) {
    model_width = std::max(model_width, one_line(row->model).size());
    bench_width = std::max(bench_width, row->benchmark.size());
  }
  std::cout << fmt::format("\n{:<{}}  {:<16}  {:<{}}  {:<12}  {:>24}  {:>22}  {}\n", "model", model_width, "shots",
                           "benchmark", bench_width, "metric", "micro (sample-weighted)", "macro (subject mean)",
                           "subjects");
  for (const auto* row : micro) {
    const auto found = macro_of.find(key_of(*row));
    const AggregateRow* macro = found == macro_of.end() ? nullptr : found->second;
    std::cout << fmt::format("{:<{}}  {:<16}  {:<{}}  {:<12}  {:>24}  {:>22}  {}/{}\n", one_line(row->model), model_width,
                             shots(row->n_shot, row->limit), row->benchmark, bench_width, row->metric,
                             percent(row->metric, row->value, row->standard_error),
                             macro ? percent(macro->metric, macro->value, macro->standard_error) : "–", row->n_tasks,
                             row->n_tasks_expected);
  }
}

void print_comparison(const Comparison& comparison) {
  std::cout << fmt::format("\ncompare: A = {}  vs  B = {}  (A − B in points; 95% paired-bootstrap interval)\n",
                           one_line(comparison.model_a), one_line(comparison.model_b));
  std::size_t task_width = 4;
  for (const auto& row : comparison.rows) task_width = std::max(task_width, row.task.size());
  std::size_t metric_width = 6;
  for (const auto& row : comparison.rows) metric_width = std::max(metric_width, row.metric.size());
  // "A − B" is padded by hand: fmt pads by code points, but the minus sign is three bytes.
  std::cout << fmt::format("{:<{}}  {:<10}  {:<{}}  {:<21}  {:>7}  {:>7}  {:>7}  {:>7}  {:<18}  {}\n", "task", task_width,
                           "shots", "metric", metric_width, "aggregation", "pairs", "A", "B", "A − B", "95% interval",
                           "verdict");
  for (const auto& row : comparison.rows) {
    const auto& d = row.difference;
    std::cout << fmt::format("{:<{}}  {:<10}  {:<{}}  {:<21}  {:>7}  {:>7}  {:>7}  {:>+7.1f}  {:<18}  {}\n", row.task,
                             task_width, shots(row.n_shot, row.limit), row.metric, metric_width, d.aggregation, d.n_pairs,
                             percent(row.metric, d.mean_a, std::nullopt), percent(row.metric, d.mean_b, std::nullopt),
                             100 * d.difference, fmt::format("[{:+.1f}, {:+.1f}]", 100 * d.ci_low, 100 * d.ci_high),
                             significance_text(d));
  }
  for (const auto& warning : comparison.warnings) spdlog::warn("compare: {}", warning);
}

void print_check(const CheckReport& check) {
  std::cout << fmt::format("\ncheck: {} expected, {} done, {} missing, {} stale, {} corrupt", check.expected, check.done,
                           check.missing.size(), check.stale.size(), check.corrupt.size());
  if (!check.unreadable.empty()) std::cout << fmt::format(", {} unreadable", check.unreadable.size());
  if (!check.in_flight.empty()) std::cout << fmt::format(", {} in flight", check.in_flight.size());
  std::cout << "\n";
  const auto list = [](const char* title, const std::vector<CheckEntry>& entries) {
    if (entries.empty()) return;
    std::cout << fmt::format("{} ({}):\n", title, entries.size());
    for (const auto& e : entries) {
      std::cout << fmt::format("  {}  {}  {}{}\n", one_line(e.model), e.task, shots(e.n_shot, e.limit),
                               e.reason.empty() ? "" : "  (" + one_line(e.reason) + ")");
    }
  };
  list("missing", check.missing);
  list("stale: a result exists but its key no longer matches", check.stale);
  list("corrupt", check.corrupt);
  list("unreadable (mill cannot read them; not resubmitted)", check.unreadable);
  list("in flight (queued or running in a sweep; not resubmitted)", check.in_flight);
  if (!check.resubmit_commands.empty()) {
    std::cout << "resubmit exactly these with:\n";
    for (const auto& command : check.resubmit_commands) std::cout << "  " << command.line << "\n";
  }
}

// Jobs of this output dir's sweeps that SLURM still has (this user's queue), key → where, for --check. Without a
// sweep there is nothing to ask; without squeue (collect away from the cluster) nothing is known to be in flight.
std::map<std::string, std::string> jobs_queued_or_running(const std::filesystem::path& output_dir) {
  std::map<std::string, std::string> out;
  const auto sweeps = list_sweeps(output_dir);
  const bool any_submitted = std::any_of(sweeps.begin(), sweeps.end(), [](const SweepPaths& sweep) {
    std::error_code ec;
    return std::filesystem::exists(sweep.submission(), ec);
  });
  if (!any_submitted) return out;
  std::string error;
  const auto queue = query_user_queue(&error);
  if (!queue) {
    spdlog::info("check: cannot ask SLURM which jobs are in flight ({}); queued jobs are listed as missing", error);
    return out;
  }
  for (const auto& [key, job] : jobs_in_flight(output_dir, *queue)) {
    out[key] = fmt::format("{} in sweep {} (array job {}, element {})", job.state, job.sweep_id, job.array_job_id,
                           job.element);
  }
  return out;
}

void print_summary(const ResultScan& scan, const std::vector<AggregateRow>& rows, const StaleResults& stale,
                   const std::filesystem::path& output_dir, const Comparison* comparison, const CheckReport* check);
nlohmann::json collect_json(const ResultScan& scan, const std::vector<AggregateRow>& rows, const StaleResults& stale,
                            const CheckReport* check);

void run_collect(const CollectOptions& options, const GlobalOptions& global) {
  const auto output_dir = global.output_dir_path();
  std::vector<std::filesystem::path> extra_paths;
  const auto extra_texts = parse_list_option(options.extra_task_paths);
  for (const auto& path : extra_texts) extra_paths.push_back(std::filesystem::absolute(path));
  const auto registry = TaskRegistry::load(extra_paths);
  if (options.threads < 0) throw Error(fmt::format("--threads: {} is not 0 (one per core) or a positive number", options.threads));
  if (options.replicates < 100) {
    throw Error(fmt::format("--bootstrap_replicates: {} is too few (expected at least 100)", options.replicates));
  }

  CheckRequest check_request;
  check_request.output_dir = output_dir;
  check_request.models = split_model_list(options.models);
  check_request.tasks = parse_list_option(options.tasks);
  if (!options.n_shots.empty()) check_request.n_shots = parse_int_list_option(options.n_shots, "--n_shots");
  std::vector<std::string> absolute_extra;
  for (const auto& path : extra_paths) absolute_extra.push_back(path.string());
  check_request.extra_task_paths = absolute_extra;
  check_request.list_files_dir = output_dir / "resubmit";

  CollectFilter filter;
  for (const auto& model : check_request.models) filter.model_identities.insert(model_identity_or_throw(model, "--models"));
  if (check_request.n_shots) filter.n_shots.insert(check_request.n_shots->begin(), check_request.n_shots->end());
  filter.metric = options.metric;

  const bool explicit_matrix = !check_request.models.empty() && !check_request.tasks.empty();
  std::error_code ec;
  // Without results, the sweeps still say what was planned (an array whose every job failed).
  if (!std::filesystem::is_directory(output_dir / "results", ec) && !explicit_matrix &&
      !std::filesystem::is_directory(output_dir / "sweeps", ec)) {
    throw Error(fmt::format("no results under {} (expected {}/results/<model>/<task>/<n>shot.json written by mill eval; "
                            "is --output_dir right?)",
                            quote_value(output_dir.string()), output_dir.string()));
  }

  const auto scan = scan_results(output_dir, registry, static_cast<unsigned>(options.threads));
  for (const auto& skipped : scan.skipped) {
    spdlog::warn("skipping {}: {} (not counted)", skipped.path.string(), one_line(skipped.reason));
  }
  for (const auto& entry : scan.unreadable) {
    spdlog::warn("cannot read {}: {} (not counted)", entry.path.string(), one_line(entry.reason));
  }
  filter.tasks = task_filter(check_request.tasks, registry, scan);

  if (!filter.metric.empty()) {
    std::set<std::string> available;
    bool found = false;
    for (const auto& result : scan.results) {
      if (!filter.accepts(result)) continue;
      for (const auto& metric : result.metrics) {
        available.insert(metric.name);
        found = found || metric.name == filter.metric;
      }
    }
    if (!found && !available.empty()) {
      throw Error(fmt::format("--metric: no selected result has metric {} (they have: {})", quote_value(filter.metric),
                              join({available.begin(), available.end()}, ", ")));
    }
  }

  // Cheap (keys are recomputed in memory), so done even with --no-check: stale numbers are marked wherever shown.
  const auto stale = find_stale_results(scan, registry);
  const auto rows = aggregate_results(scan.results, filter, registry, &stale);
  write_file_atomically(output_dir / "aggregate.csv", aggregate_csv(rows));

  std::optional<Comparison> comparison;
  if (!options.compare.empty()) {
    const auto a = model_identity_or_throw(options.compare.at(0), "--compare");
    const auto b = model_identity_or_throw(options.compare.at(1), "--compare");
    if (a == b) throw Error(fmt::format("--compare: both models are {}; name two different models", quote_value(a)));
    for (const auto& model : {a, b}) {
      const bool present = std::any_of(scan.results.begin(), scan.results.end(),
                                       [&](const CollectedResult& r) { return r.model == model; });
      if (!present) {
        std::set<std::string> known;
        for (const auto& r : scan.results) known.insert(r.model);
        throw Error(fmt::format("--compare: no result for model {} under {} (models with results: {})", quote_value(model),
                                output_dir.string(), join(closest_names(model, {known.begin(), known.end()}, 5), ", ")));
      }
    }
    comparison = compare_models(scan, a, b, filter, options.replicates);
  }

  std::optional<CheckReport> check;
  if (options.check) {
    check_request.in_flight = jobs_queued_or_running(output_dir);
    check = check_results(check_request, scan, stale, registry);
  }

  ReportInput report;
  report.output_dir = output_dir;
  report.rows = &rows;
  report.scan = &scan;
  report.check = check ? &*check : nullptr;
  report.comparison = comparison ? &*comparison : nullptr;
  report.generated_at = utc_now();
  write_file_atomically(output_dir / "heatmap.svg", render_heatmap_svg(rows));
  write_file_atomically(output_dir / "report.md", render_report_markdown(report));

  if (options.json) {
    std::cout << collect_json(scan, rows, stale, check ? &*check : nullptr).dump(2) << "\n";
  } else {
    print_summary(scan, rows, stale, output_dir, comparison ? &*comparison : nullptr, check ? &*check : nullptr);
  }
  if (check) {
    for (const auto& warning : check->warnings) spdlog::warn("check: {}", warning);
    if (!check->complete() || !scan.unreadable.empty()) {
      // An unreadable directory may hide results or gaps: the check cannot say the tree is complete.
      const auto unreadable = scan.unreadable.size();  // the unreadable jobs of the check lie under these
      throw Error(fmt::format("{} missing, {} stale, {} corrupt result(s){}{}; resubmit with the command(s) {}",
                              check->missing.size(), check->stale.size(), check->corrupt.size(),
                              unreadable == 0 ? "" : fmt::format(", {} unreadable file(s) or directories", unreadable),
                              check->in_flight.empty() ? "" : fmt::format(", {} in flight", check->in_flight.size()),
                              options.json ? "in check.resubmit" : "above"),
                  ExitCode::missing_results);
    }
  }
}

// The text report on stdout: summary line, benchmark table, comparison and check.
void print_summary(const ResultScan& scan, const std::vector<AggregateRow>& rows, const StaleResults& stale,
                   const std::filesystem::path& output_dir, const Comparison* comparison, const CheckReport* check) {
  std::cout << fmt::format("collected {} result(s), {} skipped{}: {} rows in {}; report in {}\n", scan.results.size(),
                           scan.skipped.size(),
                           scan.unreadable.empty() ? "" : fmt::format(", {} unreadable", scan.unreadable.size()),
                           rows.size(), (output_dir / "aggregate.csv").string(), (output_dir / "report.md").string());
  if (!stale.empty()) {
    std::cout << fmt::format("{} result(s) are stale (computed with other key inputs): aggregated, marked stale in "
                             "aggregate.csv and the report\n",
                             stale.size());
  }
  print_rollups(rows);
  if (comparison) print_comparison(*comparison);
  if (check) print_check(*check);
}

nlohmann::json check_entries_json(const std::vector<CheckEntry>& entries) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : entries) {
    out.push_back({{"model", e.model}, {"task", e.task}, {"n_shot", e.n_shot},
                   {"limit", e.limit ? nlohmann::json(*e.limit) : nlohmann::json()}, {"reason", e.reason},
                   {"result", e.result.string()}});
  }
  return out;
}

// --json: the counts, the unreadable paths and the check with its resubmit commands as argv lists (for scripts:
// no shell parsing needed) and as the printed lines.
nlohmann::json collect_json(const ResultScan& scan, const std::vector<AggregateRow>& rows, const StaleResults& stale,
                            const CheckReport* check) {
  nlohmann::json out = {{"results", scan.results.size()}, {"skipped", nlohmann::json::array()},
                        {"unreadable", nlohmann::json::array()}, {"rows", rows.size()}, {"stale_results", stale.size()}};
  for (const auto& skipped : scan.skipped) out["skipped"].push_back({{"path", skipped.path.string()}, {"reason", skipped.reason}});
  for (const auto& entry : scan.unreadable) {
    out["unreadable"].push_back({{"path", entry.path.string()}, {"reason", entry.reason}});
  }
  if (!check) return out;
  nlohmann::json resubmit = nlohmann::json::array();
  for (const auto& command : check->resubmit_commands) resubmit.push_back({{"argv", command.argv}, {"line", command.line}});
  out["check"] = {{"expected", check->expected},
                  {"done", check->done},
                  {"missing", check_entries_json(check->missing)},
                  {"stale", check_entries_json(check->stale)},
                  {"corrupt", check_entries_json(check->corrupt)},
                  {"unreadable", check_entries_json(check->unreadable)},
                  {"in_flight", check_entries_json(check->in_flight)},
                  {"warnings", check->warnings},
                  {"resubmit", resubmit}};
  return out;
}

}  // namespace

void register_collect_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<CollectOptions>();
  auto* command = app.add_subcommand(
      "collect", "Aggregate results into aggregate.csv, report.md and heatmap.svg; check for missing/stale results.");
  add_option(*command, "models", options->models, "Comma-separated model specs to include (default: all)");
  add_option(*command, "tasks", options->tasks, "Comma-separated task or benchmark names to include (default: all)");
  add_option(*command, "n_shots", options->n_shots, "Comma-separated n_shots to include (default: all)");
  add_option(*command, "metric", options->metric, "Only this metric (default: all; the report shows each task's primary)");
  add_option(*command, "compare", options->compare, "MODEL_A MODEL_B: paired difference per task and benchmark")
      ->expected(2);
  add_option(*command, "extra_task_paths", options->extra_task_paths,
             "Comma-separated directories of extra task YAML files (as given to schedule)");
  add_flag(*command, "json", options->json,
           "Print counts and the check (with the resubmit commands as argv lists) as JSON instead of the tables");
  command->add_flag("--check,!--no-check,!--no_check", options->check,
                    "List missing and stale results and exit 3 if any (default: on)");
  add_option(*command, "threads", options->threads, "Threads reading result files (default 0: one per core, at most 8)");
  add_option(*command, "bootstrap_replicates", options->replicates,
             "Paired-bootstrap replicates for --compare (default 2000, fixed seed)");
  command->callback([options, &global] { run_collect(*options, global); });
}

}  // namespace mill::cli
