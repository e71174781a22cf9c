#include "mill/sweep/sweep_status.hpp"

#include <algorithm>
#include <ctime>
#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/job.hpp"
#include "mill/eval/results.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/base/shell.hpp"
#include "mill/sweep/element_files.hpp"
#include "mill/sweep/manifest.hpp"
#include "mill/base/json_fields.hpp"

namespace mill {

std::string to_string(ElementState state) {
  switch (state) {
    case ElementState::queued: return "queued";
    case ElementState::running: return "running";
    case ElementState::completed: return "completed";
    case ElementState::failed: return "failed";
    case ElementState::preempted: return "preempted";
    case ElementState::unknown: return "unknown";
    case ElementState::interrupted: return "interrupted";
  }
  return "?";
}

std::map<ElementState, int> SweepStatus::counts() const {
  std::map<ElementState, int> counts;
  for (const auto& element : elements) ++counts[element.state];
  return counts;
}

bool SweepStatus::finished() const {
  return std::none_of(elements.begin(), elements.end(), [](const ElementStatus& element) {
    return element.state == ElementState::queued || element.state == ElementState::running ||
           element.state == ElementState::unknown;
  });
}

namespace {

std::string progress_text(const Heartbeat& heartbeat, long long now) {
  std::vector<std::string> parts;
  if (heartbeat.job_index >= 0 && heartbeat.jobs_total > 0) {
    // job_index is 0-based in the heartbeat; people count from 1.
    parts.push_back(fmt::format("job {}/{}", heartbeat.job_index + 1, heartbeat.jobs_total));
  }
  if (!heartbeat.task.empty()) {
    parts.push_back(heartbeat.n_shot >= 0 ? fmt::format("{} {}-shot", heartbeat.task, heartbeat.n_shot) : heartbeat.task);
  }
  const auto done = heartbeat.done_samples, total = heartbeat.total_samples;
  if (done >= 0 && total > 0) {
    parts.push_back(fmt::format("{}/{} samples ({:.0f}%)", done, total, 100.0 * static_cast<double>(done) / static_cast<double>(total)));
  }
  if (heartbeat.updated_at >= 0) parts.push_back(fmt::format("heartbeat {} s ago", std::max(0LL, now - heartbeat.updated_at)));
  if (!heartbeat.host.empty()) parts.push_back("on " + heartbeat.host);
  return join(parts, ", ");
}

bool is_pending(const std::string& state) {
  return state == "PENDING" || state == "REQUEUED" || state == "REQUEUE_HOLD" || state == "REQUEUE_FED" ||
         state == "RESV_DEL_HOLD" || state == "SPECIAL_EXIT";
}

// Whether every job of a manifest element has a valid result whose key is the job's planned key.
bool element_results_on_disk(const std::filesystem::path& output_dir, const ManifestElement& element,
                             const TaskRegistry& registry) {
  try {
    const auto jobs = element_jobs(element, registry, output_dir);
    if (jobs.empty() || jobs.size() != element.jobs.size()) return false;  // an unknown task is not done
    for (const auto& [job, planned] : jobs) {
      if (planned->key.empty()) return false;
      const auto text = read_file_if_exists(result_path(output_dir, job));
      if (!text) return false;
      std::string problem;
      const auto result = parse_result(*text, problem);
      if (!result || result->key != planned->key) return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;  // a manifest or result that cannot be read proves nothing done
  }
}

}  // namespace

ElementStatus combine_element_status(int element, const std::optional<ElementStatusRecord>& status_file,
                                     const std::optional<Heartbeat>& heartbeat,
                                     bool asked_slurm, const std::optional<std::string>& queue_state,
                                     const std::string& queue_reason, const std::string& final_state, long long now) {
  ElementStatus out;
  out.element = element;
  out.done_samples = heartbeat ? heartbeat->done_samples : -1;
  out.total_samples = heartbeat ? heartbeat->total_samples : -1;
  const auto file_state = status_file ? status_file->state : std::string();
  const auto message = status_file ? one_line(status_file->message) : std::string();

  // SLURM's queue wins while it still has the element: a requeued element has an old "preempted" file.
  if (asked_slurm && queue_state) {
    out.slurm_state = *queue_state;
    if (is_pending(*queue_state)) {
      out.state = ElementState::queued;
      out.detail = file_state == "preempted" ? "requeued after the pre-walltime stop" : "";
      if (!queue_reason.empty() && queue_reason != "None") {
        out.detail += (out.detail.empty() ? "" : "; ") + std::string("pending: ") + queue_reason;
      }
    } else {
      out.state = ElementState::running;
      out.detail = heartbeat ? progress_text(*heartbeat, now) : "starting (no heartbeat yet)";
    }
    return out;
  }
  if (!file_state.empty()) {
    const auto exit_code = status_file->exit_code;
    if (file_state == "completed") {
      out.state = ElementState::completed;
      const auto jobs = status_file->jobs.size();
      out.detail = jobs > 0 ? fmt::format("{} job(s) finished", jobs) : message;
    } else if (file_state == "preempted") {
      out.state = ElementState::preempted;
      out.detail = "stopped before the time limit and not requeued; the next mill schedule resubmits what is missing" +
                   (message.empty() ? std::string() : " (" + message + ")");
    } else {
      out.state = ElementState::failed;
      // The worker's summary points at jobs[]; the first failed job's own message says what went wrong.
      std::string job_message;
      for (const auto& job : status_file->jobs) {
        if (job.state != "failed" || job.message.empty()) continue;
        job_message = fmt::format("{} {}-shot: {}", job.task, job.n_shot, one_line(job.message));
        break;
      }
      out.detail = fmt::format("exit {}{}{}", exit_code, message.empty() ? "" : ": " + message,
                               job_message.empty() ? "" : "; " + job_message);
    }
    return out;
  }
  if (asked_slurm) {
    // Not in the queue and no status file: the element ended without the worker writing its result (time
    // limit, cancelled, out of memory, killed, or the script failed before mill started).
    out.state = ElementState::failed;
    out.slurm_state = final_state;
    out.detail = fmt::format("ended without a status file{}{}",
                             final_state.empty() ? "" : " (SLURM: " + final_state + ")",
                             heartbeat ? "; last heartbeat: " + progress_text(*heartbeat, now) : "");
    return out;
  }
  if (heartbeat) {
    const bool fresh = heartbeat->updated_at >= 0 && now - heartbeat->updated_at <= kStaleHeartbeatSeconds;
    out.state = fresh ? ElementState::running : ElementState::unknown;
    out.detail = progress_text(*heartbeat, now) + (fresh ? "" : " (stale; SLURM not asked)");
    return out;
  }
  out.state = ElementState::unknown;
  out.detail = "no status or heartbeat file yet; SLURM not asked";
  return out;
}

ElementStatus combine_local_element_status(int element, const std::optional<ElementStatusRecord>& status_file,
                                           const std::optional<Heartbeat>& heartbeat,
                                           Liveness run, bool results_on_disk, long long now) {
  const auto file_state = status_file ? status_file->state : std::string();
  const bool running_now = run == Liveness::alive && file_state.empty();
  ElementStatus out;
  out.element = element;
  out.done_samples = heartbeat ? heartbeat->done_samples : -1;
  out.total_samples = heartbeat ? heartbeat->total_samples : -1;
  if (file_state != "completed" && !running_now && results_on_disk) {
    out.state = ElementState::completed;
    out.detail = "every job's result is on disk (finished by a later run)";
    return out;
  }
  const auto where = heartbeat ? progress_text(*heartbeat, now) : std::string();
  if (file_state == "interrupted" || file_state == "preempted") {
    // No SLURM resubmits a local sweep: whatever stopped it, rerunning its command resumes it.
    out.state = ElementState::interrupted;
    out.detail = std::string(file_state == "interrupted" ? "interrupted (Ctrl-C)" : "stopped by a signal") +
                 (where.empty() ? "" : " during " + where);
    return out;
  }
  if (!file_state.empty() || run == Liveness::unknown) {
    return combine_element_status(element, status_file, heartbeat, false, std::nullopt, "", "", now);
  }
  if (run == Liveness::alive) {
    out.state = heartbeat ? ElementState::running : ElementState::queued;
    out.detail = heartbeat ? where : "waiting for its turn in the local run";
    return out;
  }
  out.state = ElementState::interrupted;
  out.detail = heartbeat ? "the local run ended during " + where
                                     : "the local run ended before this element started";
  return out;
}

std::vector<SweepStatus> read_sweep_statuses(const std::filesystem::path& output_dir, const StatusOptions& options) {
  std::vector<SweepStatus> sweeps;
  const long long now = static_cast<long long>(std::time(nullptr));
  std::map<std::string, TaskRegistry> registries;  // by extra_task_paths: most sweeps share the built-in tasks
  for (const auto& paths : list_sweeps(output_dir)) {
    SweepStatus sweep;
    sweep.id = paths.dir.filename().string();
    if (!options.sweeps.empty() &&
        std::find(options.sweeps.begin(), options.sweeps.end(), sweep.id) == options.sweeps.end()) {
      continue;
    }
    sweep.dir = paths.dir;
    const auto submission = read_submission_record(paths, &sweep.unreadable);
    Manifest manifest;
    if (std::filesystem::exists(paths.manifest())) {
      try {
        manifest = read_manifest(paths.manifest());
      } catch (const Error& e) {
        sweep.unreadable.push_back(e.what());
      }
    }
    sweep.mode = string_field(submission, "mode");
    sweep.array_job_id = string_field(submission, "array_job_id");
    sweep.array_job_ids = submitted_array_ids(submission);
    sweep.continues = string_field(submission, "continues");
    if (const auto& continuation = member(submission, "continuation"); continuation.is_object()) {
      sweep.continuation_job_id = string_field(continuation, "job_id");
      sweep.continuation_jobs_left = continuation.value("jobs_left", 0);
    }
    sweep.submitted_at = string_field(submission, "submitted_at");
    sweep.profile = string_field(submission, "profile");
    if (sweep.mode.empty()) sweep.mode = submission.is_null() ? "unsubmitted" : "slurm";
    const bool local = sweep.mode == "local";
    if (local) {
      sweep.local_process = process_from_fields(submission);
      sweep.local_run = process_liveness(sweep.local_process);
      std::vector<std::string> words;
      if (submission.contains("command") && submission["command"].is_array()) {
        for (const auto& word : submission["command"]) {
          if (word.is_string()) words.push_back(shell_word(word.get<std::string>()));
        }
      }
      const auto cwd = string_field(submission, "cwd");
      if (!words.empty()) sweep.resume_command = one_line((cwd.empty() ? "" : "cd " + shell_word(cwd) + " && ") + join(words, " "));
    }

    const auto& elements = manifest.elements;
    std::vector<std::optional<ElementStatusRecord>> status_files;
    std::vector<std::optional<Heartbeat>> heartbeats;
    bool settled_by_files = true;  // every element has a final status file that SLURM cannot have overtaken
    for (int index = 0; index < static_cast<int>(elements.size()); ++index) {
      status_files.push_back(read_element_status(paths.dir, index, sweep.unreadable));
      heartbeats.push_back(read_heartbeat(paths.dir, index, sweep.unreadable));
      const auto state = status_files.back() ? status_files.back()->state : std::string();
      if (state.empty() || state == "preempted") settled_by_files = false;
    }
    // Finished sweeps are reported from their files alone, so old sweeps cost no squeue call.
    std::map<int, QueueEntry> queued;
    std::map<int, std::string> final_states;
    if (options.ask_slurm && sweep.mode == "slurm" && !sweep.array_job_ids.empty() && !settled_by_files) {
      for (const auto& array_id : sweep.array_job_ids) {
        if (const auto entries = query_array_queue(array_id)) {
          sweep.asked_slurm = true;
          for (const auto& entry : *entries) {
            // Element indices are the manifest's in every array of the sweep.
            if (entry.array_job_id == array_id && entry.array_task_id >= 0) queued[entry.array_task_id] = entry;
          }
        } else {
          sweep.slurm_unavailable = true;
        }
      }
    }
    bool fetched_final_states = false;
    // Local sweeps whose run is not going on: their unfinished elements may have been finished by a later run.
    const TaskRegistry* registry = nullptr;
    auto results_on_disk = [&](int index) {
      if (!registry) {
        const auto extra_paths = manifest.extra_task_paths();
        const auto cache_key = manifest.settings.value("extra_task_paths", nlohmann::json::array()).dump();
        auto found = registries.find(cache_key);
        if (found == registries.end()) {
          TaskRegistry loaded;
          try {
            loaded = TaskRegistry::load(extra_paths);
          } catch (const Error&) {
            loaded = TaskRegistry::load();  // a vanished extra path: its tasks count as not done
          }
          found = registries.emplace(cache_key, std::move(loaded)).first;
        }
        registry = &found->second;
      }
      return element_results_on_disk(output_dir, elements[index], *registry);
    };
    for (int index = 0; index < static_cast<int>(elements.size()); ++index) {
      const auto& status_file = status_files[index];
      const auto& heartbeat = heartbeats[index];
      const auto in_queue = queued.find(index);
      std::optional<std::string> queue_state;
      std::string queue_reason;
      if (in_queue != queued.end()) {
        queue_state = in_queue->second.state;
        queue_reason = in_queue->second.reason;
      }
      if (sweep.asked_slurm && !queue_state && !status_file && !fetched_final_states) {
        // Only elements that vanished without a status file need scontrol's memory of how they ended.
        for (const auto& array_id : sweep.array_job_ids) final_states.merge(query_array_final_states(array_id));
        fetched_final_states = true;
      }
      const auto final_state = final_states.count(index) ? final_states[index] : std::string();
      const auto file_state = status_file ? status_file->state : std::string();
      const bool may_be_done_elsewhere =
          file_state != "completed" && !(sweep.local_run == Liveness::alive && file_state.empty());
      auto status = local ? combine_local_element_status(index, status_file, heartbeat, sweep.local_run,
                                                         may_be_done_elsewhere && results_on_disk(index), now)
                          : combine_element_status(index, status_file, heartbeat, sweep.asked_slurm, queue_state,
                                                   queue_reason, final_state, now);
      status.model = elements[index].model;
      status.jobs = static_cast<int>(elements[index].jobs.size());
      sweep.elements.push_back(std::move(status));
    }
    sweeps.push_back(std::move(sweep));
  }
  return sweeps;
}

nlohmann::json to_json(const std::vector<SweepStatus>& sweeps) {
  nlohmann::json out = {{"schema", "mill.status/1"}, {"sweeps", nlohmann::json::array()}};
  for (const auto& sweep : sweeps) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto state : {ElementState::queued, ElementState::running, ElementState::completed, ElementState::failed,
                             ElementState::preempted, ElementState::interrupted, ElementState::unknown}) {
      counts[to_string(state)] = 0;
    }
    for (const auto& [state, count] : sweep.counts()) counts[to_string(state)] = count;
    nlohmann::json elements = nlohmann::json::array();
    for (const auto& element : sweep.elements) {
      elements.push_back({{"element", element.element},
                          {"model", element.model},
                          {"jobs", element.jobs},
                          {"state", to_string(element.state)},
                          {"detail", element.detail},
                          {"slurm_state", element.slurm_state},
                          {"done_samples", element.done_samples},
                          {"total_samples", element.total_samples}});
    }
    out["sweeps"].push_back({{"id", sweep.id},
                             {"dir", sweep.dir.string()},
                             {"mode", sweep.mode},
                             {"array_job_id", sweep.array_job_id},
                             {"array_job_ids", sweep.array_job_ids},
                             {"continues", sweep.continues.empty() ? nlohmann::json() : nlohmann::json(sweep.continues)},
                             {"continuation_job_id", sweep.continuation_job_id.empty() ? nlohmann::json()
                                                                                       : nlohmann::json(sweep.continuation_job_id)},
                             {"submitted_at", sweep.submitted_at},
                             {"local_run", sweep.mode != "local" ? nlohmann::json()
                                                                 : nlohmann::json{{"pid", sweep.local_process.pid},
                                                                                  {"host", sweep.local_process.host},
                                                                                  {"state", to_string(sweep.local_run)}}},
                             {"resume_command", sweep.resume_command.empty() ? nlohmann::json()
                                                                             : nlohmann::json(sweep.resume_command)},
                             {"profile", sweep.profile},
                             {"asked_slurm", sweep.asked_slurm},
                             {"slurm_unavailable", sweep.slurm_unavailable},
                             {"finished", sweep.finished()},
                             {"counts", counts},
                             {"unreadable", sweep.unreadable},
                             {"elements", elements}});
  }
  return out;
}

}  // namespace mill
