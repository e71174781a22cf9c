#pragma once
// Submitting a planned sweep: the sweep directory (<output_dir>/sweeps/<id>/ with manifest.json, job.sbatch,
// logs/, submission.json, and the workers' heartbeats/ and status/), the jobs already in flight from earlier
// sweeps, the queue_limit / MaxArraySize budget, and the sbatch call. Layout and behaviour: docs/schedule.md.
#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/sweep/cluster.hpp"
#include "mill/sweep/plan.hpp"
#include "mill/sweep/resources.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/sweep/slurm.hpp"

namespace mill {

inline constexpr const char* kSubmissionSchema = "mill.submission/1";

// Where one sweep's files live.
struct SweepPaths {
  std::filesystem::path dir;
  std::filesystem::path manifest() const { return dir / "manifest.json"; }
  std::filesystem::path script() const { return dir / "job.sbatch"; }
  std::filesystem::path script(std::size_t array) const;  // job.sbatch for the first array, job-<K>.sbatch after it
  std::filesystem::path continuation_script() const { return dir / "continue.sbatch"; }
  // The lists a continuation job plans from (one model spec / task name per line).
  std::filesystem::path models_list() const { return dir / "models.txt"; }
  std::filesystem::path tasks_list() const { return dir / "tasks.txt"; }
  std::filesystem::path submission() const { return dir / "submission.json"; }
  std::filesystem::path logs() const { return dir / "logs"; }
  std::filesystem::path heartbeat(int element) const;  // heartbeats/element-<I>.json, written by the worker
  std::filesystem::path status(int element) const;     // status/element-<I>.json, written by the worker at the end
};

std::filesystem::path sweeps_root(const std::filesystem::path& output_dir);

// A sweep's submission.json (this module writes it): null when absent or not a JSON object; one that exists but
// cannot be read is null too, with a line in `unreadable` when given.
nlohmann::json read_submission_record(const SweepPaths& sweep, std::vector<std::string>* unreadable = nullptr);

// The lock one `mill schedule` holds on an output dir from planning to recording its submission (a JobLock on
// <output_dir>/sweeps/submit.lock), so that two schedules started together never both submit the same jobs.
std::filesystem::path submit_lock_path(const std::filesystem::path& output_dir);

// submission.json's `state`: written as `submitting` before sbatch runs and `submitted` (with the array job id)
// after it answers. A record still `submitting` was interrupted between the two.
inline constexpr const char* kStateSubmitting = "submitting";
inline constexpr const char* kStateSubmitted = "submitted";
inline constexpr const char* kStateNotInQueue = "not_in_queue";

// Settles every submission record left `submitting` (mill was killed while sbatch ran): the array that squeue
// lists under the sweep's job name is recorded as the sweep's (so its jobs count as in flight and are never
// submitted again); when the queue has none, the record says `not_in_queue` (nothing of it is in flight). Call it
// holding the submit lock. Returns one line per settled record; squeue failing is mill::Error (submit_failed).
std::vector<std::string> reconcile_submissions(const std::filesystem::path& output_dir);

// The array job ids a submission record names (`arrays[].array_job_id`, else `array_job_id`), in order.
std::vector<std::string> submitted_array_ids(const nlohmann::json& submission);

// A new, empty sweep directory <output_dir>/sweeps/<UTC timestamp>-<6 hex> (created, with logs/). The id sorts
// by time.
SweepPaths create_sweep(const std::filesystem::path& output_dir);

// Every sweep directory under <output_dir>/sweeps, oldest first.
std::vector<SweepPaths> list_sweeps(const std::filesystem::path& output_dir);

// A job of an earlier sweep that SLURM still has (pending, running or requeued).
struct InFlightJob {
  std::string sweep_id;
  std::string array_job_id;
  int element = 0;
  std::string state;  // squeue's state of the element
};

// Job key digest → where it is in flight, for the elements of earlier sweeps that appear in `queue` (this
// user's squeue). Sweeps whose array is not in the queue are not read further.
std::map<std::string, InFlightJob> jobs_in_flight(const std::filesystem::path& output_dir,
                                                  const std::vector<QueueEntry>& queue);

// How many array elements may be submitted now: queue_limit minus this user's queued jobs, at most the site's
// MaxArraySize (array indices 0..N-1 must stay below it). Never negative.
struct SubmitBudget {
  int elements = 0;
  std::string limited_by;  // "" when the whole sweep fits, else which limit binds and the numbers behind it
};
SubmitBudget submit_budget(const ClusterProfile& profile, int queued_by_user, int wanted_elements);

// One SLURM array of a sweep: consecutive manifest elements that share a resource shape and a time limit.
struct ArrayRequest {
  int first_element = 0;
  int elements = 0;
  ResourceShape shape;
  int time_minutes = 0;
  std::string time_explanation;  // how the limit was derived (recorded in submission.json)
};

// One script per array: `shared` (profile, binary, paths, job name) with each array's elements, shape and limit.
std::vector<std::string> render_array_scripts(SbatchRequest shared, const std::vector<ArrayRequest>& arrays);

// The job that submits the rest of a sweep when the budget left some of it unsubmitted (docs/schedule.md, "A
// sweep that finishes itself"): after every array of this sweep ends, it runs
// `<before_schedule> schedule --models_file <sweep>/models.txt --tasks_file <sweep>/tasks.txt <schedule_options>
// --continues <sweep id>`.
struct ContinuationRequest {
  std::vector<std::string> before_schedule;   // the mill binary and its global options
  std::vector<std::string> schedule_options;  // what the sweep was planned with (n_shots, limit, settings)
  int jobs_left = 0;
  int elements_left = 0;
};

struct SubmitRequest {
  std::vector<std::vector<const PlannedJob*>> elements;  // to submit, in order (already cut to the budget)
  std::vector<ArrayRequest> arrays;  // covering `elements` in order
  std::optional<ContinuationRequest> continuation;
  std::string continues;             // the sweep id this sweep continues (empty: started by a user)
  std::vector<std::string> models;   // the sweep's model specs and task names (for a continuation's lists)
  std::vector<std::string> tasks;
  SbatchRequest sbatch;  // the scripts' shared part: profile, binary and paths (submit_sweep adds the sweep's)
  nlohmann::json settings;          // manifest settings (extra_task_paths, data_dir, max_requeues, ...)
  std::vector<std::string> command_line;  // the `mill schedule` command, recorded in submission.json
};

struct SubmitResult {
  SweepPaths sweep;
  std::string sweep_id;
  std::string array_job_id;                 // the first array's
  std::vector<std::string> array_job_ids;   // every array's, in order
  std::string continuation_job_id;          // empty: none submitted
  std::vector<std::string> warnings;        // an array or the continuation sbatch refused after the first was accepted
  std::vector<std::string> scripts;         // each array's job script as written (job.sbatch, job-1.sbatch, ...)
  int elements = 0;
  int jobs = 0;
};

// Creates the sweep directory, writes manifest.json, one script per array (job.sbatch, job-1.sbatch, ...) and a
// `submitting` submission.json, runs sbatch (no shell) for each array with the sweep's job name, parses the job ids
// and records them in submission.json (`arrays`; `array_job_id` is the first's). If the first sbatch fails and the
// queue has no array of that name, the sweep directory is removed and mill::Error (ExitCode::submit_failed)
// carries sbatch's message; if the queue has it after all, it is recorded as submitted. A later array that sbatch
// refuses is left out of the record, with a warning (its jobs are planned again by the next schedule). With a
// continuation, its job is submitted last, depending on every array (afterany).
SubmitResult submit_sweep(const SubmitRequest& request);

// The record written for a sweep run with --local (no SLURM), by the process that runs it: its pid, host and start
// time (process_liveness.hpp) and working directory are recorded beside `command_line`.
void write_local_submission(const SweepPaths& sweep, int elements, int jobs, const std::vector<std::string>& command_line);

}  // namespace mill
