#pragma once
// Errors that reach the user: each carries a one-line message and the exit code documented in docs/cli.md.
#include <stdexcept>
#include <string>

namespace mill {

enum class ExitCode : int {
  ok = 0,
  internal = 1,         // a bug or an unexpected system failure
  usage = 2,            // bad command line, bad file, bad value: the message says which and what is valid
  missing_results = 3,  // collect --check: some combinations are missing or stale
  eval_failed = 4,      // an evaluation ran but did not produce a valid result
  submit_failed = 5,    // sbatch/squeue refused or failed
  busy = 6,             // another mill process holds the job's lock (it is being evaluated elsewhere); rerun later
  system = 7,           // the system refused to write a file (disk full, quota, permissions, I/O): the input was fine
  preempted = 75,       // stopped early on the pre-walltime signal; resumable (EX_TEMPFAIL)
};

// An error whose message is written for the user. Messages are single lines; newlines are flattened. The default
// kind is bad input; code that fails for another reason says which (a failed write is ExitCode::system).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, ExitCode code = ExitCode::usage);
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

}  // namespace mill
