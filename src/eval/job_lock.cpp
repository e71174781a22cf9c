#include "mill/eval/job_lock.hpp"

#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <thread>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/host.hpp"

namespace mill {

namespace {
std::string lock_owner_line() {
  return fmt::format("{}@{} (user {}) since {}\n", static_cast<long>(::getpid()), host_name(), current_user_name(),
                     utc_time());
}
}  // namespace

std::filesystem::path job_lock_path(const std::filesystem::path& result_path) {
  auto path = result_path;
  path.replace_extension(".lock");
  return path;
}

JobLock::JobLock(std::filesystem::path path, ExitCode on_error) : path_(std::move(path)) {
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  if (ec) {
    throw Error(fmt::format("cannot create {}: {}", path_.parent_path().string(), ec.message()), on_error);
  }
  // O_CLOEXEC: a server or helper started by a backend must not inherit (and so keep) the lock. O_NOFOLLOW: in a
  // shared results tree another user could plant a symlink here; it is refused, never followed (and truncated).
  // 0666: the umask decides who else may open it (002 in a group-shared tree, so a teammate can resume the job).
  constexpr int kFlags = O_CREAT | O_NOFOLLOW | O_CLOEXEC;
  fd_ = ::open(path_.c_str(), O_RDWR | kFlags, 0666);
  if (fd_ < 0 && errno == EACCES) {
    // Another user's lock file without group write permission: flock works on a read-only descriptor too; only the
    // holder line cannot be written.
    fd_ = ::open(path_.c_str(), O_RDONLY | kFlags, 0666);
  }
  if (fd_ < 0 && errno == ELOOP) {
    throw Error(fmt::format("the lock {} is a symbolic link; mill never follows links in the results tree (remove it if "
                            "you did not make it)",
                            path_.string()),
                on_error);
  }
  if (fd_ < 0) {
    throw Error(fmt::format("cannot open the lock {}: {}", path_.string(), std::strerror(errno)), on_error);
  }
}

JobLock::~JobLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the only descriptor releases the flock
}

bool JobLock::acquire(std::chrono::seconds wait, const std::atomic<bool>* stop) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  // Polled rather than blocking: a blocking flock could honour neither the stop signal nor the wait limit.
  while (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error == EINTR) continue;
    if (error != EWOULDBLOCK) {
      static bool warned = false;
      if (!warned) {
        spdlog::warn("cannot lock {} ({}): this file system offers no locks, so two workers on the same job are not "
                     "kept apart",
                     path_.string(), std::strerror(error));
        warned = true;
      }
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline || (stop && stop->load())) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Best effort: the holder line only serves the message of whoever waits; a full disk must not stop the job here.
  const auto line = lock_owner_line();
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const auto written = ::pwrite(fd_, line.data(), line.size(), 0);
  }
  return true;
}

std::string JobLock::holder() const {
  char buffer[512] = {};
  const auto n = ::pread(fd_, buffer, sizeof buffer - 1, 0);
  const auto text = n > 0 ? trim(std::string(buffer, static_cast<std::size_t>(n))) : std::string();
  return text.empty() ? std::string("an unknown process") : one_line(text);
}

}  // namespace mill
