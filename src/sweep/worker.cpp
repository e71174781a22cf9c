#include "mill/sweep/worker.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fmt/format.h>
#include <optional>

#include "mill/model/checkpoint_files.hpp"
#include "mill/sweep/cost_model.hpp"
#include "mill/eval/dataset.hpp"
#include "mill/eval/engine.hpp"
#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/job.hpp"
#include "mill/eval/job_lock.hpp"
#include "mill/model/model.hpp"
#include "mill/model/model_identity.hpp"
#include "mill/base/progress.hpp"
#include "mill/eval/results.hpp"
#include "mill/base/text.hpp"
#include "mill/base/host.hpp"
#include "mill/sweep/element_files.hpp"
#include "mill/sweep/manifest.hpp"

namespace mill {

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One line per job on stdout: model, task, n_shot, state, primary metric (± its standard error), samples, result file.
std::string result_line(const std::string& model, const std::string& task, int n_shot, const std::string& state,
                        const std::optional<ResultFile>& result, const std::filesystem::path& path) {
  if (!result) return fmt::format("{}\t{}\t{}-shot\t{}", model, task, n_shot, state);
  auto primary = result->primary_metric;
  if (primary.empty() && !result->metrics.empty()) primary = result->metrics.front().name;
  std::string value = "n/a";  // a metric the run could not compute
  for (const auto& metric : result->metrics) {
    if (metric.name != primary) continue;
    value = fmt::format("{:.4f}", metric.value);
    if (metric.standard_error) value += fmt::format(" ± {:.4f}", *metric.standard_error);
    break;
  }
  return fmt::format("{}\t{}\t{}-shot\t{}\t{}={}\tn={}\t{}", model, task, n_shot, state, primary, value,
                     result->n_samples, path.string());
}

// A hub model planned at a concrete revision is evaluated at that revision: `identity` takes it (so the key is the
// planned one) and the returned spec, given to the backend, names it. This node's cache must hold it.
ModelSpec pin_planned_revision(const ModelSpec& spec, ModelIdentity& identity, const std::string& planned) {
  if (planned.empty() || planned == kUnresolvedRevision || planned == "local" || planned == identity.revision) return spec;
  if (identity.is_checkpoint_folder() || spec.name == "mill-demo" || spec.backend() == "api") return spec;
  const auto hub_id = spec.backend() == "vllm" ? spec.arg("path").value_or("") : spec.arg("path").value_or(spec.name);
  try {
    locate_checkpoint(hub_id, planned);
  } catch (const Error&) {
    const auto hub = hub_cache_dir();
    throw Error(fmt::format("model {}: the sweep was planned at revision {}, which this node's Hugging Face cache ({}) "
                            "does not hold (its refs/main: {}); download that revision here (huggingface-cli download "
                            "{} --revision {}) or plan again from a host that sees this cache",
                            hub_id, planned, hub.empty() ? std::string("none") : hub.string(), identity.revision,
                            hub_id, planned),
                ExitCode::eval_failed);
  }
  identity.revision = planned;
  if (spec.arg("revision")) return spec;
  auto pinned = spec;
  pinned.args.emplace_back("revision", planned);
  return pinned;
}

}  // namespace

