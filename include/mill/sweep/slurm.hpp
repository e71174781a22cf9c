#pragma once
// Talking to SLURM's command-line clients (sbatch, squeue, scontrol): each runs as a child process without a
// shell, and its output is parsed here. Clients find the cluster as usual ($SLURM_CONF, /etc/slurm, DNS).
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

struct ProgramOutput {
  bool started = false;  // false: the program could not be run (not installed); `err` says why
  int exit_code = -1;    // 128+N when killed by signal N
  std::string out;
  std::string err;
};

// Runs argv[0] (searched in $PATH) with stdin from /dev/null and captures stdout and stderr. No shell is
// involved, so arguments reach the program byte for byte.
ProgramOutput run_program_captured(const std::vector<std::string>& argv);

// The job id in `sbatch --parsable` output ("123" or "123;cluster"); empty when there is none.
std::string parse_sbatch_job_id(std::string_view output);

// One line of `squeue -r`: array elements are listed one by one.
struct QueueEntry {
  std::string job_id;        // "123_4" for an array element, "125" otherwise
  std::string array_job_id;  // "123"; for non-array jobs the job id itself
  int array_task_id = -1;    // -1 for non-array jobs
  std::string state;         // PENDING, RUNNING, COMPLETING, ...
  std::string reason;        // why pending (Priority, JobArrayTaskLimit, ...), or "None"
};

// Parses the output of `squeue -h -r -o %i|%F|%K|%T|%r`. Malformed lines are skipped.
std::vector<QueueEntry> parse_queue(std::string_view output);

// This user's jobs in the queue (every array element counts once), or nullopt with `error` set when squeue
// cannot be run or fails.
std::optional<std::vector<QueueEntry>> query_user_queue(std::string* error = nullptr);

// Every user's jobs named `job_name` in the queue (array elements one by one), or nullopt with `error` set when
// squeue cannot be run or fails. mill names each sweep's array after the sweep, so this finds an array whose
// submission was interrupted before sbatch's answer was recorded.
std::optional<std::vector<QueueEntry>> query_jobs_named(const std::string& job_name, std::string* error = nullptr);

// The jobs of one array in the queue, or nullopt when squeue cannot be run or fails.
std::optional<std::vector<QueueEntry>> query_array_queue(const std::string& array_job_id);

// Final states that `scontrol show job -o ARRAY_ID` still remembers (MinJobAge), by array task id: COMPLETED,
// FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED... Empty when scontrol is unavailable.
std::map<int, std::string> query_array_final_states(const std::string& array_job_id);

// Parses `scontrol show job -o` output into array task id → JobState, for records of single elements.
std::map<int, std::string> parse_scontrol_array_states(std::string_view output);

}  // namespace mill
