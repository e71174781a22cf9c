#include "mill/sweep/schedule.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "mill/base/error.hpp"
#include "mill/base/stop_signal.hpp"
#include "mill/base/text.hpp"
#include "mill/eval/job_lock.hpp"
#include "mill/eval/migrate.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/sweep/cost_model.hpp"
#include "mill/sweep/manifest.hpp"
#include "mill/sweep/requeue.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/sweep/work_estimate.hpp"
#include "mill/sweep/worker.hpp"
#include "mill/base/atomic_file.hpp"

namespace mill {

namespace {

std::string problems_message(const std::vector<PreflightProblem>& problems, const std::string& outcome) {
  if (problems.size() == 1) return fmt::format("{} ({})", problems.front().message, outcome);
  return fmt::format("preflight found {} problems, listed above ({})", problems.size(), outcome);
}

// --local: one sweep directory like a submitted one, every element run here in turn by the worker code. Jobs are
// numbered across the sweep on the progress display ("job 4/9").
void run_locally(ScheduleOutcome& outcome, const std::vector<std::vector<const PlannedJob*>>& elements,
                 nlohmann::json settings, const ScheduleRequest& request, ProgressDisplay& display) {
  // From here on Ctrl-C and SIGTERM stop between batches, leaving a sweep that a rerun resumes.
  const auto& stop = install_stop_signal_handlers();
  const auto sweep = create_sweep(request.output_dir);
  settings["sweep_id"] = sweep.dir.filename().string();
  write_manifest(sweep.manifest(), make_manifest(elements, settings));
  int jobs = 0;
  for (const auto& element : elements) jobs += static_cast<int>(element.size());
  write_local_submission(sweep, static_cast<int>(elements.size()), jobs, request.command_line);

  WorkerOptions worker;
  worker.output_dir = request.output_dir;
  worker.stop = &stop;
  worker.display = &display;
  int exit_code = 0, failed = 0, ran = 0;
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
      display.message(fmt::format("mill: error: element {}: {}", index, e.what()));
      code = static_cast<int>(ExitCode::eval_failed);
      if (first_failure.empty()) first_failure = e.what();
    }
    ++ran;
    if (code == static_cast<int>(ExitCode::preempted) || code == static_cast<int>(interrupted_exit_code())) {
      exit_code = code;
      break;
    }
    if (code != 0) {
      ++failed;
      if (first_failure.empty()) first_failure = fmt::format("element {} exited with {}", index, code);
    }
  }
  if (exit_code == 0 && failed > 0) exit_code = static_cast<int>(ExitCode::eval_failed);
  auto& record = outcome.submission;
  record = {{"sweep_id", sweep.dir.filename().string()}, {"sweep_dir", sweep.dir.string()},
            {"mode", "local"}, {"elements", elements.size()}, {"jobs", jobs}, {"elements_run", ran},
            {"elements_failed", failed}};
  if (exit_code == static_cast<int>(ExitCode::preempted)) {
    record["failed_message"] = "stopped by a signal; run the same mill schedule --local again to resume";
  } else if (exit_code == static_cast<int>(interrupted_exit_code())) {
    const auto where = display.where();
    record["failed_message"] = fmt::format("interrupted (Ctrl-C){}; the journal is flushed; resume with: {}",
                                           where.empty() ? "" : " during " + where, own_command_text());
  } else if (failed > 0) {
    record["failed_message"] = fmt::format("{} of {} element(s) failed ({}); status files in {}", failed,
                                           elements.size(), first_failure, (sweep.dir / "status").string());
  }
  outcome.local_exit_code = exit_code;
  outcome.messages.push_back(fmt::format("--local: ran {} of {} element(s) with {} job(s) here; sweep {}", ran,
                                         elements.size(), jobs, sweep.dir.filename().string()));
}

// What this sweep is planned with, recorded in its manifest so that collect --check can repeat it exactly.
ScheduleSettings schedule_settings(const ScheduleRequest& request, const std::string& profile) {
  ScheduleSettings settings;
  settings.output_dir = request.output_dir;
  settings.cache_dir = request.cache_dir;
  settings.data_dir = request.data_dir;
  settings.venv_path = request.venv_path;
  for (const auto& path : request.extra_task_paths) settings.extra_task_paths.push_back(path.string());
  settings.cluster = profile;
  settings.local = request.local;
  settings.minutes_per_eval = request.minutes_per_eval;
  settings.evals_per_element = request.evals_per_element;
  settings.max_requeues = request.max_requeues;
  settings.skip_model_check = request.skip_model_check;
  settings.cost_history = request.cost_history;
  return settings;
}

