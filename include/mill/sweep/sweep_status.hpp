#pragma once
// What `mill status` reports: for every sweep under <output_dir>/sweeps, each array element's state, from the
// files first (the worker's status/ and heartbeats/ files, the manifest, submission.json) and from squeue and
// scontrol where they answer. States and the rules that combine the sources: docs/status.md.
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/base/process_liveness.hpp"
#include "mill/sweep/element_files.hpp"

namespace mill {

enum class ElementState {
  queued,     // SLURM has it pending (also after a requeue)
  running,    // SLURM runs it, or (without squeue) its heartbeat is recent
  completed,  // the worker finished every job of the element
  failed,     // a job failed, or the element ended without a status file (time limit, cancelled, killed)
  preempted,  // stopped on the pre-walltime signal and not requeued: the next `mill schedule` resubmits it
  unknown,    // no files and no answer from SLURM (e.g. squeue unavailable, or a --local run on another host)
  interrupted,  // a --local run that ended (Ctrl-C, a signal, a kill) before finishing it: rerunning resumes
};
std::string to_string(ElementState state);

struct ElementStatus {
  int element = 0;
  std::string model;
  int jobs = 0;
  ElementState state = ElementState::unknown;
  std::string detail;       // one line: progress, failure message, pending reason
  std::string slurm_state;  // what squeue/scontrol said, empty when nothing
  long long done_samples = -1;  // from the heartbeat, -1 when unknown
  long long total_samples = -1;
};

struct SweepStatus {
  std::string id;
  std::filesystem::path dir;
  std::string mode;  // "slurm" or "local"
  std::string array_job_id;                // the first array's
  std::vector<std::string> array_job_ids;  // every array's (one per resource shape)
  std::string continues;                   // the sweep this one continues (submitted by its continuation job)
  std::string continuation_job_id;         // the job that submits the rest of this sweep, if any
  int continuation_jobs_left = 0;
  std::string submitted_at;
  std::string profile;
  // --local sweeps: the process that runs them (submission.json) and whether it still does; how to resume.
  ProcessRecord local_process;
  Liveness local_run = Liveness::unknown;
  std::string resume_command;  // "cd DIR && mill ... schedule ... --local", from submission.json
  bool asked_slurm = false;        // squeue answered for this sweep
  bool slurm_unavailable = false;  // squeue was needed but could not be run or failed
  std::vector<ElementStatus> elements;
  // "path: reason" of each file of the sweep that exists but cannot be read (permissions in a shared tree): the
  // elements it describes are shown as unknown, and the file is named rather than passed over.
  std::vector<std::string> unreadable;
  std::map<ElementState, int> counts() const;
  bool finished() const;  // nothing queued, running or unknown (an interrupted sweep waits for the user)
};

// Heartbeats older than this many seconds, with no answer from SLURM, count as unknown rather than running.
inline constexpr int kStaleHeartbeatSeconds = 600;

struct StatusOptions {
  bool ask_slurm = true;            // query squeue/scontrol for sweeps submitted to SLURM
  std::vector<std::string> sweeps;  // only these sweep ids (all when empty)
};

// Reads every sweep (oldest first). Unreadable files make an element unknown, never an error; an output dir
// without sweeps gives an empty list.
std::vector<SweepStatus> read_sweep_statuses(const std::filesystem::path& output_dir, const StatusOptions& options);

// Combines one element's sources. `status_file`/`heartbeat` are the worker's files (nullopt when absent),
// `queue_state` squeue's state (nullopt: not listed; only meaningful when `asked_slurm`), `final_state`
// scontrol's remembered final state (may be empty). `now` is Unix time in seconds.
ElementStatus combine_element_status(int element, const std::optional<ElementStatusRecord>& status_file,
                                     const std::optional<Heartbeat>& heartbeat, bool asked_slurm, const std::optional<std::string>& queue_state,
                                     const std::string& queue_reason, const std::string& final_state, long long now);

// An element of a sweep run with `schedule --local`, from its files, whether the run's process (`run`) still goes
// on, and whether every job of the element has a result with the planned key on disk (`results_on_disk`):
// - a live run: its element with a heartbeat is running (however old the heartbeat: a batch may be slow), the
//   elements after it are queued, finished ones are what their status files say;
// - a run that has ended: an element it did not finish is interrupted (with where it stopped), unless a later run
//   wrote every job's result, which makes it completed; a status file `interrupted` or `preempted` (Ctrl-C or a
//   signal) is interrupted too;
// - a run on another host (`unknown`): as combine_element_status without SLURM.
ElementStatus combine_local_element_status(int element, const std::optional<ElementStatusRecord>& status_file,
                                           const std::optional<Heartbeat>& heartbeat, Liveness run, bool results_on_disk, long long now);

// The JSON form printed by `mill status --json` (schema mill.status/1 in docs/status.md).
nlohmann::json to_json(const std::vector<SweepStatus>& sweeps);

}  // namespace mill
