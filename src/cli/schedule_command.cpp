// `mill schedule MODELS TASKS`: plan a sweep, skip what is done (and what earlier sweeps still have in the
// queue), pick the cluster profile, compute the time limit, and submit a throttled SLURM array within the
// profile's queue_limit. --dry_run prints all of it and submits nothing; --local runs every job here.
#include <fmt/color.h>
#include <fmt/format.h>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>

#include "commands.hpp"
#include "mill/model/model_list.hpp"
#include "mill/sweep/requeue.hpp"
#include "mill/base/text.hpp"
#include "mill/base/stop_signal.hpp"
#include "mill/sweep/walltime.hpp"
#include "mill/sweep/schedule.hpp"
#include "mill/base/error.hpp"
#include "mill/sweep/plan.hpp"
#include "mill/sweep/preflight.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/sweep/submit.hpp"

namespace mill::cli {

namespace {

// The flags that go into the request as they are typed; the rest are read or made absolute by schedule_request().
struct ScheduleOptions {
  ScheduleRequest typed;
  std::vector<std::string> lists;  // the positional MODELS TASKS (only TASKS with --models_file, none with both files)
  std::string models_file;
  std::string tasks_file;
  bool json = false;
  std::string venv_path;
  std::string extra_task_paths;
  std::string data_dir;
  std::string cost_history;  // a shared history file (JSON Lines) for the cost model
};

std::filesystem::path mill_executable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path("mill") : path;
}

std::optional<std::filesystem::path> sweep_data_dir(const ScheduleOptions& options) {
  if (!options.data_dir.empty()) return std::filesystem::absolute(options.data_dir);
  if (const char* value = std::getenv("MILL_DATA_DIR"); value && *value) return std::filesystem::absolute(value);
  return std::nullopt;
}

// --local's plan, printed before it runs: what runs here, element by element (the first few).
void print_local_run_plan(const std::vector<std::vector<const PlannedJob*>>& elements) {
  std::size_t jobs = 0;
  for (const auto& element : elements) jobs += element.size();
  std::cout << fmt::format("--local: no SLURM; {} job(s) in {} element(s) run here now, one element after another:\n",
                           jobs, elements.size());
  constexpr std::size_t kElementsShown = 10, kJobsShown = 8;
  for (std::size_t e = 0; e < elements.size() && e < kElementsShown; ++e) {
    std::vector<std::string> names;
    for (std::size_t j = 0; j < elements[e].size() && j < kJobsShown; ++j) {
      names.push_back(fmt::format("{} {}-shot", elements[e][j]->job.task->name, elements[e][j]->job.n_shot));
    }
    if (elements[e].size() > kJobsShown) names.push_back(fmt::format("and {} more", elements[e].size() - kJobsShown));
    std::cout << fmt::format("  element {}: {}: {}\n", e, one_line(elements[e].front()->job.model.to_string()),
                             join(names, ", "));
  }
  if (elements.size() > kElementsShown) {
    std::cout << fmt::format("  ... and {} more element(s)\n", elements.size() - kElementsShown);
  }
}

std::string colour_status(ResultState state, bool colour) {
  const auto text = to_string(state);
  if (!colour) return text;
  switch (state) {
    case ResultState::done: return fmt::format(fg(fmt::color::green), "{}", text);
    case ResultState::missing: return fmt::format(fg(fmt::color::yellow), "{}", text);
    default: return fmt::format(fg(fmt::color::red) | fmt::emphasis::bold, "{}", text);
  }
}

void print_job_table(const Plan& plan, const std::vector<PreflightProblem>& problems, bool colour) {
  std::size_t model_width = 5, task_width = 4;
  for (const auto& job : plan.jobs) {
    model_width = std::max(model_width, job.job.model.to_string().size());
    task_width = std::max(task_width, job.job.task->name.size());
  }
  const auto header = fmt::format("{:<{}}  {:<{}}  {:>6}  {:<7}  {}", "model", model_width, "task", task_width, "n_shot",
                                  "status", "reason");
  std::cout << (colour ? fmt::format(fmt::emphasis::bold, "{}", header) : header) << "\n";
  for (const auto& job : plan.jobs) {
    // Padding is computed on the plain text so colour codes do not break alignment.
    const auto* problem = problem_of(job, problems);
    const auto status = problem ? std::string("blocked") : to_string(job.check.state);
    const auto shown_status = !problem ? colour_status(job.check.state, colour)
                              : colour  ? fmt::format(fg(fmt::color::red) | fmt::emphasis::bold, "{}", status)
                                        : status;
    std::cout << fmt::format("{:<{}}  {:<{}}  {:>6}  ", one_line(job.job.model.to_string()), model_width, job.job.task->name,
                             task_width, job.job.n_shot)
              << shown_status << std::string(7 - std::min<std::size_t>(7, status.size()), ' ') << "  "
              << one_line(problem ? "preflight: " + problem->message : job.check.reason) << "\n";
  }
}

nlohmann::json job_json(const PlannedJob& job) {
  return {{"model", job.job.model.to_string()}, {"task", job.job.task->name},
          {"n_shot", job.job.n_shot},           {"status", to_string(job.check.state)},
          {"reason", job.check.reason},         {"key", job.key.digest},
          {"result", job.result.string()}};
}

// The command-line values that cannot work, as preflight problems (reported with the others).
void check_option_values(const ScheduleOptions& options, std::vector<PreflightProblem>& problems) {
  auto report = [&](const std::string& message) { problems.push_back({"environment", "", {}, message}); };
  constexpr double kMinutesPerYear = 365.0 * 24 * 60;
  const double minutes = options.typed.minutes_per_eval.value_or(1);
  if (!std::isfinite(minutes) || minutes <= 0 || minutes > kMinutesPerYear) {
    report(fmt::format("--minutes_per_eval: {} is not a number of minutes in 0..{} (e.g. 10 or 0.5)", minutes,
                       kMinutesPerYear));
  }
  if (options.typed.evals_per_element.value_or(1) < 1) {
    report(fmt::format("--evals_per_element: {} is not a positive integer", *options.typed.evals_per_element));
  }
  if (options.typed.lock_wait_seconds < 0) report(fmt::format("--lock_wait: {} is negative (expected seconds, e.g. 60)", options.typed.lock_wait_seconds));
  if (options.typed.max_requeues.value_or(kDefaultMaxRequeues) < 0) {
    report(fmt::format("--max_requeues: {} is negative (expected 0 or more)", *options.typed.max_requeues));
  }
  if (options.typed.limit && *options.typed.limit <= 0) {
    report(fmt::format("--limit: {} is not a positive number of documents (leave --limit out to evaluate all)",
                       *options.typed.limit));
  }
  if (!options.data_dir.empty() && !std::filesystem::is_directory(options.data_dir)) {
    report(fmt::format("--data_dir: {} is not a directory", quote_value(options.data_dir)));
  }
  if (!options.cost_history.empty() && !std::filesystem::is_regular_file(options.cost_history)) {
    report(fmt::format("--cost_history: {} is not a file (expected a JSON Lines history, docs/schedule.md)",
                       quote_value(options.cost_history)));
  }
  if (!options.venv_path.empty() && !std::filesystem::exists(std::filesystem::path(options.venv_path) / "bin" / "activate")) {
    report(fmt::format("--venv_path: {} has no bin/activate (expected a virtual environment directory)",
                       quote_value(options.venv_path)));
  }
}

// The dry run's report (stdout).
void print_problems(const std::vector<PreflightProblem>& problems) {
  std::cout << fmt::format("preflight: {} problem(s); nothing can be submitted until they are fixed (docs/schedule.md, "
                     "\"Preflight\")\n",
                     problems.size());
  for (const auto* problem : ordered_problems(problems)) {
    std::cout << fmt::format("  {:<12} {}\n", problem->area + ":", one_line(problem->message));
  }
}

nlohmann::json problem_json(const PreflightProblem& problem) {
  return {{"area", problem.area}, {"model", problem.model}, {"tasks", problem.tasks}, {"message", problem.message}};
}

struct ModelAndTaskLists {
  std::vector<std::string> models;
  std::vector<std::string> tasks;
};

// MODELS and TASKS from the positional words or from --models_file / --tasks_file (one item per line): a file
// takes its list's place, so `schedule --models_file F mmlu` and `schedule --models_file F --tasks_file G` work.
ModelAndTaskLists model_and_task_lists(const ScheduleOptions& options) {
  const bool models_from_file = !options.models_file.empty();
  const bool tasks_from_file = !options.tasks_file.empty();
  const std::size_t wanted = 2 - models_from_file - tasks_from_file;
  if (options.lists.size() != wanted) {
    const char* expected = wanted == 2   ? "MODELS TASKS"
                           : wanted == 0 ? "no MODELS or TASKS words (both come from files)"
                           : models_from_file ? "only TASKS (the models come from --models_file)"
                                              : "only MODELS (the tasks come from --tasks_file)";
    throw Error(fmt::format("schedule takes {}, got {} word(s): {}", expected, options.lists.size(),
                            quote_value(join(options.lists, " "))));
  }
  ModelAndTaskLists lists;
  std::size_t next = 0;
  lists.models = models_from_file ? read_list_file(options.models_file, "--models_file")
                                  : split_model_list(options.lists.at(next++));
  lists.tasks = tasks_from_file ? read_list_file(options.tasks_file, "--tasks_file")
                                : split_list(options.lists.at(next++));
  return lists;
}

// Lists every problem on stderr when there are several (one is the error line itself).
void list_problems(const std::vector<PreflightProblem>& problems) {
  if (problems.size() < 2) return;
  for (const auto* problem : ordered_problems(problems)) {
    std::cerr << fmt::format("mill: preflight: {}: {}\n", problem->area, one_line(problem->message));
  }
}

ScheduleRequest schedule_request(const ScheduleOptions& options, const GlobalOptions& global) {
  ScheduleRequest request = options.typed;
  const auto lists = model_and_task_lists(options);
  request.models = lists.models;
  request.tasks = lists.tasks;
  if (!request.n_shots_text.empty()) request.n_shots = parse_int_list_option(request.n_shots_text, "--n_shots");
  request.output_dir = global.output_dir_path();
  request.cache_dir = global.cache_dir_path();
  if (!options.venv_path.empty()) request.venv_path = std::filesystem::absolute(options.venv_path);
  request.data_dir = sweep_data_dir(options);
  if (!options.cost_history.empty()) request.cost_history = std::filesystem::absolute(options.cost_history);
  for (const auto& path : split_list(options.extra_task_paths)) {
    request.extra_task_paths.push_back(std::filesystem::absolute(path));
  }
  request.mill_binary = mill_executable();
  request.command_line = own_command_line();
  check_option_values(options, request.option_problems);
  // A bad MILL_PROGRESS_INTERVAL is refused before anything is planned or written.
  if (request.local && !request.dry_run) request.progress = progress_settings_for_stderr(false);
  return request;
}

nlohmann::json schedule_json(const ScheduleOutcome& outcome) {
  const auto& plan = outcome.plan;
  const auto& profile = *outcome.choice.profile;
  std::size_t largest_element = 0;
  for (const auto& element : outcome.elements) largest_element = std::max(largest_element, element.size());
  // Per array: what is submitted now (cut to the budget) and what was planned for it.
  nlohmann::json arrays_json = nlohmann::json::array();
  for (std::size_t a = 0, first = 0; a < outcome.arrays.arrays.size(); first += outcome.arrays.arrays[a].elements.size(), ++a) {
    const auto& array = outcome.arrays.arrays[a];
    const bool submitted_now = a < outcome.array_requests.size();
    arrays_json.push_back({{"gpus", array.shape.gpus},
                           {"cpus", array.shape.cpus},
                           {"mem", array.shape.mem},
                           {"mem_per_gpu", array.shape.mem_per_gpu},
                           {"first_element", first},
                           {"elements", array.elements.size()},
                           {"elements_now", submitted_now ? outcome.array_requests[a].elements : 0},
                           {"time_minutes", array.time_minutes},
                           {"time_limit", format_slurm_time(array.time_minutes)},
                           {"from_history", array.from_history},
                           {"explanation", array.explanation},
                           {"predicted_gpu_hours", array.predicted_gpu_hours},
                           {"requested_gpu_hours", array.requested_gpu_hours},
                           {"script", submitted_now && a < outcome.scripts.size() ? nlohmann::json(outcome.scripts[a])
                                                                                  : nlohmann::json()}});
  }
  const auto left = outcome.elements.size() - outcome.submit_count;
  const nlohmann::json continuation_json =
      outcome.continuing ? nlohmann::json{{"elements_left", left}, {"jobs_left", outcome.deferred_jobs},
                                          {"limited_by", outcome.budget.limited_by}}
                         : nlohmann::json();
  const auto& first_array = outcome.array_requests;
  nlohmann::json out = {{"summary", outcome.summary},
                        {"jobs", nlohmann::json::array()},
                        {"counts",
                         {{"total", plan.jobs.size()},
                          {"pending", outcome.pending.size()},
                          {"in_flight", outcome.pending.size() - outcome.to_run.size()},
                          {"done", plan.count(ResultState::done)},
                          {"missing", plan.count(ResultState::missing)},
                          {"stale", plan.count(ResultState::stale)},
                          {"corrupt", plan.count(ResultState::corrupt)}}},
                        {"profile", {{"name", profile.name}, {"reason", outcome.choice.reason}}},
                        {"array", {{"elements", outcome.elements.size()}, {"max_jobs_per_element", largest_element},
                                   {"throttle", profile.max_array_len}}},
                        {"time_limit", first_array.empty()
                                           ? nlohmann::json()
                                           : nlohmann::json{{"minutes", first_array.front().time_minutes},
                                                            {"slurm", format_slurm_time(first_array.front().time_minutes)},
                                                            {"explanation", first_array.front().time_explanation}}},
                        {"arrays", arrays_json},
                        {"gpu_hours", {{"predicted", outcome.arrays.predicted_gpu_hours},
                                       {"requested", outcome.arrays.requested_gpu_hours}}},
                        {"continuation", continuation_json},
                        {"script", outcome.scripts.empty() ? std::string() : outcome.scripts.front()},
                        {"settings", outcome.planned_with.to_json()},
                        {"submitted", !outcome.submission.is_null() && !outcome.running_locally},
                        {"submission", outcome.submission},
                        {"messages", outcome.messages}};
  out["problems"] = nlohmann::json::array();
  for (const auto& problem : outcome.problems) out["problems"].push_back(problem_json(problem));
  for (const auto& job : plan.jobs) {
    auto entry = job_json(job);
    if (const auto* problem = problem_of(job, outcome.problems)) {
      entry["status"] = "blocked";
      entry["problem"] = problem->message;
    }
    if (const auto it = outcome.in_flight.find(job.key.digest);
        it != outcome.in_flight.end() && job.check.state != ResultState::done) {
      entry["in_flight"] = {{"sweep_id", it->second.sweep_id}, {"array_job_id", it->second.array_job_id},
                            {"element", it->second.element}, {"state", it->second.state}};
    }
    out["jobs"].push_back(entry);
  }
  return out;
}

void print_schedule(const ScheduleOutcome& outcome, const ScheduleOptions& options, bool plan_printed_first) {
  const auto& plan = outcome.plan;
  const auto& profile = *outcome.choice.profile;
  const auto& arrays = outcome.arrays;
  const auto& elements = outcome.elements;
  const bool colour = stdout_is_colour_terminal();
  if (options.typed.dry_run) print_job_table(plan, outcome.problems, colour);
  if (!plan_printed_first) std::cout << "\n" << outcome.summary << "\n";
  if (options.typed.local) {
    if (!plan_printed_first) std::cout << "--local: no SLURM; every job runs here, one element after another\n";
  } else {
    std::cout << fmt::format("cluster profile: {} ({})\n", profile.name, outcome.choice.reason);
  }
  if (!elements.empty() && !options.typed.local) {
    for (std::size_t a = 0; a < arrays.arrays.size(); ++a) {
      const auto& array = arrays.arrays[a];
      std::cout << fmt::format("array {} of {}: {} per element; {} element(s), at most {} running (%{}); {:.1f} "
                               "GPU-hours predicted, {:.1f} requested\n",
                               a + 1, arrays.arrays.size(), array.shape.to_string(), array.elements.size(),
                               profile.max_array_len, profile.max_array_len, array.predicted_gpu_hours,
                               array.requested_gpu_hours);
      std::cout << "  time limit: " << array.explanation << "\n";
    }
    std::cout << fmt::format("sweep: {:.1f} GPU-hours predicted, {:.1f} requested\n", arrays.predicted_gpu_hours,
                             arrays.requested_gpu_hours);
    if (outcome.continuing && options.typed.dry_run) {
      std::cout << fmt::format("now: {} of {} element(s) ({}, assuming none of your jobs are queued); then a "
                               "continuation job submits the other {} with {} job(s) when these end\n",
                               outcome.submit_count, elements.size(), outcome.budget.limited_by,
                               elements.size() - outcome.submit_count, outcome.deferred_jobs);
    }
  }
  if (options.typed.dry_run) {
    for (std::size_t a = 0; a < outcome.scripts.size(); ++a) {
      const auto path = SweepPaths{outcome.sbatch.sweep_dir}.script(a);
      std::cout << "\n--- sbatch script " << path.filename().string() << " (submitted as: "
                << join(sbatch_command(outcome.sbatch, path), " ") << ") ---\n"
                << outcome.scripts[a] << "--- end of script ---\n";
    }
  }
  for (const auto& message : outcome.messages) std::cout << message << "\n";
  if (!outcome.problems.empty()) print_problems(outcome.problems);
  const auto newer = std::count_if(plan.jobs.begin(), plan.jobs.end(),
                                   [](const PlannedJob& job) { return job.check.newer_scoring_version.has_value(); });
  if (newer > 0) {
    std::cout << fmt::format("{} job(s) have a result computed by a newer mill: left as they are, not run (see the "
                             "reason column of --dry_run)\n",
                             newer);
  }
  if (outcome.pending.empty()) {
    std::cout << (newer > 0 ? "nothing else to do\n" : "nothing to do: every job is done\n");
  } else if (options.typed.dry_run) {
    std::cout << "dry run: nothing submitted\n";
  } else if (outcome.to_run.empty()) {
    std::cout << "nothing to submit: every job that is not done is already queued or running\n";
  }
}

void run_schedule(const ScheduleOptions& options, const GlobalOptions& global) {
  const auto request = schedule_request(options, global);
  // The first run copied the bundled profiles for the user to edit: said once, when the run ends (after a long
  // job table, where it is seen), also when it fails.
  struct FirstRunNote {
    std::filesystem::path created;
    ~FirstRunNote() {
      if (created.empty()) return;
      std::cerr << "mill: created " << one_line(created.string())
                << " from the bundled cluster profiles; edit it for your cluster (docs/clusters.md)\n";
    }
  } first_run_note;
  ScheduleHooks hooks;
  hooks.profiles_created = [&](const std::filesystem::path& path) { first_run_note.created = path; };
  // --local says what it will run (and what it skips) before running it, which may take hours; the outcome after.
  bool plan_printed_first = false;
  if (!options.json) {
    hooks.before_local_run = [&](ScheduleOutcome& outcome) {
      std::cout << "\n" << outcome.summary << "\n";
      print_local_run_plan(std::vector<std::vector<const PlannedJob*>>(
          outcome.elements.begin(), outcome.elements.begin() + static_cast<std::ptrdiff_t>(outcome.submit_count)));
      for (const auto& message : outcome.messages) std::cout << message << "\n";
      outcome.messages.clear();
      std::cout << std::flush;
      plan_printed_first = true;
    };
  }
  ScheduleOutcome outcome;
  try {
    outcome = schedule_sweep(request, hooks);
  } catch (const ScheduleProblems& e) {
    list_problems(e.problems);
    throw;
  }
  if (!outcome.planned) {
    // A dry run with nothing valid to plan: the problems are all there is to show.
    if (options.json) {
      nlohmann::json out = {{"problems", nlohmann::json::array()}, {"jobs", nlohmann::json::array()}};
      for (const auto& problem : outcome.problems) out["problems"].push_back(problem_json(problem));
      std::cout << out.dump(2) << "\n";
    }
    list_problems(outcome.problems);
    throw ScheduleProblems(outcome.problems, "dry run: nothing submitted");
  }
  if (options.json) {
    std::cout << schedule_json(outcome).dump(2) << "\n";
  } else {
    print_schedule(outcome, options, plan_printed_first);
  }
  if (!outcome.problems.empty()) {
    throw Error(fmt::format("preflight found {} problem(s), listed above; dry run: nothing submitted",
                            outcome.problems.size()));
  }
  if (outcome.local_exit_code != 0) {
    throw Error(fmt::format("--local: {}", outcome.submission.value("failed_message", std::string("a job failed"))),
                static_cast<ExitCode>(outcome.local_exit_code));
  }
}

}  // namespace

