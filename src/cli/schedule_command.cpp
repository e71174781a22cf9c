// `mill schedule MODELS TASKS`: plan a sweep, skip what is done (and what earlier sweeps still have in the
// queue), pick the cluster profile, compute the time limit, and submit a throttled SLURM array within the
// profile's queue_limit. --dry_run prints all of it and submits nothing; --local runs every job here.
#include <unistd.h>

#include <fmt/color.h>
#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "mill/atomic_file.hpp"
#include "mill/cluster.hpp"
#include "mill/error.hpp"
#include "mill/job_lock.hpp"
#include "mill/migrate.hpp"
#include "mill/model_spec.hpp"
#include "mill/plan.hpp"
#include "mill/preflight.hpp"
#include "mill/progress.hpp"
#include "mill/model_list.hpp"
#include "mill/requeue.hpp"
#include "mill/sbatch.hpp"
#include "mill/schedule_settings.hpp"
#include "mill/slurm.hpp"
#include "mill/submit.hpp"
#include "mill/tasks.hpp"
#include "mill/text.hpp"
#include "mill/walltime.hpp"
#include "mill/work_estimate.hpp"
#include "mill/array_plan.hpp"
#include "mill/cost_model.hpp"
#include "mill/worker.hpp"

namespace mill::cli {

namespace {


struct ScheduleOptions {
  std::vector<std::string> lists;  // the positional MODELS TASKS (only TASKS with --models_file, none with both files)
  std::string models_file;
  std::string tasks_file;
  std::string n_shots;
  std::string cluster = "auto";
  bool dry_run = false;
  bool local = false;
  bool json = false;
  std::string venv_path;
  std::string extra_task_paths;
  std::string data_dir;
  // Absent unless given, so that the sweep records (and a resubmission repeats) only what the user chose.
  std::optional<int> max_requeues;
  std::optional<double> minutes_per_eval;
  std::optional<int> evals_per_element;
  std::optional<int> limit;
  bool skip_model_check = false;
  int lock_wait = 60;
  bool no_continuation = false;
  std::string continues;      // set by a continuation job: the sweep it continues
  std::string cost_history;   // a shared history file (JSON Lines) for the cost model
};

std::optional<std::filesystem::path> cost_history_file(const ScheduleOptions& options) {
  if (options.cost_history.empty()) return std::nullopt;
  return std::filesystem::absolute(options.cost_history);
}

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

struct LocalOutcome {
  nlohmann::json record;
  std::string message;
  int exit_code = 0;
};

// --local: one sweep directory like a submitted one, every element run here in turn by the worker code. Jobs are
// numbered across the sweep on the progress display ("job 4/9").
LocalOutcome run_locally(const std::vector<std::vector<const PlannedJob*>>& elements, nlohmann::json settings,
                         const std::filesystem::path& output_dir, ProgressDisplay& display) {
  // From here on Ctrl-C and SIGTERM stop between batches, leaving a sweep that a rerun resumes.
  const auto& stop = install_stop_signal_handlers();
  const auto sweep = create_sweep(output_dir);
  settings["sweep_id"] = sweep.dir.filename().string();
  write_file_atomically(sweep.manifest(), make_manifest(elements, settings).dump(2) + "\n");
  int jobs = 0;
  for (const auto& element : elements) jobs += static_cast<int>(element.size());
  write_local_submission(sweep, static_cast<int>(elements.size()), jobs, own_command_line());

  WorkerOptions worker;
  worker.output_dir = output_dir;
  worker.stop = &stop;
  worker.display = &display;
  LocalOutcome outcome;
  int failed = 0, ran = 0;
  std::string first_failure;
  std::size_t jobs_before = 0;
  for (int index = 0; index < static_cast<int>(elements.size()); ++index) {
    int code = 0;
    display.number_jobs(jobs_before, static_cast<std::size_t>(jobs));
    jobs_before += elements[index].size();
    try {
      code = run_manifest_element(sweep.manifest(), index, worker);
    } catch (const Error& e) {
      // The worker wrote the element's status file; the next elements still run.
      display.print(std::cerr, fmt::format("mill: error: element {}: {}", index, e.what()));
      code = static_cast<int>(ExitCode::eval_failed);
      if (first_failure.empty()) first_failure = e.what();
    }
    ++ran;
    if (code == static_cast<int>(ExitCode::preempted) || code == static_cast<int>(interrupted_exit_code())) {
      outcome.exit_code = code;
      break;
    }
    if (code != 0) {
      ++failed;
      if (first_failure.empty()) first_failure = fmt::format("element {} exited with {}", index, code);
    }
  }
  if (outcome.exit_code == 0 && failed > 0) outcome.exit_code = static_cast<int>(ExitCode::eval_failed);
  outcome.record = {{"sweep_id", sweep.dir.filename().string()}, {"sweep_dir", sweep.dir.string()},
                    {"mode", "local"}, {"elements", elements.size()}, {"jobs", jobs}, {"elements_run", ran},
                    {"elements_failed", failed}};
  if (outcome.exit_code == static_cast<int>(ExitCode::preempted)) {
    outcome.record["failed_message"] = "stopped by a signal; run the same mill schedule --local again to resume";
  } else if (outcome.exit_code == static_cast<int>(interrupted_exit_code())) {
    const auto where = display.where();
    outcome.record["failed_message"] =
        fmt::format("interrupted (Ctrl-C){}; the journal is flushed; resume with: {}", where.empty() ? "" : " during " + where,
                    own_command_text());
  } else if (failed > 0) {
    outcome.record["failed_message"] = fmt::format("{} of {} element(s) failed ({}); status files in {}", failed,
                                                   elements.size(), first_failure, (sweep.dir / "status").string());
  }
  outcome.message = fmt::format("--local: ran {} of {} element(s) with {} job(s) here; sweep {}", ran, elements.size(),
                                jobs, sweep.dir.filename().string());
  return outcome;
}

const PreflightProblem* problem_of(const PlannedJob& job, const std::vector<PreflightProblem>& problems);

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
  const double minutes = options.minutes_per_eval.value_or(1);
  if (!std::isfinite(minutes) || minutes <= 0 || minutes > kMinutesPerYear) {
    report(fmt::format("--minutes_per_eval: {} is not a number of minutes in 0..{} (e.g. 10 or 0.5)", minutes,
                       kMinutesPerYear));
  }
  if (options.evals_per_element.value_or(1) < 1) {
    report(fmt::format("--evals_per_element: {} is not a positive integer", *options.evals_per_element));
  }
  if (options.lock_wait < 0) report(fmt::format("--lock_wait: {} is negative (expected seconds, e.g. 60)", options.lock_wait));
  if (options.max_requeues.value_or(kDefaultMaxRequeues) < 0) {
    report(fmt::format("--max_requeues: {} is negative (expected 0 or more)", *options.max_requeues));
  }
  if (options.limit && *options.limit <= 0) {
    report(fmt::format("--limit: {} is not a positive number of documents (leave --limit out to evaluate all)",
                       *options.limit));
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

// The problems in their areas' order, one line each.
std::vector<const PreflightProblem*> ordered_problems(const std::vector<PreflightProblem>& problems) {
  std::vector<const PreflightProblem*> ordered;
  for (const char* area : {"task", "data", "model", "environment"}) {
    for (const auto& problem : problems) {
      if (problem.area == area) ordered.push_back(&problem);
    }
  }
  return ordered;
}

// The dry run's report (stdout).
void print_problems(std::ostream& out, const std::vector<PreflightProblem>& problems) {
  out << fmt::format("preflight: {} problem(s); nothing can be submitted until they are fixed (docs/schedule.md, "
                     "\"Preflight\")\n",
                     problems.size());
  for (const auto* problem : ordered_problems(problems)) {
    out << fmt::format("  {:<12} {}\n", problem->area + ":", one_line(problem->message));
  }
}

// Stops the command: one problem is one error line; several are one line each, then the error.
[[noreturn]] void fail_preflight(const std::vector<PreflightProblem>& problems, const std::string& outcome) {
  if (problems.size() == 1) throw Error(fmt::format("{} ({})", problems.front().message, outcome));
  for (const auto* problem : ordered_problems(problems)) {
    std::cerr << fmt::format("mill: preflight: {}: {}\n", problem->area, one_line(problem->message));
  }
  throw Error(fmt::format("preflight found {} problems, listed above ({})", problems.size(), outcome));
}

// The first problem that stops a job (its model's or its task's), if any.
const PreflightProblem* problem_of(const PlannedJob& job, const std::vector<PreflightProblem>& problems) {
  for (const auto& problem : problems) {
    if (!problem.model.empty() && problem.model == job.job.model.to_string()) return &problem;
    if (std::find(problem.tasks.begin(), problem.tasks.end(), job.job.task->name) != problem.tasks.end()) return &problem;
  }
  return nullptr;
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
                                : parse_list_option(options.lists.at(next++));
  return lists;
}

// What this sweep is planned with, recorded in its manifest so that collect --check can repeat it exactly.
ScheduleSettings schedule_settings(const ScheduleOptions& options, const GlobalOptions& global,
                                   const std::vector<std::filesystem::path>& extra_paths, const std::string& profile) {
  ScheduleSettings settings;
  settings.output_dir = global.output_dir_path();
  settings.cache_dir = global.cache_dir_path();
  settings.data_dir = sweep_data_dir(options);
  if (!options.venv_path.empty()) settings.venv_path = std::filesystem::absolute(options.venv_path);
  for (const auto& path : extra_paths) settings.extra_task_paths.push_back(path.string());
  settings.cluster = profile;
  settings.local = options.local;
  settings.minutes_per_eval = options.minutes_per_eval;
  settings.evals_per_element = options.evals_per_element;
  settings.max_requeues = options.max_requeues;
  settings.skip_model_check = options.skip_model_check;
  settings.cost_history = cost_history_file(options);
  return settings;
}

// A continuation job that finds as much left to do as when its sweep was submitted (every job of its arrays
// failed) ends the chain, so a sweep whose jobs cannot succeed does not resubmit itself forever.
void stop_a_chain_without_progress(const ScheduleOptions& options, const std::filesystem::path& output_dir,
                                   std::size_t jobs_left_now) {
  const auto path = SweepPaths{sweeps_root(output_dir) / options.continues}.submission();
  const auto record = nlohmann::json::parse(read_file(path, "submission record"), nullptr, false);
  if (!record.is_object()) throw Error(fmt::format("--continues {}: {} is not JSON", options.continues, path.string()));
  const auto submitted = record.value("jobs", 0);
  int left_then = 0;
  if (const auto it = record.find("continuation"); it != record.end() && it->is_object()) left_then = it->value("jobs_left", 0);
  if (static_cast<int>(jobs_left_now) >= submitted + left_then) {
    throw Error(fmt::format("continuation of sweep {}: none of its {} job(s) finished ({} still to run), so the chain "
                            "stops here; see `mill status` and the logs in {}, then run mill schedule again by hand",
                            options.continues, submitted, jobs_left_now, (path.parent_path() / "logs").string()),
                ExitCode::eval_failed);
  }
}

void run_schedule(const ScheduleOptions& options, const GlobalOptions& global) {
  // Choose the profile before touching results, so a configuration error shows up first. Only a submission needs
  // the user's own copy of the profiles; a dry run or --local can go on with the bundled ones.
  const auto clusters = load_cluster_config(global.cache_dir_path(), options.dry_run || options.local
                                                                         ? WithoutCopy::use_bundled
                                                                         : WithoutCopy::fail);
  if (!clusters.not_created.empty()) {
    spdlog::warn("{}; using the bundled cluster profiles for this {}", clusters.not_created,
                 options.dry_run ? "dry run" : "--local run");
  }
  // The first run copied the bundled profiles for the user to edit: said once, when the run ends (after a long
  // job table, where it is seen), also when it fails.
  struct FirstRunNote {
    std::filesystem::path created;
    ~FirstRunNote() {
      if (created.empty()) return;
      std::cerr << "mill: created " << one_line(created.string())
                << " from the bundled cluster profiles; edit it for your cluster (docs/clusters.md)\n";
    }
  } const first_run_note{clusters.created ? clusters.path : std::filesystem::path()};
  const auto hostname = current_hostname();
  const auto choice = options.local ? ProfileChoice{&clusters.profiles.front(), "--local: no SLURM"}
                                    : choose_profile(clusters, options.cluster, hostname);
  const auto& profile = *choice.profile;

  std::vector<PreflightProblem> problems;
  check_option_values(options, problems);
  // A bad MILL_PROGRESS_INTERVAL is refused before anything is planned or written.
  const auto progress_settings = options.local && !options.dry_run ? progress_settings_for_stderr(false) : ProgressSettings{};
  std::error_code unreadable;  // counts as missing
  if (options.venv_path.empty() && !options.local && !profile.venv_path.empty() && profile.container_image.empty() &&
      !std::filesystem::exists(profile.venv_path / "bin" / "activate", unreadable)) {
    // Inside a container only the image can tell.
    problems.push_back({"environment", "", {},
                        fmt::format("{}: profile {}, field `venv_path`: {} has no bin/activate (expected a virtual "
                                    "environment directory; --venv_path overrides it)",
                                    clusters.path.string(), profile.name, quote_value(profile.venv_path.string()))});
  }
  std::vector<std::filesystem::path> extra_paths;
  for (const auto& path : parse_list_option(options.extra_task_paths)) extra_paths.push_back(std::filesystem::absolute(path));
  const auto registry = TaskRegistry::load(extra_paths);

  // Each model spec and task name on its own, so that every bad one is reported, not only the first.
  PlanRequest request;
  PreflightRequest preflight;
  const auto lists = model_and_task_lists(options);
  std::set<std::string> identities;  // each model is checked once, however it is spelled
  for (const auto& text : lists.models) {
    try {
      auto spec = ModelSpec::parse(text);
      request.models.push_back(text);
      if (identities.insert(spec.identity()).second) preflight.models.push_back(std::move(spec));
    } catch (const Error& e) {
      problems.push_back({"model", text, {}, e.what()});
    }
  }
  for (const auto& name : lists.tasks) {
    try {
      for (const auto* task : registry.expand({name})) {
        if (std::find(preflight.tasks.begin(), preflight.tasks.end(), task) == preflight.tasks.end()) {
          preflight.tasks.push_back(task);
        }
      }
      request.tasks.push_back(name);
    } catch (const Error& e) {
      problems.push_back({"task", "", {name}, e.what()});
    }
  }
  if (!options.n_shots.empty()) request.n_shots = parse_int_list_option(options.n_shots, "--n_shots");
  if (options.limit && *options.limit > 0) request.limit = options.limit;
  request.output_dir = global.output_dir_path();
  preflight.n_shots = request.n_shots;
  preflight.data_dir = sweep_data_dir(options);
  preflight.output_dir = request.output_dir;
  preflight.check_model_files = !options.skip_model_check;
  if (!options.local) preflight.profile = &profile;
  for (auto& problem : run_preflight(preflight)) problems.push_back(std::move(problem));
  if (!problems.empty() && !options.dry_run) fail_preflight(problems, "nothing was submitted or run");
  if (request.models.empty() || request.tasks.empty()) {
    // A dry run with nothing valid to plan: the problems are all there is to show.
    if (options.json) {
      nlohmann::json out = {{"problems", nlohmann::json::array()}, {"jobs", nlohmann::json::array()}};
      for (const auto& problem : problems) out["problems"].push_back(problem_json(problem));
      std::cout << out.dump(2) << "\n";
    }
    fail_preflight(problems, "dry run: nothing submitted");
  }

  // One submitter per output dir, from reading the results to recording the array: a second schedule waits here,
  // then plans with the first one's array in flight (docs/schedule.md, "One submitter at a time").
  std::optional<JobLock> submit_lock;
  std::vector<std::string> messages;  // printed after the plan (or put into the JSON)
  if (!options.dry_run && !options.local) {
    // A lock that cannot be created is a path problem, like a sweep directory that cannot be (exit 2).
    submit_lock.emplace(submit_lock_path(request.output_dir), ExitCode::usage);
    if (!submit_lock->acquire(std::chrono::seconds(options.lock_wait))) {
      throw Error(fmt::format("another mill schedule is submitting to {} ({}; lock {}); nothing submitted: run this "
                              "again when it has finished (it will see that sweep in flight)",
                              quote_value(request.output_dir.string()), submit_lock->holder(),
                              submit_lock->path().string()),
                  ExitCode::busy);
    }
    for (auto& line : reconcile_submissions(request.output_dir)) messages.push_back(std::move(line));
  }

  const auto plan = build_plan(request, registry);
  const auto pending = plan.pending();
  const bool submitting = !options.dry_run && !options.local && !pending.empty();

  // Jobs that an earlier sweep still has in the queue are not submitted twice. Only a real submission asks
  // squeue, so --dry_run stays fast and works away from the cluster.
  std::vector<QueueEntry> queue;
  std::map<std::string, InFlightJob> in_flight;
  if (submitting) {
    std::string error;
    auto answer = query_user_queue(&error);
    if (!answer) {
      throw Error(fmt::format("cannot read the queue ({}); nothing submitted", error), ExitCode::submit_failed);
    }
    queue = std::move(*answer);
    // A continuation job plans from inside SLURM: its own job is not part of the sweep's queue budget.
    if (const char* self = std::getenv("SLURM_JOB_ID"); self && *self && !options.continues.empty()) {
      std::erase_if(queue, [&](const QueueEntry& entry) { return entry.array_job_id == self; });
    }
    in_flight = jobs_in_flight(request.output_dir, queue);
  }
  std::vector<const PlannedJob*> to_run;  // pending jobs not in flight, in plan order
  for (const auto* job : pending) {
    if (!in_flight.count(job->key.digest)) to_run.push_back(job);
  }
  if (!options.continues.empty() && !options.dry_run) stop_a_chain_without_progress(options, request.output_dir, to_run.size());
  // A dry run with problems still shows its plan: values that failed the preflight are replaced by the defaults.
  const bool values_valid = problems.empty();
  WorkEstimator work(global.cache_dir_path(), sweep_data_dir(options));
  const CostModel cost(read_cost_history(request.output_dir, cost_history_file(options)));
  ArrayPlanRequest arrays_request;
  arrays_request.profile = &profile;
  arrays_request.registry = &registry;
  arrays_request.requested_tasks = request.tasks;
  if (values_valid) {
    arrays_request.minutes_per_eval = options.minutes_per_eval;
    arrays_request.evals_per_element = options.evals_per_element;
  }
  arrays_request.read_checkpoints = !options.skip_model_check;
  arrays_request.work = &work;
  arrays_request.cost = &cost;
  const auto arrays = plan_arrays(to_run, arrays_request);
  work.save();
  const auto elements = arrays.all_elements();

  // What goes to SLURM now: the budget's share of the elements, one slot kept for the continuation job when the
  // rest must wait. A dry run assumes an empty queue (it does not ask squeue).
  auto budget = submit_budget(profile, static_cast<int>(queue.size()), static_cast<int>(elements.size()));
  const bool continuing = !options.local && !options.no_continuation && budget.elements < static_cast<int>(elements.size());
  if (continuing && budget.elements > 0) --budget.elements;
  const auto submit_count = options.local ? elements.size() : static_cast<std::size_t>(budget.elements);
  const std::vector<std::vector<const PlannedJob*>> to_submit(elements.begin(), elements.begin() + submit_count);
  std::size_t deferred_jobs = 0;
  for (auto it = elements.begin() + submit_count; it != elements.end(); ++it) deferred_jobs += it->size();
  // The arrays cut to what is submitted now.
  std::vector<ArrayRequest> array_requests;
  for (std::size_t a = 0, first = 0; a < arrays.arrays.size() && first < submit_count; ++a) {
    const auto& array = arrays.arrays[a];
    const auto count = std::min(array.elements.size(), submit_count - first);
    array_requests.push_back({static_cast<int>(first), static_cast<int>(count), array.shape, array.time_minutes,
                              array.explanation});
    first += array.elements.size();
  }

  SbatchRequest sbatch;
  sbatch.profile = &profile;
  sbatch.mill_binary = mill_executable();
  sbatch.output_dir = request.output_dir;
  sbatch.cache_dir = global.cache_dir_path();
  sbatch.sweep_dir = request.output_dir / "sweeps" / "<sweep-id>";
  sbatch.manifest = sbatch.sweep_dir / "manifest.json";
  if (!options.venv_path.empty()) {
    sbatch.venv_path = std::filesystem::absolute(options.venv_path);
  } else if (!profile.venv_path.empty() && !options.local) {
    sbatch.venv_path = profile.venv_path;  // the profile's default (checked by the preflight)
  }
  // The scripts of a dry run, one per array, as they will be submitted.
  std::vector<std::string> scripts;
  if (!options.local) {
    for (const auto& array : array_requests) {
      auto rendered = sbatch;
      rendered.first_element = array.first_element;
      rendered.array_size = array.elements;
      rendered.shape = array.shape;
      rendered.time_minutes = array.time_minutes;
      scripts.push_back(render_sbatch_script(rendered));
    }
  }

  const auto planned_with = schedule_settings(options, global, extra_paths, options.local ? "" : profile.name);
  nlohmann::json settings = {{"extra_task_paths", nlohmann::json::array()},
                             {"max_requeues", options.max_requeues.value_or(kDefaultMaxRequeues)},
                             {"schedule", planned_with.to_json()}};
  for (const auto& path : extra_paths) settings["extra_task_paths"].push_back(path.string());
  if (const auto data_dir = sweep_data_dir(options)) settings["data_dir"] = data_dir->string();
  if (!options.local && !profile.gpu_type.empty()) settings["gpu_type"] = profile.gpu_type;  // for the results' provenance

  const auto summary = fmt::format(
      "{} job(s) = {} model(s) × {} task(s) × n_shots; {} to run ({} missing, {} stale, {} corrupt), {} done (skipped)",
      plan.jobs.size(), request.models.size(), registry.expand(request.tasks).size(), pending.size(),
      plan.count(ResultState::missing), plan.count(ResultState::stale), plan.count(ResultState::corrupt),
      plan.count(ResultState::done));

  if (const auto legacy = result_directories_to_migrate(request.output_dir); !legacy.empty()) {
    messages.push_back(fmt::format("{} results director(ies) use an earlier spelling of their model (results/{} is "
                                   "now results/{}); schedule and collect look only under today's spelling: run `mill "
                                   "migrate` once to move them",
                                   legacy.size(), legacy.front().first, legacy.front().second));
  }
  if (!in_flight.empty()) {
    std::set<std::string> arrays;
    for (const auto& [key, job] : in_flight) arrays.insert(job.array_job_id);
    std::size_t count = 0;
    for (const auto* job : pending) count += in_flight.count(job->key.digest);
    messages.push_back(fmt::format("{} job(s) already queued or running in earlier sweeps (array job(s) {}): not submitted again",
                                   count, join(std::vector<std::string>(arrays.begin(), arrays.end()), ", ")));
  }

  nlohmann::json submission = nullptr;
  int exit_code = 0;
  // --local says what it will run (and what it skips) before running it, which may take hours; the outcome after.
  const bool running_locally = options.local && !to_submit.empty() && !options.dry_run;
  const bool plan_printed_first = running_locally && !options.json;
  if (plan_printed_first) {
    std::cout << "\n" << summary << "\n";
    print_local_run_plan(to_submit);
    for (const auto& message : messages) std::cout << message << "\n";
    messages.clear();
    std::cout << std::flush;
  }
  if (running_locally) {
    ProgressDisplay display(progress_settings);
    const auto outcome = run_locally(to_submit, settings, request.output_dir, display);
    submission = outcome.record;
    messages.push_back(outcome.message);
    exit_code = outcome.exit_code;
  } else if (submitting && to_submit.empty() && !elements.empty()) {
    messages.push_back(fmt::format("nothing submitted: {}; run mill schedule again when your queue has room (it "
                                   "submits only what is still missing)",
                                   budget.limited_by));
  } else if (submitting && !to_submit.empty()) {
    SubmitRequest submit;
    submit.elements = to_submit;
    submit.arrays = array_requests;
    submit.profile = &profile;
    submit.mill_binary = sbatch.mill_binary;
    submit.output_dir = request.output_dir;
    submit.cache_dir = sbatch.cache_dir;
    submit.venv_path = sbatch.venv_path;
    submit.settings = settings;
    submit.command_line = own_command_line();
    submit.continues = options.continues;
    submit.models = request.models;
    submit.tasks = request.tasks;
    if (continuing) {
      ContinuationRequest continuation;
      continuation.before_schedule = {sbatch.mill_binary.string()};
      for (auto& word : planned_with.global_arguments()) continuation.before_schedule.push_back(std::move(word));
      if (!options.n_shots.empty()) continuation.schedule_options = {"--n_shots", options.n_shots};
      if (request.limit) {
        continuation.schedule_options.insert(continuation.schedule_options.end(), {"--limit", std::to_string(*request.limit)});
      }
      for (auto& word : planned_with.schedule_arguments()) continuation.schedule_options.push_back(std::move(word));
      continuation.jobs_left = static_cast<int>(deferred_jobs);
      continuation.elements_left = static_cast<int>(elements.size() - to_submit.size());
      submit.continuation = continuation;
    }
    const auto result = submit_sweep(submit);
    scripts.clear();
    for (std::size_t a = 0; a < array_requests.size(); ++a) {
      scripts.push_back(read_file(result.sweep.script(a), "sbatch script"));  // with the real sweep paths
    }
    submission = {{"sweep_id", result.sweep_id},
                  {"sweep_dir", result.sweep.dir.string()},
                  {"array_job_id", result.array_job_id},
                  {"array_job_ids", result.array_job_ids},
                  {"elements", result.elements},
                  {"jobs", result.jobs},
                  {"deferred_elements", elements.size() - to_submit.size()},
                  {"deferred_jobs", deferred_jobs},
                  {"continuation_job_id", result.continuation_job_id.empty() ? nlohmann::json()
                                                                             : nlohmann::json(result.continuation_job_id)}};
    messages.push_back(fmt::format("submitted array job{} {}: {} element(s) with {} job(s), at most {} running at once "
                                   "per array; sweep {} (logs in {}); follow it with `mill status`",
                                   result.array_job_ids.size() > 1 ? "s" : "", join(result.array_job_ids, ", "),
                                   result.elements, result.jobs, profile.max_array_len, result.sweep_id,
                                   result.sweep.logs().string()));
    for (const auto& warning : result.warnings) messages.push_back(warning);
    if (!result.continuation_job_id.empty()) {
      messages.push_back(fmt::format("not submitted yet: {} element(s) with {} job(s), because of the {}; continuation "
                                     "job {} submits them when these arrays end (--no_continuation to do it by hand)",
                                     elements.size() - to_submit.size(), deferred_jobs, budget.limited_by,
                                     result.continuation_job_id));
    } else if (to_submit.size() < elements.size()) {
      messages.push_back(fmt::format("not submitted yet: {} element(s) with {} job(s), because of the {}; run the same "
                                     "mill schedule again once the queue drains (it submits only what is still missing)",
                                     elements.size() - to_submit.size(), deferred_jobs, budget.limited_by));
    }
  }

  std::size_t largest_element = 0;
  for (const auto& element : elements) largest_element = std::max(largest_element, element.size());
  // Per array: what is submitted now (cut to the budget) and what was planned for it.
  nlohmann::json arrays_json = nlohmann::json::array();
  for (std::size_t a = 0, first = 0; a < arrays.arrays.size(); first += arrays.arrays[a].elements.size(), ++a) {
    const auto& array = arrays.arrays[a];
    const bool submitted_now = a < array_requests.size();
    arrays_json.push_back({{"gpus", array.shape.gpus},
                           {"cpus", array.shape.cpus},
                           {"mem", array.shape.mem},
                           {"mem_per_gpu", array.shape.mem_per_gpu},
                           {"first_element", first},
                           {"elements", array.elements.size()},
                           {"elements_now", submitted_now ? array_requests[a].elements : 0},
                           {"time_minutes", array.time_minutes},
                           {"time_limit", format_slurm_time(array.time_minutes)},
                           {"from_history", array.from_history},
                           {"explanation", array.explanation},
                           {"predicted_gpu_hours", array.predicted_gpu_hours},
                           {"requested_gpu_hours", array.requested_gpu_hours},
                           {"script", submitted_now && a < scripts.size() ? nlohmann::json(scripts[a]) : nlohmann::json()}});
  }
  const nlohmann::json continuation_json =
      continuing ? nlohmann::json{{"elements_left", elements.size() - to_submit.size()}, {"jobs_left", deferred_jobs},
                                  {"limited_by", budget.limited_by}}
                 : nlohmann::json();
  if (options.json) {
    nlohmann::json out = {{"summary", summary},
                          {"jobs", nlohmann::json::array()},
                          {"counts",
                           {{"total", plan.jobs.size()},
                            {"pending", pending.size()},
                            {"in_flight", pending.size() - to_run.size()},
                            {"done", plan.count(ResultState::done)},
                            {"missing", plan.count(ResultState::missing)},
                            {"stale", plan.count(ResultState::stale)},
                            {"corrupt", plan.count(ResultState::corrupt)}}},
                          {"profile", {{"name", profile.name}, {"reason", choice.reason}}},
                          {"array", {{"elements", elements.size()}, {"max_jobs_per_element", largest_element},
                                     {"throttle", profile.max_array_len}}},
                          {"time_limit", array_requests.empty()
                                             ? nlohmann::json()
                                             : nlohmann::json{{"minutes", array_requests.front().time_minutes},
                                                              {"slurm", format_slurm_time(array_requests.front().time_minutes)},
                                                              {"explanation", array_requests.front().time_explanation}}},
                          {"arrays", arrays_json},
                          {"gpu_hours", {{"predicted", arrays.predicted_gpu_hours}, {"requested", arrays.requested_gpu_hours}}},
                          {"continuation", continuation_json},
                          {"script", scripts.empty() ? std::string() : scripts.front()},
                          {"settings", planned_with.to_json()},
                          {"submitted", !submission.is_null() && !options.local},
                          {"submission", submission},
                          {"messages", messages}};
    out["problems"] = nlohmann::json::array();
    for (const auto& problem : problems) out["problems"].push_back(problem_json(problem));
    for (const auto& job : plan.jobs) {
      auto entry = job_json(job);
      if (const auto* problem = problem_of(job, problems)) {
        entry["status"] = "blocked";
        entry["problem"] = problem->message;
      }
      if (const auto it = in_flight.find(job.key.digest); it != in_flight.end() && job.check.state != ResultState::done) {
        entry["in_flight"] = {{"sweep_id", it->second.sweep_id}, {"array_job_id", it->second.array_job_id},
                              {"element", it->second.element}, {"state", it->second.state}};
      }
      out["jobs"].push_back(entry);
    }
    std::cout << out.dump(2) << "\n";
  } else {
    const bool colour = stdout_is_colour_terminal();
    if (options.dry_run) print_job_table(plan, problems, colour);
    if (!plan_printed_first) std::cout << "\n" << summary << "\n";
    if (options.local) {
      if (!plan_printed_first) std::cout << "--local: no SLURM; every job runs here, one element after another\n";
    } else {
      std::cout << fmt::format("cluster profile: {} ({})\n", profile.name, choice.reason);
    }
    if (!elements.empty() && !options.local) {
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
      if (continuing && options.dry_run) {
        std::cout << fmt::format("now: {} of {} element(s) ({}, assuming none of your jobs are queued); then a "
                                 "continuation job submits the other {} with {} job(s) when these end\n",
                                 to_submit.size(), elements.size(), budget.limited_by, elements.size() - to_submit.size(),
                                 deferred_jobs);
      }
    }
    if (options.dry_run) {
      for (std::size_t a = 0; a < scripts.size(); ++a) {
        const auto path = SweepPaths{sbatch.sweep_dir}.script(a);
        std::cout << "\n--- sbatch script " << path.filename().string() << " (submitted as: "
                  << join(sbatch_command(sbatch, path), " ") << ") ---\n"
                  << scripts[a] << "--- end of script ---\n";
      }
    }
    for (const auto& message : messages) std::cout << message << "\n";
    if (!problems.empty()) print_problems(std::cout, problems);
    const auto newer = std::count_if(plan.jobs.begin(), plan.jobs.end(),
                                     [](const PlannedJob& job) { return job.check.newer_scoring_version.has_value(); });
    if (newer > 0) {
      std::cout << fmt::format("{} job(s) have a result computed by a newer mill: left as they are, not run (see the "
                               "reason column of --dry_run)\n",
                               newer);
    }
    if (pending.empty()) {
      std::cout << (newer > 0 ? "nothing else to do\n" : "nothing to do: every job is done\n");
    } else if (options.dry_run) {
      std::cout << "dry run: nothing submitted\n";
    } else if (to_run.empty()) {
      std::cout << "nothing to submit: every job that is not done is already queued or running\n";
    }
  }
  if (!problems.empty()) {
    throw Error(fmt::format("preflight found {} problem(s), listed above; dry run: nothing submitted", problems.size()));
  }
  if (exit_code != 0) {
    throw Error(fmt::format("--local: {}", submission.value("failed_message", std::string("a job failed"))),
                static_cast<ExitCode>(exit_code));
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
  add_option(*command, "n_shots", options->n_shots, "Comma-separated few-shot counts, e.g. 0,5 (default: each task's own)");
  add_option(*command, "cluster", options->cluster, "auto (match the hostname) or a profile name from clusters.yaml")
      ->capture_default_str();
  add_flag(*command, "dry_run", options->dry_run, "Print the job table, time limit and script; submit nothing");
  add_flag(*command, "local", options->local,
           "Run every job here, one after another, without SLURM: the plan is printed first, then progress on stderr; "
           "Ctrl-C stops after the current batch (exit 130) and prints the command that resumes");
  add_flag(*command, "json", options->json, "Print the plan as JSON (jobs with status and reason, profile, time, script)");
  add_option(*command, "venv_path", options->venv_path, "Virtual environment the workers activate before mill eval");
  add_option(*command, "extra_task_paths", options->extra_task_paths, "Comma-separated directories of extra task YAML files");
  add_option(*command, "data_dir", options->data_dir,
             "Directory the workers read task data from (default $MILL_DATA_DIR, else each task's own location)");
  add_option(*command, "max_requeues", options->max_requeues,
             "Times an element stopped by the pre-walltime signal may requeue itself, if it made progress (default 3)");
  add_option(*command, "minutes_per_eval", options->minutes_per_eval,
             "Time budget in minutes for each task or benchmark named in TASKS (a benchmark's subtasks share it by "
             "document count), instead of the cost model's prediction (docs/schedule.md)");
  add_option(*command, "evals_per_element", options->evals_per_element,
             "Most evals of one model that one array element runs (default: as many as fit the profile's "
             "target_element_time)");
  add_flag(*command, "no_continuation", options->no_continuation,
           "When queue_limit leaves part of the sweep unsubmitted, do not submit the continuation job that submits "
           "the rest later; run mill schedule again by hand instead");
  add_option(*command, "cost_history", options->cost_history,
             "A shared JSON Lines history of measured job costs, used besides the sweeps in --output_dir "
             "(docs/schedule.md, \"Cost model and packing\")");
  command->add_option("--continues", options->continues, "Set by a continuation job: the sweep it continues")
      ->group("");  // internal
  add_option(*command, "limit", options->limit, "Evaluate only the first N documents of each task (smoke tests; N > 0)");
  add_option(*command, "lock_wait", options->lock_wait,
             "Seconds to wait for another mill schedule submitting to the same output dir (default 60)");
  add_flag(*command, "skip_model_check", options->skip_model_check,
           "Do not look for model checkpoints from here (when the compute nodes see another Hugging Face cache or "
           "file system); model args are still checked");
  command->callback([options, &global] { run_schedule(*options, global); });
}

}  // namespace mill::cli
