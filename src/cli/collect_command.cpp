// `mill collect`: read every result under --output_dir, write aggregate.csv, report.md and heatmap.svg beside
// it, list what is missing or stale with the command that resubmits it (exit 3), and compare two models.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <map>
#include <tuple>

#include "commands.hpp"
#include "mill/collect/collect.hpp"
#include "mill/collect/collect_output.hpp"
#include "mill/collect/compare.hpp"
#include "mill/base/error.hpp"
#include "mill/collect/lm_eval_export.hpp"
#include "mill/model/model_list.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/collect/report.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/base/text_table.hpp"
#include "mill/base/host.hpp"
#include "mill/eval/metrics.hpp"

namespace mill::cli {

namespace {

struct CollectOptions {
  std::string models;
  std::string tasks;
  std::string n_shots;
  std::string metric;
  std::vector<std::string> compare;
  std::string extra_task_paths;
  std::string out;                  // --out DIR: the selected view's files go there instead of <output_dir>
  std::vector<std::string> export_to;  // --export FORMAT DIR
  bool check = true;
  bool json = false;
  int threads = 0;
  int replicates = kCompareReplicates;
};

std::string percent(const std::string& metric, double value, const std::optional<double>& error) {
  if (!is_fraction_metric(metric)) return error ? fmt::format("{:.4g} ± {:.2g}", value, *error) : fmt::format("{:.4g}", value);
  return error ? fmt::format("{:.1f} ± {:.1f}", 100 * value, 100 * *error) : fmt::format("{:.1f}", 100 * value);
}

std::string shots(int n_shot, const std::optional<int>& limit) {
  return limit ? fmt::format("{}-shot/limit {}", n_shot, *limit) : fmt::format("{}-shot", n_shot);
}

// The shots cell, with its short form for a narrow terminal ("5", "5/L10").
TextCell shots_cell(int n_shot, const std::optional<int>& limit) {
  return {shots(n_shot, limit), limit ? fmt::format("{}/L{}", n_shot, *limit) : std::to_string(n_shot)};
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

// The benchmark table: one line per model × shots × benchmark or category group (mmlu, then mmlu_humanities, ...)
// with its micro and macro averages.
void print_rollups(const std::vector<AggregateRow>& rows, std::size_t width) {
  std::vector<const AggregateRow*> micro;
  std::map<std::tuple<std::string, int, int, std::string, std::string>, const AggregateRow*> macro_of;
  const auto key_of = [](const AggregateRow& row) {
    return std::make_tuple(row.model, row.n_shot, row.limit.value_or(-1), row.task, row.metric);
  };
  for (const auto& row : rows) {
    if (row.aggregation == kAggregationMicro && row.primary) micro.push_back(&row);
    if (row.aggregation == kAggregationMacro && row.primary) macro_of[key_of(row)] = &row;
  }
  if (micro.empty()) return;
  const std::vector<TextColumn> columns = {
      {"model", "", false, true},
      {"shots"},
      {"benchmark", "", false, true},
      {"metric", "", false, true},
      {"micro (sample-weighted)", "micro", true},
      {"macro (subject mean)", "macro", true},
      {"subjects", "subj.", true},
  };
  std::vector<TextRow> table;
  for (const auto* row : micro) {
    const auto found = macro_of.find(key_of(*row));
    const AggregateRow* macro = found == macro_of.end() ? nullptr : found->second;
    table.push_back({one_line(row->model), shots_cell(row->n_shot, row->limit), row->task, row->metric,
                     percent(row->metric, row->value, row->standard_error),
                     macro ? percent(macro->metric, macro->value, macro->standard_error) : "–",
                     fmt::format("{}/{}", row->n_tasks, row->n_tasks_expected)});
  }
  std::cout << "\n" << render_text_table(columns, table, width);
}

// Tasks outside any benchmark (gsm8k, a task of one's own): no rollup speaks for them, so each is listed.
void print_standalone_tasks(const std::vector<AggregateRow>& rows, std::size_t width) {
  const std::vector<TextColumn> columns = {
      {"model", "", false, true}, {"shots"}, {"task", "", false, true}, {"metric", "", false, true},
      {"value", "", true},        {"samples", "n", true},
  };
  std::vector<TextRow> table;
  for (const auto& row : rows) {
    if (row.aggregation != kAggregationTask || !row.benchmark.empty() || !row.primary) continue;
    table.push_back({one_line(row.model), shots_cell(row.n_shot, row.limit), row.task, row.metric,
                     percent(row.metric, row.value, row.standard_error), std::to_string(row.n_samples)});
  }
  if (table.empty()) return;
  std::cout << "\n" << render_text_table(columns, table, width);
}

void print_comparison(const Comparison& comparison, std::size_t width) {
  std::cout << fmt::format("\ncompare: A = {}  vs  B = {}\n(A − B in points; 95% paired-bootstrap interval)\n",
                           one_line(comparison.model_a), one_line(comparison.model_b));
  const std::vector<TextColumn> columns = {
      {"task", "", false, true},
      {"shots"},
      {"metric", "", false, true},
      {"aggregation", "agg.", false, false},
      {"pairs", "", true, false, 1},
      {"A", "", true, false, 2},
      {"B", "", true, false, 2},
      {"A − B", "", true},
      {"95% interval"},
      {"verdict"},
  };
  const auto brief_aggregation = [](const std::string& aggregation) -> std::string {
    if (aggregation == kAggregationMicro) return "micro";
    if (aggregation == kAggregationMacro) return "macro";
    return aggregation;
  };
  std::vector<TextRow> table;
  for (const auto& row : comparison.rows) {
    const auto& d = row.difference;
    table.push_back({row.task, shots_cell(row.n_shot, row.limit), row.metric,
                     TextCell(d.aggregation, brief_aggregation(d.aggregation)), std::to_string(d.n_pairs),
                     percent(row.metric, d.mean_a, std::nullopt), percent(row.metric, d.mean_b, std::nullopt),
                     fmt::format("{:+.1f}", 100 * d.difference),
                     fmt::format("[{:+.1f}, {:+.1f}]", 100 * d.ci_low, 100 * d.ci_high),
                     TextCell(significance_text(d),
                              fmt::format("{} p={:.2g}", d.significant ? "sig." : "n.s.", d.p_value))});
  }
  std::cout << render_text_table(columns, table, width);
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

// What this run shows and where its files go.
struct CollectView {
  const std::vector<AggregateRow>* rows = nullptr;  // the selection (every row without filters)
  std::size_t file_rows = 0;                         // rows in the aggregate.csv written
  std::filesystem::path files_dir;                   // where aggregate.csv and report.md are
  std::vector<std::string> filters;                  // the options that narrowed the view ("--tasks", ...)
  bool out = false;                                  // the files are the selection (--out)
  std::vector<std::filesystem::path> exported;       // lm-eval files written (--export)
};

void print_summary(const ResultScan& scan, const CollectView& view, const StaleResults& stale,
                   const Comparison* comparison, const CheckReport* check);
nlohmann::json collect_json(const ResultScan& scan, const CollectView& view, const StaleResults& stale,
                            const CheckReport* check);

// The report, heatmap and aggregate table of `rows`, for `directory`.
std::vector<CollectOutput> collect_files(const std::filesystem::path& directory, const std::vector<AggregateRow>& rows,
                                         ReportInput report, const std::string& remedy) {
  std::vector<CollectOutput> outputs;
  outputs.push_back({directory / "aggregate.csv", aggregate_csv(rows), CollectFileKind::aggregate_csv, nullptr, remedy});
  outputs.push_back({directory / "heatmap.svg", render_heatmap_svg(rows), CollectFileKind::heatmap_svg, nullptr, remedy});
  auto markdown = render_report_markdown(report);
  // The report states when it was made: one that would differ only in that time is left as it is.
  auto same_report = [report](std::string_view old_content) {
    auto as_of = report;
    as_of.generated_at = report_generated_at(old_content);
    return !as_of.generated_at.empty() && render_report_markdown(as_of) == old_content;
  };
  outputs.push_back({directory / "report.md", std::move(markdown), CollectFileKind::report_md, same_report, remedy});
  return outputs;
}

void run_collect(const CollectOptions& options, const GlobalOptions& global) {
  const auto output_dir = global.output_dir_path();
  std::vector<std::filesystem::path> extra_paths;
  const auto extra_texts = split_list(options.extra_task_paths);
  for (const auto& path : extra_texts) extra_paths.push_back(std::filesystem::absolute(path));
  const auto registry = TaskRegistry::load(extra_paths);
  if (options.threads < 0) throw Error(fmt::format("--threads: {} is not 0 (one per core) or a positive number", options.threads));
  if (options.replicates < 100) {
    throw Error(fmt::format("--bootstrap_replicates: {} is too few (expected at least 100)", options.replicates));
  }
  std::error_code ec;
  const auto same_directory = [&](const std::filesystem::path& a, const std::filesystem::path& b) {
    return std::filesystem::weakly_canonical(std::filesystem::absolute(a), ec) ==
           std::filesystem::weakly_canonical(std::filesystem::absolute(b), ec);
  };
  std::optional<std::filesystem::path> out_dir;
  if (!options.out.empty()) {
    out_dir = options.out;
    if (same_directory(*out_dir, output_dir)) {
      throw Error(fmt::format("--out {} is the output directory, whose aggregate.csv, report.md and heatmap.svg always "
                              "describe every result; name another directory for the selection",
                              quote_value(options.out)));
    }
  }
  std::optional<std::filesystem::path> export_dir;
  if (!options.export_to.empty()) {
    const auto& format = options.export_to.at(0);
    if (format != "lm_eval" && format != "lm-eval") {
      throw Error(fmt::format("--export: unknown format {} (valid: lm_eval, followed by the directory to write to)",
                              quote_value(format)));
    }
    export_dir = options.export_to.at(1);
  }

  CheckRequest check_request;
  check_request.output_dir = output_dir;
  check_request.models = split_model_list(options.models);
  check_request.tasks = split_list(options.tasks);
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
  std::vector<std::string> filters;
  if (!options.models.empty()) filters.push_back("--models");
  if (!options.tasks.empty()) filters.push_back("--tasks");
  if (!options.n_shots.empty()) filters.push_back("--n_shots");
  if (!options.metric.empty()) filters.push_back("--metric");
  const bool filtered = !filters.empty();

  // Cheap (keys are recomputed in memory), so done even with --no-check: stale numbers are marked wherever shown.
  const auto stale = find_stale_results(scan, registry);
  // The selection is what stdout (and --out, --export) shows; the output directory's files always hold everything.
  const auto rows = aggregate_results(scan.results, filter, registry, &stale);
  std::optional<std::vector<AggregateRow>> every_row;
  if (filtered && !out_dir) every_row = aggregate_results(scan.results, CollectFilter{}, registry, &stale);

  std::optional<Comparison> comparison, every_comparison;
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
    // --models does not narrow a comparison (it names its own two models); the other filters do.
    const bool comparison_filtered = !filter.tasks.empty() || !filter.n_shots.empty() || !filter.metric.empty();
    if (every_row && comparison_filtered) every_comparison = compare_models(scan, a, b, CollectFilter{}, options.replicates);
  }

  std::optional<CheckReport> check, every_check;
  if (options.check) {
    check_request.in_flight = jobs_queued_or_running(output_dir);
    check = check_results(check_request, scan, stale, registry);
    if (every_row) {
      CheckRequest everything = check_request;
      everything.models.clear();
      everything.tasks.clear();
      everything.n_shots.reset();
      every_check = check_results(everything, scan, stale, registry);
    }
  }

  const double now_seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ReportInput report;
  report.output_dir = output_dir;
  report.scan = &scan;
  report.generated_at = utc_time();
  std::vector<CollectOutput> outputs;
  CollectView view;
  view.rows = &rows;
  view.filters = filters;
  if (out_dir) {
    report.rows = &rows;
    report.check = check ? &*check : nullptr;
    report.comparison = comparison ? &*comparison : nullptr;
    outputs = collect_files(*out_dir, rows, report, "move it away or name another --out directory");
    view.files_dir = *out_dir;
    view.file_rows = rows.size();
    view.out = true;
  } else {
    const auto& all = every_row ? *every_row : rows;
    report.rows = &all;
    report.check = every_check ? &*every_check : check ? &*check : nullptr;
    report.comparison = every_comparison ? &*every_comparison : comparison ? &*comparison : nullptr;
    outputs = collect_files(output_dir, all, report, "move it away, or write collect's files to another directory "
                                                     "with --out DIR");
    view.files_dir = output_dir;
    view.file_rows = all.size();
  }
  if (export_dir) {
    for (auto& exported : build_lm_eval_exports(rows, scan.results, registry, *export_dir, now_seconds)) {
      view.exported.push_back(exported.path);
      outputs.push_back({exported.path, exported.document.dump(2) + "\n", CollectFileKind::lm_eval_json, nullptr,
                         "move it away or export to another directory"});
    }
  }
  // Every destination is checked before anything is written: a refusal leaves every file as it was.
  write_collect_outputs(outputs);

  if (options.json) {
    std::cout << collect_json(scan, view, stale, check ? &*check : nullptr).dump(2) << "\n";
  } else {
    print_summary(scan, view, stale, comparison ? &*comparison : nullptr, check ? &*check : nullptr);
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

// The text report on stdout: summary line, benchmark table, stand-alone tasks, comparison and check.
void print_summary(const ResultScan& scan, const CollectView& view, const StaleResults& stale,
                   const Comparison* comparison, const CheckReport* check) {
  std::cout << fmt::format("collected {} result(s), {} skipped{}: {} rows in {}; report in {}\n", scan.results.size(),
                           scan.skipped.size(),
                           scan.unreadable.empty() ? "" : fmt::format(", {} unreadable", scan.unreadable.size()),
                           view.file_rows, (view.files_dir / "aggregate.csv").string(),
                           (view.files_dir / "report.md").string());
  if (!view.filters.empty()) {
    std::cout << fmt::format("selected by {}: {} rows, shown below{}\n", join(view.filters, ", "), view.rows->size(),
                             view.out ? "" : " (the files above hold every result; --out DIR writes the selection)");
  }
  if (!view.exported.empty()) {
    std::cout << fmt::format("exported {} lm-eval results file(s) under {}\n", view.exported.size(),
                             view.exported.front().parent_path().parent_path().string());
  }
  if (!stale.empty()) {
    std::cout << fmt::format("{} result(s) are stale (computed with other key inputs): aggregated, marked stale in "
                             "aggregate.csv and the report\n",
                             stale.size());
  }
  const auto width = stdout_terminal_width();
  print_rollups(*view.rows, width);
  print_standalone_tasks(*view.rows, width);
  if (comparison) print_comparison(*comparison, width);
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
nlohmann::json collect_json(const ResultScan& scan, const CollectView& view, const StaleResults& stale,
                            const CheckReport* check) {
  nlohmann::json out = {{"results", scan.results.size()}, {"skipped", nlohmann::json::array()},
                        {"unreadable", nlohmann::json::array()}, {"rows", view.rows->size()},
                        {"file_rows", view.file_rows}, {"files", view.files_dir.string()},
                        {"exported", nlohmann::json::array()}, {"stale_results", stale.size()}};
  for (const auto& path : view.exported) out["exported"].push_back(path.string());
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
      "collect",
      "Aggregate every result into aggregate.csv, report.md and heatmap.svg; print the selection; check for "
      "missing/stale results.");
  add_option(*command, "models", options->models,
             "Comma-separated model specs to show and check (default: all; the output dir's files keep every result)");
  add_option(*command, "tasks", options->tasks,
             "Comma-separated task or benchmark names to show and check (default: all; the files keep every result)");
  add_option(*command, "n_shots", options->n_shots, "Comma-separated n_shots to show and check (default: all)");
  add_option(*command, "metric", options->metric,
             "Show only this metric (default: all; tables show each task's primary; the files keep every metric)");
  add_option(*command, "out", options->out,
             "DIR: write aggregate.csv, report.md and heatmap.svg of the selection (--models, --tasks, --n_shots, "
             "--metric) to DIR instead of the output dir, whose files are then left as they are");
  add_option(*command, "export", options->export_to,
             "lm_eval DIR: also write the selection as lm-evaluation-harness results JSON, "
             "DIR/<model>/results_<n>shot.json (one per model and n-shot)")
      ->expected(2);
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