// A continuation job that finds as much left to do as when its sweep was submitted (every job of its arrays
// failed) ends the chain, so a sweep whose jobs cannot succeed does not resubmit itself forever.
void stop_a_chain_without_progress(const ScheduleRequest& request, std::size_t jobs_left_now) {
  const SweepPaths sweep{sweeps_root(request.output_dir) / request.continues};
  const auto path = sweep.submission();
  std::vector<std::string> unreadable;
  const auto record = read_submission_record(sweep, &unreadable);
  if (record.is_null()) {
    throw Error(fmt::format("--continues {}: {}", request.continues,
                            unreadable.empty() ? path.string() + " is missing or not JSON" : unreadable.front()));
  }
  const auto submitted = record.value("jobs", 0);
  int left_then = 0;
  if (const auto it = record.find("continuation"); it != record.end() && it->is_object()) left_then = it->value("jobs_left", 0);
  if (static_cast<int>(jobs_left_now) >= submitted + left_then) {
    throw Error(fmt::format("continuation of sweep {}: none of its {} job(s) finished ({} still to run), so the chain "
                            "stops here; see `mill status` and the logs in {}, then run mill schedule again by hand",
                            request.continues, submitted, jobs_left_now, (path.parent_path() / "logs").string()),
                ExitCode::eval_failed);
  }
}

// Submits what fits now; the rest is the continuation's (or the next schedule's).
void submit(ScheduleOutcome& outcome, const ScheduleRequest& request, const nlohmann::json& settings,
            const std::vector<std::vector<const PlannedJob*>>& to_submit) {
  const auto& profile = *outcome.choice.profile;
  const auto& elements = outcome.elements;
  SubmitRequest submit;
  submit.elements = to_submit;
  submit.arrays = outcome.array_requests;
  submit.sbatch = outcome.sbatch;
  submit.settings = settings;
  submit.command_line = request.command_line;
  submit.continues = request.continues;
  submit.models = request.models;
  submit.tasks = request.tasks;
  if (outcome.continuing) {
    ContinuationRequest continuation;
    continuation.before_schedule = {outcome.sbatch.mill_binary.string()};
    for (auto& word : outcome.planned_with.global_arguments()) continuation.before_schedule.push_back(std::move(word));
    if (!request.n_shots_text.empty()) continuation.schedule_options = {"--n_shots", request.n_shots_text};
    if (request.limit) {
      continuation.schedule_options.insert(continuation.schedule_options.end(), {"--limit", std::to_string(*request.limit)});
    }
    for (auto& word : outcome.planned_with.schedule_arguments()) continuation.schedule_options.push_back(std::move(word));
    continuation.jobs_left = static_cast<int>(outcome.deferred_jobs);
    continuation.elements_left = static_cast<int>(elements.size() - to_submit.size());
    submit.continuation = continuation;
  }
  auto result = submit_sweep(submit);
  outcome.scripts = std::move(result.scripts);  // as written, with the real sweep paths
  outcome.submission = {{"sweep_id", result.sweep_id},
                        {"sweep_dir", result.sweep.dir.string()},
                        {"array_job_id", result.array_job_id},
                        {"array_job_ids", result.array_job_ids},
                        {"elements", result.elements},
                        {"jobs", result.jobs},
                        {"deferred_elements", elements.size() - to_submit.size()},
                        {"deferred_jobs", outcome.deferred_jobs},
                        {"continuation_job_id", result.continuation_job_id.empty()
                                                    ? nlohmann::json()
                                                    : nlohmann::json(result.continuation_job_id)}};
  auto& messages = outcome.messages;
  messages.push_back(fmt::format("submitted array job{} {}: {} element(s) with {} job(s), at most {} running at once "
                                 "per array; sweep {} (logs in {}); follow it with `mill status`",
                                 result.array_job_ids.size() > 1 ? "s" : "", join(result.array_job_ids, ", "),
                                 result.elements, result.jobs, profile.max_array_len, result.sweep_id,
                                 result.sweep.logs().string()));
  for (const auto& warning : result.warnings) messages.push_back(warning);
  if (!result.continuation_job_id.empty()) {
    messages.push_back(fmt::format("not submitted yet: {} element(s) with {} job(s), because of the {}; continuation "
                                   "job {} submits them when these arrays end (--no_continuation to do it by hand)",
                                   elements.size() - to_submit.size(), outcome.deferred_jobs, outcome.budget.limited_by,
                                   result.continuation_job_id));
  } else if (to_submit.size() < elements.size()) {
    messages.push_back(fmt::format("not submitted yet: {} element(s) with {} job(s), because of the {}; run the same "
                                   "mill schedule again once the queue drains (it submits only what is still missing)",
                                   elements.size() - to_submit.size(), outcome.deferred_jobs, outcome.budget.limited_by));
  }
}

}  // namespace

