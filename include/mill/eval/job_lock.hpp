#pragma once
// The per-job lock: an exclusive advisory lock (flock(2)) on `<result stem>.lock` beside a job's journal and result,
// held by the one process that evaluates the job. Two workers on the same job (a requeued array element whose old
// run is still stopping, `schedule --local` beside a running array, a duplicate submission) would otherwise both
// append to the journal and race on the result. The kernel (or the NFS server) drops the lock when its holder
// dies, so a kill -9 never leaves a lock that blocks a rerun. docs/eval.md describes the behaviour.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>

#include "mill/base/error.hpp"

namespace mill {

// `<dir>/0shot.json` → `<dir>/0shot.lock` (the lock file of the job whose result is `result_path`).
std::filesystem::path job_lock_path(const std::filesystem::path& result_path);

class JobLock {
 public:
  // Opens (creating it and its directories) the lock file; throws mill::Error (`on_error`) naming the file and
  // the system's reason when it cannot. The same lock guards `mill schedule`'s submissions (submit_lock_path).
  explicit JobLock(std::filesystem::path path, ExitCode on_error = ExitCode::eval_failed);
  ~JobLock();  // releases the lock
  JobLock(const JobLock&) = delete;
  JobLock& operator=(const JobLock&) = delete;

  // Takes the lock, retrying ten times a second for up to `wait` while `stop` (if given) stays unset. On success
  // the file records "PID@HOST (user NAME) since TIME" for whoever waits next. A file system without locks (e.g. Lustre mounted
  // without `flock`) counts as success, logged once as a warning: mill then runs unprotected, as before locks.
  bool acquire(std::chrono::seconds wait, const std::atomic<bool>* stop = nullptr);

  // What the lock file says about its holder ("PID@HOST (user NAME) since TIME"), or "an unknown process".
  std::string holder() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace mill
