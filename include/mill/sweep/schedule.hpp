#pragma once
// The `schedule` use case: plan a sweep, skip what is done and what earlier sweeps still have in the queue, run
// the preflight, choose the cluster profile, size the arrays and their time limits, and then submit them within the
// profile's queue budget, run them here (--local), or only describe them (--dry_run). The CLI parses the flags into
// a ScheduleRequest and prints the ScheduleOutcome (text or JSON); nothing here prints.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mill/base/progress.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/sweep/array_plan.hpp"
#include "mill/sweep/cluster.hpp"
#include "mill/sweep/plan.hpp"
#include "mill/sweep/preflight.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/sweep/schedule_settings.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/base/error.hpp"

namespace mill {

struct ScheduleRequest {
  std::vector<std::string> models;  // model specs as typed (from the command line or --models_file)
  std::vector<std::string> tasks;   // task and benchmark names
  std::string n_shots_text;         // --n_shots as given ("" when absent), repeated by a continuation
  std::optional<std::vector<int>> n_shots;
  std::optional<int> limit;
  std::filesystem::path output_dir;
  std::filesystem::path cache_dir;
  std::string cluster = "auto";
  bool dry_run = false;
  bool local = false;
  std::optional<std::filesystem::path> venv_path;     // --venv_path (absolute)
  std::optional<std::filesystem::path> data_dir;      // --data_dir or $MILL_DATA_DIR (absolute)
  std::optional<std::filesystem::path> cost_history;  // --cost_history (absolute)
  std::vector<std::filesystem::path> extra_task_paths;  // absolute
  // Absent unless given, so that the sweep records (and a resubmission repeats) only what the user chose.
  std::optional<int> max_requeues;
  std::optional<double> minutes_per_eval;
  std::optional<int> evals_per_element;
  bool skip_model_check = false;
  int lock_wait_seconds = 60;
  bool no_continuation = false;
  std::string continues;  // set by a continuation job: the sweep it continues
  std::filesystem::path mill_binary;          // what the job scripts run
  std::vector<std::string> command_line;      // this command, recorded in the sweep
  std::vector<PreflightProblem> option_problems;  // flag values the CLI found unusable, reported with the others
  ProgressSettings progress;                  // --local's progress display
};

// What the CLI shows; the CLI decides how (text or JSON).
struct ScheduleOutcome {
  ClusterConfig clusters;
  ProfileChoice choice;
  TaskRegistry registry;
  std::vector<PreflightProblem> problems;  // every problem found; a dry run still plans with them
  bool planned = false;                    // false: nothing valid to plan (only `problems` to show)
  Plan plan;
  std::vector<const PlannedJob*> pending;  // not done
  std::vector<const PlannedJob*> to_run;   // pending and not queued or running in an earlier sweep
  std::map<std::string, InFlightJob> in_flight;
  ArrayPlan arrays;
  std::vector<std::vector<const PlannedJob*>> elements;  // every element of every array
  SubmitBudget budget;
  std::size_t submit_count = 0;  // elements submitted (or run) now
  std::size_t deferred_jobs = 0;
  bool continuing = false;       // a continuation job submits the rest
  std::vector<ArrayRequest> array_requests;  // the arrays cut to what is submitted now
  SbatchRequest sbatch;          // the scripts' shared part (a dry run's sweep dir is a placeholder)
  std::vector<std::string> scripts;  // one per submitted array, rendered once (with the real sweep paths)
  ScheduleSettings planned_with;
  std::string summary;
  std::vector<std::string> messages;  // lines for the user after the plan
  nlohmann::json submission;          // what was submitted or run; null when nothing was
  int local_exit_code = 0;            // --local: 0, eval_failed, preempted or 130
  bool running_locally = false;       // --local with something to run (not a dry run)
};

struct ScheduleHooks {
  // Called once <cache_dir>/clusters.yaml was created from the bundled profiles (the user should edit it).
  std::function<void(const std::filesystem::path&)> profiles_created;
  // --local: called after planning, before the jobs run (which may take hours), to show the plan first.
  std::function<void(ScheduleOutcome&)> before_local_run;
  // --local: shows progress and the worker's lines; the use case creates one from `progress` when null.
  ProgressDisplay* display = nullptr;
};

// Throws mill::Error for what stops the command before planning (a bad profile, a busy submit lock, an unreadable
// queue, a continuation without progress) and, unless it is a dry run, when the preflight found problems: their
// messages are in the error (one) or in `problems` of the thrown ScheduleProblems (several).
ScheduleOutcome schedule_sweep(const ScheduleRequest& request, const ScheduleHooks& hooks = {});

// Thrown when the preflight stops a real submission or --local run: the caller lists `problems`.
struct ScheduleProblems : Error {
  ScheduleProblems(std::vector<PreflightProblem> found, const std::string& outcome);
  std::vector<PreflightProblem> problems;
};

// The problems in their areas' order (task, data, model, environment).
std::vector<const PreflightProblem*> ordered_problems(const std::vector<PreflightProblem>& problems);
// The first problem that stops a job (its model's or its task's), if any.
const PreflightProblem* problem_of(const PlannedJob& job, const std::vector<PreflightProblem>& problems);

}  // namespace mill