ScheduleProblems::ScheduleProblems(std::vector<PreflightProblem> found, const std::string& outcome)
    : Error(problems_message(found, outcome)), problems(std::move(found)) {}

std::vector<const PreflightProblem*> ordered_problems(const std::vector<PreflightProblem>& problems) {
  std::vector<const PreflightProblem*> ordered;
  for (const char* area : {"task", "data", "model", "environment"}) {
    for (const auto& problem : problems) {
      if (problem.area == area) ordered.push_back(&problem);
    }
  }
  return ordered;
}

const PreflightProblem* problem_of(const PlannedJob& job, const std::vector<PreflightProblem>& problems) {
  for (const auto& problem : problems) {
    if (!problem.model.empty() && problem.model == job.job.model.to_string()) return &problem;
    if (std::find(problem.tasks.begin(), problem.tasks.end(), job.job.task->name) != problem.tasks.end()) return &problem;
  }
  return nullptr;
}

ScheduleOutcome schedule_sweep(const ScheduleRequest& request, const ScheduleHooks& hooks) {
  ScheduleOutcome outcome;
  // Choose the profile before touching results, so a configuration error shows up first. Only a submission needs
  // the user's own copy of the profiles; a dry run or --local can go on with the bundled ones.
  outcome.clusters = load_cluster_config(request.cache_dir, request.dry_run || request.local ? WithoutCopy::use_bundled
                                                                                            : WithoutCopy::fail);
  const auto& clusters = outcome.clusters;
  if (!clusters.not_created.empty()) {
    spdlog::warn("{}; using the bundled cluster profiles for this {}", clusters.not_created,
                 request.dry_run ? "dry run" : "--local run");
  }
  if (clusters.created && hooks.profiles_created) hooks.profiles_created(clusters.path);
  outcome.choice = request.local ? ProfileChoice{&clusters.profiles.front(), "--local: no SLURM"}
                                 : choose_profile(clusters, request.cluster, current_hostname());
  const auto& profile = *outcome.choice.profile;

  auto& problems = outcome.problems;
  problems = request.option_problems;
  std::error_code unreadable;  // counts as missing
  if (!request.venv_path && !request.local && !profile.venv_path.empty() && profile.container_image.empty() &&
      !std::filesystem::exists(profile.venv_path / "bin" / "activate", unreadable)) {
    // Inside a container only the image can tell.
    problems.push_back({"environment", "", {},
                        fmt::format("{}: profile {}, field `venv_path`: {} has no bin/activate (expected a virtual "
                                    "environment directory; --venv_path overrides it)",
                                    clusters.path.string(), profile.name, quote_value(profile.venv_path.string()))});
  }
  outcome.registry = TaskRegistry::load(request.extra_task_paths);
  const auto& registry = outcome.registry;

  // Each model spec and task name on its own, so that every bad one is reported, not only the first.
  PlanRequest plan_request;
  PreflightRequest preflight;
  std::set<std::string> identities;  // each model is checked once, however it is spelled
  for (const auto& text : request.models) {
    try {
      auto spec = ModelSpec::parse(text);
      plan_request.models.push_back(text);
      if (identities.insert(spec.identity()).second) preflight.models.push_back(std::move(spec));
    } catch (const Error& e) {
      problems.push_back({"model", text, {}, e.what()});
    }
  }
  for (const auto& name : request.tasks) {
    try {
      for (const auto* task : registry.expand({name})) {
        if (std::find(preflight.tasks.begin(), preflight.tasks.end(), task) == preflight.tasks.end()) {
          preflight.tasks.push_back(task);
        }
      }
      plan_request.tasks.push_back(name);
    } catch (const Error& e) {
      problems.push_back({"task", "", {name}, e.what()});
    }
  }
  plan_request.n_shots = request.n_shots;
  if (request.limit && *request.limit > 0) plan_request.limit = request.limit;
  plan_request.output_dir = request.output_dir;
  preflight.n_shots = plan_request.n_shots;
  preflight.data_dir = request.data_dir;
  preflight.output_dir = plan_request.output_dir;
  preflight.check_model_files = !request.skip_model_check;
  if (!request.local) preflight.profile = &profile;
  for (auto& problem : run_preflight(preflight)) problems.push_back(std::move(problem));
  if (!problems.empty() && !request.dry_run) throw ScheduleProblems(problems, "nothing was submitted or run");
  if (plan_request.models.empty() || plan_request.tasks.empty()) return outcome;  // only the problems to show
  outcome.planned = true;

  // One submitter per output dir, from reading the results to recording the array: a second schedule waits here,
  // then plans with the first one's array in flight (docs/schedule.md, "One submitter at a time").
  std::optional<JobLock> submit_lock;
  auto& messages = outcome.messages;
  if (!request.dry_run && !request.local) {
    // A lock that cannot be created is a path problem, like a sweep directory that cannot be (exit 2).
    submit_lock.emplace(submit_lock_path(request.output_dir), ExitCode::usage);
    if (!submit_lock->acquire(std::chrono::seconds(request.lock_wait_seconds))) {
      throw Error(fmt::format("another mill schedule is submitting to {} ({}; lock {}); nothing submitted: run this "
                              "again when it has finished (it will see that sweep in flight)",
                              quote_value(request.output_dir.string()), submit_lock->holder(),
                              submit_lock->path().string()),
                  ExitCode::busy);
    }
    for (auto& line : reconcile_submissions(request.output_dir)) messages.push_back(std::move(line));
  }

  outcome.plan = build_plan(plan_request, registry);
  const auto& plan = outcome.plan;
  outcome.pending = plan.pending();
  const auto& pending = outcome.pending;
  const bool submitting = !request.dry_run && !request.local && !pending.empty();

  // Jobs that an earlier sweep still has in the queue are not submitted twice. Only a real submission asks
  // squeue, so --dry_run stays fast and works away from the cluster.
  std::vector<QueueEntry> queue;
  if (submitting) {
    std::string error;
    auto answer = query_user_queue(&error);
    if (!answer) {
      throw Error(fmt::format("cannot read the queue ({}); nothing submitted", error), ExitCode::submit_failed);
    }
    queue = std::move(*answer);
    // A continuation job plans from inside SLURM: its own job is not part of the sweep's queue budget.
    if (const char* self = std::getenv("SLURM_JOB_ID"); self && *self && !request.continues.empty()) {
      std::erase_if(queue, [&](const QueueEntry& entry) { return entry.array_job_id == self; });
    }
    outcome.in_flight = jobs_in_flight(request.output_dir, queue);
  }
  for (const auto* job : pending) {
    if (!outcome.in_flight.count(job->key.digest)) outcome.to_run.push_back(job);
  }
  if (!request.continues.empty() && !request.dry_run) stop_a_chain_without_progress(request, outcome.to_run.size());
  // A dry run with problems still shows its plan: values that failed the preflight are replaced by the defaults.
  const bool values_valid = problems.empty();
  WorkEstimator work(request.cache_dir, request.data_dir);
  const CostModel cost(read_cost_history(request.output_dir, request.cost_history));
  ArrayPlanRequest arrays_request;
  arrays_request.profile = &profile;
  arrays_request.registry = &registry;
  arrays_request.requested_tasks = plan_request.tasks;
  if (values_valid) {
    arrays_request.minutes_per_eval = request.minutes_per_eval;
    arrays_request.evals_per_element = request.evals_per_element;
  }
  arrays_request.read_checkpoints = !request.skip_model_check;
  arrays_request.work = &work;
  arrays_request.cost = &cost;
  outcome.arrays = plan_arrays(outcome.to_run, arrays_request);
  work.save();
  outcome.elements = outcome.arrays.all_elements();
  const auto& elements = outcome.elements;

  // What goes to SLURM now: the budget's share of the elements, one slot kept for the continuation job when the
  // rest must wait. A dry run assumes an empty queue (it does not ask squeue).
  outcome.budget = submit_budget(profile, static_cast<int>(queue.size()), static_cast<int>(elements.size()));
  outcome.continuing =
      !request.local && !request.no_continuation && outcome.budget.elements < static_cast<int>(elements.size());
  if (outcome.continuing && outcome.budget.elements > 0) --outcome.budget.elements;
  outcome.submit_count = request.local ? elements.size() : static_cast<std::size_t>(outcome.budget.elements);
  const std::vector<std::vector<const PlannedJob*>> to_submit(elements.begin(), elements.begin() + outcome.submit_count);
  for (auto it = elements.begin() + outcome.submit_count; it != elements.end(); ++it) outcome.deferred_jobs += it->size();
  for (std::size_t a = 0, first = 0; a < outcome.arrays.arrays.size() && first < outcome.submit_count; ++a) {
    const auto& array = outcome.arrays.arrays[a];
    const auto count = std::min(array.elements.size(), outcome.submit_count - first);
    outcome.array_requests.push_back({static_cast<int>(first), static_cast<int>(count), array.shape, array.time_minutes,
                                      array.explanation});
    first += array.elements.size();
  }

  auto& sbatch = outcome.sbatch;
  sbatch.profile = &profile;
  sbatch.mill_binary = request.mill_binary;
  sbatch.output_dir = request.output_dir;
  sbatch.cache_dir = request.cache_dir;
  sbatch.sweep_dir = request.output_dir / "sweeps" / "<sweep-id>";
  sbatch.manifest = sbatch.sweep_dir / "manifest.json";
  if (request.venv_path) {
    sbatch.venv_path = *request.venv_path;
  } else if (!profile.venv_path.empty() && !request.local) {
    sbatch.venv_path = profile.venv_path;  // the profile's default (checked by the preflight)
  }

  outcome.planned_with = schedule_settings(request, request.local ? "" : profile.name);
  nlohmann::json settings = {{"extra_task_paths", outcome.planned_with.extra_task_paths},
                             {"max_requeues", request.max_requeues.value_or(kDefaultMaxRequeues)},
                             {"schedule", outcome.planned_with.to_json()}};
  if (request.data_dir) settings["data_dir"] = request.data_dir->string();
  if (!request.local && !profile.gpu_type.empty()) settings["gpu_type"] = profile.gpu_type;  // for the results' provenance

  outcome.summary = fmt::format(
      "{} job(s) = {} model(s) × {} task(s) × n_shots; {} to run ({} missing, {} stale, {} corrupt), {} done (skipped)",
      plan.jobs.size(), plan_request.models.size(), registry.expand(plan_request.tasks).size(), pending.size(),
      plan.count(ResultState::missing), plan.count(ResultState::stale), plan.count(ResultState::corrupt),
      plan.count(ResultState::done));

  if (const auto legacy = result_directories_to_migrate(request.output_dir); !legacy.empty()) {
    messages.push_back(fmt::format("{} results director(ies) use an earlier spelling of their model (results/{} is "
                                   "now results/{}); schedule and collect look only under today's spelling: run `mill "
                                   "migrate` once to move them",
                                   legacy.size(), legacy.front().first, legacy.front().second));
  }
  if (!outcome.in_flight.empty()) {
    std::set<std::string> arrays;
    for (const auto& entry : outcome.in_flight) arrays.insert(entry.second.array_job_id);
    std::size_t count = 0;
    for (const auto* job : pending) count += outcome.in_flight.count(job->key.digest);
    messages.push_back(fmt::format("{} job(s) already queued or running in earlier sweeps (array job(s) {}): not submitted again",
                                   count, join(std::vector<std::string>(arrays.begin(), arrays.end()), ", ")));
  }

  outcome.running_locally = request.local && !to_submit.empty() && !request.dry_run;
  if (outcome.running_locally) {
    if (hooks.before_local_run) hooks.before_local_run(outcome);
    std::optional<ProgressDisplay> own_display;
    if (!hooks.display) own_display.emplace(request.progress);
    run_locally(outcome, to_submit, settings, request, hooks.display ? *hooks.display : *own_display);
  } else if (submitting && to_submit.empty() && !elements.empty()) {
    messages.push_back(fmt::format("nothing submitted: {}; run mill schedule again when your queue has room (it "
                                   "submits only what is still missing)",
                                   outcome.budget.limited_by));
  } else if (submitting && !to_submit.empty()) {
    submit(outcome, request, settings, to_submit);
  } else if (!request.local) {
    outcome.scripts = render_array_scripts(sbatch, outcome.array_requests);  // a dry run's, as they will be submitted
  }
  return outcome;
}

}  // namespace mill
