#pragma once
// Running evaluation jobs for one model with one backend (the model is loaded once): `mill eval MODEL TASKS` and
// the array worker `mill eval --manifest FILE --element I`, which `mill schedule --local` also calls in-process.
// Worker files (heartbeats, status) and exit codes are described in docs/eval.md.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mill/base/stop_signal.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

class ProgressDisplay;

struct WorkerOptions {
  std::filesystem::path output_dir;
  std::optional<std::filesystem::path> data_dir;  // wins over the manifest's settings.data_dir and $MILL_DATA_DIR
  std::size_t docs_per_batch = 32;                // documents per backend call and per journal flush
  // Stop request (finish the batch, flush, write status, exit 75, or 130 after SIGINT). Null: the stop signal
  // handlers are installed (stop_signal.hpp).
  const std::atomic<bool>* stop = nullptr;
  // Where progress, result lines and messages go (progress.hpp); schedule --local passes one for the whole sweep.
  // Null: the worker makes its own for stderr, silent unless `progress`.
  ProgressDisplay* display = nullptr;
  bool progress = true;
  // How long to wait for a job that another mill process holds (job_lock.hpp) before leaving it to that process.
  std::chrono::seconds lock_wait{120};
  // The model revision the plan resolved (the manifest's model_revision). A hub model is then evaluated at that
  // revision and keyed with it, whatever this node's cache's refs/main says; a cache without it fails the jobs in
  // one line. Empty or "unresolved": the worker resolves the revision from its own cache.
  std::string planned_model_revision;
  std::string gpu_type;  // the profile's GPU type (the manifest's settings.gpu_type), recorded in each result
};

struct EvalJobRequest {
  std::string task;
  int n_shot = 0;
  std::optional<int> limit;
  std::string expected_key;  // from a manifest; empty when there is none
};

// Runs the jobs one after another with one backend; jobs whose result is already done are skipped. Prints one
// result line per job on stdout. Returns the exit code: 0 all done, 4 some job failed (the others are still
// attempted), 6 none failed but some job was held by another mill process for all of `lock_wait` (left to it),
// 75 stopped by SIGUSR1/SIGTERM (or an own `stop` flag), 130 stopped by SIGINT. When `element` is set, heartbeats
// and the final status file are written under `sweep_dir` (docs/eval.md).
struct ElementFiles {
  std::filesystem::path sweep_dir;
  int element = 0;
};
int run_eval_jobs(const std::string& model_spec, const std::vector<EvalJobRequest>& jobs, const TaskRegistry& registry,
                  const WorkerOptions& options, const std::optional<ElementFiles>& files = std::nullopt);

// Worker mode: reads the manifest (plan.hpp make_manifest) and runs the jobs of element `element`.
int run_manifest_element(const std::filesystem::path& manifest, int element, const WorkerOptions& options);

}  // namespace mill