void register_schedule_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<ScheduleOptions>();
  auto* command = app.add_subcommand(
      "schedule",
      "Plan a sweep of MODELS × TASKS × n_shots, skip jobs whose valid result exists in --output_dir, and submit the "
      "rest as one throttled SLURM array (see docs/schedule.md).");
  command->add_option("lists", options->lists,
                      "MODELS TASKS: comma-separated model specs NAME_OR_PATH[key=value,...] (a comma in a name is "
                      "written \\,) and comma-separated task or benchmark names (mmlu, mmlu_pro, ...)")
      ->expected(0, 2);
  add_option(*command, "models_file", options->models_file,
             "File with one model spec per line, instead of MODELS (blank lines and lines starting with # skipped)");
  add_option(*command, "tasks_file", options->tasks_file,
             "File with one task or benchmark name per line, instead of TASKS");
  add_option(*command, "n_shots", options->typed.n_shots_text, "Comma-separated few-shot counts, e.g. 0,5 (default: each task's own)");
  add_option(*command, "cluster", options->typed.cluster, "auto (match the hostname) or a profile name from clusters.yaml")
      ->capture_default_str();
  add_flag(*command, "dry_run", options->typed.dry_run, "Print the job table, time limit and script; submit nothing");
  add_flag(*command, "local", options->typed.local,
           "Run every job here, one after another, without SLURM: the plan is printed first, then progress on stderr; "
           "Ctrl-C stops after the current batch (exit 130) and prints the command that resumes");
  add_flag(*command, "json", options->json, "Print the plan as JSON (jobs with status and reason, profile, time, script)");
  add_option(*command, "venv_path", options->venv_path, "Virtual environment the workers activate before mill eval");
  add_option(*command, "extra_task_paths", options->extra_task_paths, "Comma-separated directories of extra task YAML files");
  add_option(*command, "data_dir", options->data_dir,
             "Directory the workers read task data from (default $MILL_DATA_DIR, else each task's own location)");
  add_option(*command, "max_requeues", options->typed.max_requeues,
             "Times an element stopped by the pre-walltime signal may requeue itself, if it made progress (default 3)");
  add_option(*command, "minutes_per_eval", options->typed.minutes_per_eval,
             "Time budget in minutes for each task or benchmark named in TASKS (a benchmark's subtasks share it by "
             "document count), instead of the cost model's prediction (docs/schedule.md)");
  add_option(*command, "evals_per_element", options->typed.evals_per_element,
             "Most evals of one model that one array element runs (default: as many as fit the profile's "
             "target_element_time)");
  add_flag(*command, "no_continuation", options->typed.no_continuation,
           "When queue_limit leaves part of the sweep unsubmitted, do not submit the continuation job that submits "
           "the rest later; run mill schedule again by hand instead");
  add_option(*command, "cost_history", options->cost_history,
             "A shared JSON Lines history of measured job costs, used besides the sweeps in --output_dir "
             "(docs/schedule.md, \"Cost model and packing\")");
  command->add_option("--continues", options->typed.continues, "Set by a continuation job: the sweep it continues")
      ->group("");  // internal
  add_option(*command, "limit", options->typed.limit, "Evaluate only the first N documents of each task (smoke tests; N > 0)");
  add_option(*command, "lock_wait", options->typed.lock_wait_seconds,
             "Seconds to wait for another mill schedule submitting to the same output dir (default 60)");
  add_flag(*command, "skip_model_check", options->typed.skip_model_check,
           "Do not look for model checkpoints from here (when the compute nodes see another Hugging Face cache or "
           "file system); model args are still checked");
  command->callback([options, &global] { run_schedule(*options, global); });
}

}  // namespace mill::cli