int run_eval_jobs(const std::string& model_text, const std::vector<EvalJobRequest>& requests, const TaskRegistry& registry,
                  const WorkerOptions& options, const std::optional<ElementFiles>& files) {
  const std::atomic<bool>& stop = options.stop ? *options.stop : install_stop_signal_handlers();
  std::optional<ProgressDisplay> own_display;
  if (!options.display) own_display.emplace(progress_settings_for_stderr(!options.progress));
  ProgressDisplay& display = options.display ? *options.display : *own_display;
  std::vector<ElementJobRecord> statuses;
  for (const auto& request : requests) statuses.push_back({request.task, request.n_shot});

  auto write_status = [&](const std::string& state, int exit_code, const std::string& message) {
    if (!files) return;
    try {
      write_element_status(files->sweep_dir, {files->element, state, exit_code, message, unix_now(), statuses,
                                              ::getpid(), host_name()});
    } catch (const Error& e) {
      spdlog::error("cannot write the status file: {}", e.what());
      // Without a status file the last heartbeat would keep saying "running"; removing it needs no space.
      remove_heartbeat(files->sweep_dir, files->element);
    }
  };

  double last_heartbeat = 0;
  auto heartbeat = [&](std::size_t job_index, const EvalProgress& progress, bool force) {
    if (!files) return;
    const double now = unix_now();
    if (!force && now - last_heartbeat < 2.0) return;
    last_heartbeat = now;
    try {
      write_heartbeat(files->sweep_dir, {files->element, ::getpid(), host_name(), static_cast<long long>(job_index),
                                         static_cast<long long>(requests.size()), requests[job_index].task,
                                         requests[job_index].n_shot, static_cast<long long>(progress.done_samples),
                                         static_cast<long long>(progress.total_samples),
                                         static_cast<long long>(now)});
    } catch (const Error& e) {
      spdlog::warn("cannot write the heartbeat: {}", e.what());
    }
  };

  // Everything that can be checked before the model loads is checked first: spec, task names, data directory.
  ModelSpec spec;
  ModelSpec backend_spec;  // `spec`, plus the planned revision when the plan pinned one
  ModelIdentity identity;
  std::string results_name;  // the results directory's model (a moved checkpoint folder keeps its results')
  std::vector<Job> jobs;
  std::vector<JobKey> keys;
  std::vector<bool> runnable(requests.size(), true);
  bool any_failed = false;
  bool any_busy = false;  // a job left to another process that holds its lock
  // A job that cannot run fails alone: reported, recorded in the status file, skipped; the others go on.
  auto fail_job = [&](std::size_t i, const std::string& message) {
    display.message("mill: error: " + message);
    statuses[i].state = "failed";
    statuses[i].message = message;
    runnable[i] = false;
    any_failed = true;
  };
  std::unique_ptr<ModelBackend> backend;
  double load_seconds = 0;  // model loading of this element, recorded in every result for the cost model
  const auto data_dir = resolve_data_dir(options.data_dir);
  try {
    spec = ModelSpec::parse(model_text);
    identity = identify_model(spec);
    backend_spec = pin_planned_revision(spec, identity, options.planned_model_revision);
    results_name = results_model(options.output_dir, identity);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      const auto& request = requests[i];
      const auto* task = registry.find(request.task);
      if (!task) {
        // A task that vanished since planning (renamed, or its extra path is gone) fails alone.
        std::string message;
        try {
          registry.expand({request.task});
          message = fmt::format("unknown task {}", quote_value(request.task));
        } catch (const Error& e) {
          message = e.what();
        }
        fail_job(i, message);
        jobs.push_back(Job{spec, nullptr, request.n_shot, request.limit});
        keys.emplace_back();
        continue;
      }
      try {
        check_task_definition(*task);  // a malformed task fails alone, before the model loads
      } catch (const Error& e) {
        fail_job(i, e.what());
      }
      Job job{spec, task, request.n_shot, request.limit, results_name == identity.spec ? "" : results_name};
      auto key = make_job_key(job, identity);
      if (!request.expected_key.empty() && request.expected_key != key.digest) {
        spdlog::warn("{} {}-shot: the job key computed now ({}) differs from the manifest's ({}); using the current "
                     "one (the task definition, model revision or mill's scorer changed since planning)",
                     request.task, request.n_shot, key.digest, request.expected_key);
        display.message(fmt::format("mill: {} {}-shot: job key changed since planning ({} -> {}); using the "
                                             "current key",
                                             request.task, request.n_shot, request.expected_key, key.digest));
      }
      jobs.push_back(job);
      keys.push_back(std::move(key));
    }
    // The api/vllm backends keep their request journal and server logs beside the results unless
    // MILL_REMOTE_DIR says otherwise (docs/backends.md).
    ::setenv("MILL_REMOTE_DIR", (options.output_dir / "remote").c_str(), 0);
    if (std::find(runnable.begin(), runnable.end(), true) == runnable.end()) {
      // Nothing can run: do not spend minutes loading the model.
      write_status("failed", static_cast<int>(ExitCode::eval_failed), "no job of this element can run");
      return static_cast<int>(ExitCode::eval_failed);
    }
    const auto loading = std::chrono::steady_clock::now();
    backend = make_backend(backend_spec);
    load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - loading).count();
  } catch (const Error& e) {
    for (auto& status : statuses) {
      status.state = "failed";
      status.message = e.what();
    }
    write_status("failed", static_cast<int>(ExitCode::eval_failed), e.what());
    throw;
  }

  // A task the backend cannot serve fails before any work, with a clear message; the other jobs still run.
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!runnable[i]) continue;
    try {
      require_capability(backend->capabilities(), *jobs[i].task, spec.to_string());
    } catch (const Error& e) {
      fail_job(i, e.what());
    }
  }

  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (!runnable[i]) continue;
    const auto& job = jobs[i];
    const auto path = result_path(options.output_dir, job);
    const auto already_done = [&] {
      if (check_result(path, keys[i]).state != ResultState::done) return false;
      statuses[i].state = "skipped";
      std::string problem;
      const auto text = read_file_if_exists(path);
      const auto result = text ? parse_result(*text, problem) : std::nullopt;
      display.result(result_line(spec.to_string(), job.task->name, job.n_shot, "done (already)", result, path));
      return true;
    };
    // SIGINT (Ctrl-C) is an interruption by the user; SIGUSR1/SIGTERM (or the caller's own flag) a preemption.
    const auto stop_state = [] { return stop_signal() == SIGINT ? std::string("interrupted") : std::string("preempted"); };
    const auto stopped_before_job = [&] {
      statuses[i].state = stop_state();
      write_status(stop_state(), stop_exit_code(stop_signal()),
                   stop_signal() == SIGINT ? "interrupted (Ctrl-C) before this job; rerun to resume"
                                           : "stopped by a signal before this job");
      return stop_exit_code(stop_signal());
    };
    const auto job_failed = [&](const std::string& message, const char* kind) {
      any_failed = true;
      statuses[i].state = "failed";
      statuses[i].message = message;
      display.end_job(false);
      display.message(fmt::format("mill: {}: {} {}-shot: {}", kind, job.task->name, job.n_shot, message));
      display.result(result_line(spec.to_string(), job.task->name, job.n_shot, "failed", std::nullopt, path));
    };
    if (already_done()) continue;
    if (stop.load()) return stopped_before_job();
    // One process per job: the lock is held until this job's result is written (or it fails). A job held elsewhere
    // for all of lock_wait is left to its holder rather than evaluated twice; the exit code then says "busy" (6),
    // never "done", so the element is not counted complete before the holder's result exists.
    std::optional<JobLock> lock;
    try {
      lock.emplace(job_lock_path(path));
      if (!lock->acquire(options.lock_wait, &stop)) {
        if (stop.load()) return stopped_before_job();
        any_busy = true;
        statuses[i].state = "busy";
        statuses[i].message = fmt::format("another mill process is evaluating this job ({}; lock {}); left to it",
                                          lock->holder(), lock->path().string());
        display.message(fmt::format("mill: error: {} {}-shot: {}", job.task->name, job.n_shot, statuses[i].message));
        display.result(result_line(spec.to_string(), job.task->name, job.n_shot, "busy", std::nullopt, path));
        continue;
      }
    } catch (const Error& e) {
      job_failed(e.what(), "error");
      continue;
    }
    if (already_done()) continue;  // the holder we waited for finished it
    statuses[i].state = "running";
    EvalSettings settings;
    settings.output_dir = options.output_dir;
    settings.data_dir = data_dir;
    settings.docs_per_batch = options.docs_per_batch;
    settings.stop = &stop;
    settings.model_checkpoint = identity.checkpoint_record();
    settings.gpu_type = options.gpu_type;
    settings.model_load_seconds = load_seconds;
    settings.on_progress = [&, i](const EvalProgress& progress) {
      heartbeat(i, progress, progress.done_samples == 0);
      display.update(progress.done_samples, progress.total_samples);
    };
    display.begin_job({spec.to_string(), job.task->name, job.n_shot, i + 1, jobs.size()});
    try {
      const auto outcome = run_job(*backend, job, keys[i], settings);
      if (outcome.state == JobState::preempted) {
        display.end_job(false);
        // The last heartbeat may be seconds old: `mill status` should say where the job really stopped.
        heartbeat(i, {outcome.resumed + outcome.evaluated, outcome.total}, true);
        const auto state = stop_state();
        statuses[i].state = state;
        // After Ctrl-C the command itself says, in one line, where it stopped and how to resume.
        if (state == "preempted") {
          display.message(fmt::format("mill: stopped by a signal during {} {}-shot after {}/{} samples; the "
                                               "journal is flushed and a rerun resumes",
                                               job.task->name, job.n_shot, outcome.resumed + outcome.evaluated,
                                               outcome.total));
        }
        display.result(result_line(spec.to_string(), job.task->name, job.n_shot, state, std::nullopt, path));
        write_status(state, stop_exit_code(stop_signal()),
                     state == "interrupted" ? "interrupted (Ctrl-C); rerun to resume" : "stopped by a signal; rerun to resume");
        return stop_exit_code(stop_signal());
      }
      display.end_job(true);
      statuses[i].state = "done";
      std::string problem;
      const auto result = result_from_json(outcome.result, problem);
      if (const auto observation = result ? cost_observation_from_result(*result) : std::nullopt) {
        statuses[i].cost = cost_observation_json(*observation);
      }
      remember_results_model(options.output_dir, identity, results_model_of(job));
      display.result(result_line(spec.to_string(), job.task->name, job.n_shot, "done", result, outcome.result_path));
    } catch (const Error& e) {
      job_failed(e.what(), "error");
    } catch (const std::exception& e) {
      job_failed(one_line(e.what()), "internal error");
    }
  }
  const int code = static_cast<int>(any_failed ? ExitCode::eval_failed : any_busy ? ExitCode::busy : ExitCode::ok);
  write_status(any_failed || any_busy ? "failed" : "completed", code,
               any_failed ? "some jobs failed; see jobs[].message"
               : any_busy ? "some jobs are being evaluated by another mill process; see jobs[].message"
                          : "all jobs done");
  return code;
}

