#pragma once
// The bounded requeue of an array element that stopped on SLURM's pre-walltime signal (exit 75): the worker,
// after flushing its journal and writing its status file, asks SLURM to put the element back in the queue
// (`scontrol requeue ARRAY_TASK`), but only when that run made progress and the element has been requeued
// fewer than `max_requeues` times (SLURM_RESTART_COUNT). Otherwise the element ends and the next
// `mill schedule` resubmits what is still missing. See docs/schedule.md.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace mill {

inline constexpr int kDefaultMaxRequeues = 3;

struct RequeueDecision {
  bool requeue = false;
  std::string reason;  // one line for the log and the status file
  std::vector<std::string> command;  // the scontrol argv when `requeue`
};

// Pure decision from the job's environment (SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_JOB_ID,
// SLURM_RESTART_COUNT), whether this run made progress (e.g. the journals grew) and the bound.
RequeueDecision decide_requeue(const std::map<std::string, std::string>& environment, bool made_progress,
                               int max_requeues);

// The journals of one manifest element's jobs and their sizes when measured, so that after a stop the worker
// can tell whether this run made progress. Built before the element runs; never throws (a manifest it cannot
// read simply has no journals, which counts as no progress).
class ElementProgress {
 public:
  ElementProgress(const std::filesystem::path& manifest, int element, const std::filesystem::path& output_dir);
  bool grew() const;  // some journal is larger now than when measured
  int max_requeues() const { return max_requeues_; }  // the manifest's settings.max_requeues

 private:
  std::vector<std::filesystem::path> journals_;
  std::uintmax_t bytes_before_ = 0;
  int max_requeues_ = kDefaultMaxRequeues;
};

// For `mill eval --manifest` after the element stopped with exit 75: decide_requeue() on this process's
// environment and the progress measured, then scontrol when it says so; returns the decision's line for the user.
// Only the pre-walltime signal (SIGUSR1) requeues: SIGTERM is how SLURM ends a job (scancel, preemption, the time
// limit itself), and a job the user cancelled must stay cancelled; what it left undone is resubmitted by the next
// `mill schedule`.
std::string requeue_stopped_element(const ElementProgress& progress, int stop_signal);

}  // namespace mill
