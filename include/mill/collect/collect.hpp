#pragma once
// The collector: scans <output_dir>/results for final result files, turns them into aggregate rows (per task
// and per benchmark rollup), and checks the results tree against what was asked for (missing / stale /
// corrupt) with the `mill schedule` commands that resubmit exactly the gaps. aggregate.csv is documented in
// docs/results.md, the statistics in docs/collect.md.
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "mill/eval/results.hpp"
#include "mill/sweep/schedule_settings.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/shell.hpp"

namespace mill {

// One valid result file as collect reads it. `model` is the model identity its results directory stands for (what
// determines the numbers, e.g. "org/name[dtype=float16]"), not the spec as written; `benchmark` and `output_type`
// fall back to the task registry's; `data` and `provenance` are not kept (the lm-eval export reads them again).
struct CollectedResult : ResultFile {
  std::filesystem::path path;
};

struct SkippedFile {
  std::filesystem::path path;
  std::string reason;
};

struct ResultScan {
  std::vector<CollectedResult> results;  // sorted by path
  std::vector<SkippedFile> skipped;      // corrupt or partial files; sorted by path
  // Directories that could not be listed and files that could not be opened (permissions, in a shared tree):
  // never silently passed over; collect names them and --check fails. Sorted by path.
  std::vector<SkippedFile> unreadable;
  std::size_t bytes = 0;                 // bytes read
};

// Reads every <output_dir>/results/<model>/<task>/*.json (journals and temporary files are not results) on
// `threads` threads (0: one per core, at most 8). Never throws for a bad file: it lands in `skipped`.
ResultScan scan_results(const std::filesystem::path& output_dir, const TaskRegistry& registry, unsigned threads = 0);

// Which results to look at. Empty sets mean "all".
struct CollectFilter {
  std::set<std::string> model_identities;
  std::set<std::string> tasks;
  std::set<int> n_shots;
  std::string metric;
  bool accepts(const CollectedResult& result) const;
};

inline constexpr const char* kAggregationTask = "task";
inline constexpr const char* kAggregationMicro = "micro_sample_weighted";
inline constexpr const char* kAggregationMacro = "macro_subject_mean";

// One line of aggregate.csv.
struct AggregateRow {
  std::string model;
  std::string task;       // the task; on rollup rows the benchmark or category group (mmlu, mmlu_stem)
  std::string benchmark;  // the benchmark the task belongs to; on rollup rows the benchmark the group is part of
                          // (mmlu for mmlu and for mmlu_stem)
  int n_shot = 0;
  std::optional<int> limit;
  std::string metric;
  std::string aggregation;  // kAggregationTask, kAggregationMicro or kAggregationMacro
  double value = 0;
  std::optional<double> standard_error;
  std::string stderr_method;
  long long n_samples = 0;
  int n_tasks = 1;           // subject tasks averaged (1 on task rows)
  int n_tasks_expected = 1;  // subject tasks the benchmark has: a rollup with fewer is partial
  std::string key;           // the job key (task rows only)
  std::string output_type;
  bool primary = false;      // the metric the report shows for this task
  int stale = 0;             // 1 when the result's key is not the one mill expects now; on rollups: stale subjects
};

// The results whose key differs from the key mill computes now for the same model, task, n_shot and limit (a
// new model revision, task definition or scoring version): path → reason. Results of unknown tasks are not judged.
using StaleResults = std::unordered_map<std::string, std::string>;
StaleResults find_stale_results(const ResultScan& scan, const TaskRegistry& registry);

// Task rows for every accepted result and metric, then a micro and a macro rollup row per model × benchmark ×
// n_shot × limit × metric, and the same for each further group of the tasks (MMLU's four categories: task
// mmlu_stem, benchmark mmlu). Rows come sorted (model, n_shot, limit, benchmark, task rows before rollups, task,
// metric, aggregation), so a benchmark's category rows follow its own.
// `stale` (from find_stale_results) marks rows; stale results are still aggregated, since a results tree copied to
// a machine without the Hugging Face cache would otherwise lose every number.
std::vector<AggregateRow> aggregate_results(const std::vector<CollectedResult>& results, const CollectFilter& filter,
                                            const TaskRegistry& registry,
                                            const StaleResults* stale = nullptr);

// The metric a report shows for a result: --metric, else the result's primary_metric, else acc, exact_match,
// else the first one.
std::string primary_metric_of(const CollectedResult& result, const std::string& requested);

// aggregate.csv's first line; collect_output.hpp recognises the files collect wrote by it.
inline constexpr const char* kAggregateCsvHeader =
    "model,task,benchmark,n_shot,limit,metric,aggregation,value,stderr,stderr_method,n_samples,n_tasks,"
    "n_tasks_expected,output_type,primary,stale,key";

// aggregate.csv's text (RFC 4180, header line first).
std::string aggregate_csv(const std::vector<AggregateRow>& rows);

// ---- --check ----

struct CheckEntry {
  std::string model;  // the spec to resubmit
  std::string task;
  int n_shot = 0;
  std::optional<int> limit;
  ResultState state = ResultState::missing;
  std::string reason;
  std::filesystem::path result;
  // The settings of the newest sweep that planned this job (its manifest's settings.schedule); null when no sweep
  // did (a result found on its own): the resubmit line then carries what collect was given.
  std::shared_ptr<const ScheduleSettings> settings;
  bool from_newer_scorer = false;  // stale because a newer mill computed it: listed, never resubmitted
};

// One `mill schedule` command that resubmits pending jobs: its words, and the line to print (shell-quoted).
struct ResubmitCommand {
  std::vector<std::string> argv;
  std::string line;
};

struct CheckRequest {
  std::filesystem::path output_dir;
  std::vector<std::string> models;  // as typed; empty: take the expected set from sweeps and results
  std::vector<std::string> tasks;   // as typed (benchmarks expand)
  std::optional<std::vector<int>> n_shots;
  std::vector<std::string> extra_task_paths;  // passed on in the resubmit commands of jobs no sweep planned
  // Where a model or task list too long for one command-line word goes (a file named by its content), for
  // `--models_file` / `--tasks_file`; empty: lists always stay on the line.
  std::filesystem::path list_files_dir;
  // Job key digest → where it is queued or running (submit.hpp's jobs_in_flight); such jobs are reported as in
  // flight, not missing, and left out of the resubmit lines.
  std::map<std::string, std::string> in_flight;
};

struct CheckReport {
  std::size_t expected = 0;
  std::size_t done = 0;
  std::vector<CheckEntry> missing, stale, corrupt;
  std::vector<CheckEntry> unreadable;  // expected jobs whose result file or directory mill cannot read
  std::vector<CheckEntry> in_flight;   // not done, but queued or running in a sweep: not resubmitted
  std::vector<std::string> warnings;  // manifests or results that name tasks mill no longer knows, ...
  std::vector<ResubmitCommand> resubmit_commands;
  bool complete() const {
    return missing.empty() && stale.empty() && corrupt.empty() && unreadable.empty() && in_flight.empty();
  }
};

// What should exist: the cross product of models × tasks × n_shots when both models and tasks are given;
// otherwise every job the sweeps under <output_dir>/sweeps/*/manifest.json planned plus every result found,
// narrowed by whatever of models/tasks/n_shots was given. Keys are recomputed now, so a result computed with
// other inputs is stale.
// `stale` is find_stale_results(scan, registry): a found result is done unless it is listed there.
CheckReport check_results(const CheckRequest& request, const ResultScan& scan, const StaleResults& stale,
                          const TaskRegistry& registry);

// `mill schedule` commands that rerun exactly `pending` with the settings each job was planned with (`fallback`
// for jobs without a sweep): each is an exact models × tasks × n_shots product of jobs with the same settings and
// limit; a full benchmark is written by its name; model specs are list items (model_list.hpp). A model or task
// list longer than kLongListBytes is written to a file under `list_files_dir` (one item per line, named by its
// content) and passed with --models_file / --tasks_file, since one argument may not exceed 128 KiB.
inline constexpr std::size_t kLongListBytes = 32 * 1024;
std::vector<ResubmitCommand> resubmit_commands(const std::vector<const CheckEntry*>& pending,
                                               const ScheduleSettings& fallback, const TaskRegistry& registry,
                                               const std::filesystem::path& list_files_dir = {});


// The identity of a model spec as written (ModelSpec::identity), or the text itself when it does not parse.
std::string model_identity_of(const std::string& spec);

}  // namespace mill