int run_manifest_element(const std::filesystem::path& manifest_path, int element, const WorkerOptions& options) {
  const auto manifest = read_manifest(manifest_path);
  if (element < 0 || static_cast<std::size_t>(element) >= manifest.elements.size()) {
    throw Error(fmt::format("--element {} is outside the manifest's elements 0..{} ({})", element,
                            static_cast<long long>(manifest.elements.size()) - 1, manifest_path.string()));
  }
  const auto& entry = manifest.elements[static_cast<std::size_t>(element)];
  WorkerOptions effective = options;
  if (!entry.model_revision.empty()) effective.planned_model_revision = entry.model_revision;
  if (!effective.data_dir) effective.data_dir = manifest.data_dir();
  if (const auto gpu_type = manifest.gpu_type(); !gpu_type.empty()) effective.gpu_type = gpu_type;
  std::vector<EvalJobRequest> requests;
  for (const auto& job : entry.jobs) requests.push_back({job.task, job.n_shot, job.limit, job.key});
  const ElementFiles files{manifest_path.parent_path(), element};
  TaskRegistry registry;
  try {
    registry = TaskRegistry::load(manifest.extra_task_paths());
  } catch (const Error& e) {
    write_element_status(files.sweep_dir, {element, "failed", static_cast<int>(e.code()), e.what(), unix_now(), {},
                                           ::getpid(), host_name()});
    throw;
  }
  return run_eval_jobs(entry.model, requests, registry, effective, files);
}

}  // namespace mill
