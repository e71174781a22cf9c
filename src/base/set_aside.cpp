#include "mill/base/set_aside.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"

namespace mill {

namespace {

std::filesystem::path backup_name(const std::filesystem::path& file, int number) {
  auto name = file;
  name += number == 0 ? std::string(".stale") : fmt::format(".stale.{}", number);
  return name;
}

// Tries backup names in order; `place` puts the file at one and returns false (errno EEXIST) if it is taken.
template <typename Place>
std::filesystem::path first_free(const std::filesystem::path& file, const char* what, Place place) {
  for (int number = 0; number < 10000; ++number) {
    const auto target = backup_name(file, number);
    if (place(target)) return target;
    if (errno != EEXIST) {
      throw Error(fmt::format("cannot {} {} to {}: {}", what, file.string(), target.string(), std::strerror(errno)),
                  ExitCode::eval_failed);
    }
  }
  throw Error(fmt::format("cannot {} {}: 10000 backups exist beside it; remove old ones", what, file.string()),
              ExitCode::eval_failed);
}

}  // namespace

std::filesystem::path move_aside(const std::filesystem::path& file) {
  return first_free(file, "move", [&](const std::filesystem::path& target) {
    // RENAME_NOREPLACE is atomic; where the file system lacks it, a hard link (fails on an existing name) and an
    // unlink do the same without the atomicity.
    if (::renameat2(AT_FDCWD, file.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0) return true;
    if (errno != EINVAL && errno != ENOSYS) return false;
    if (::link(file.c_str(), target.c_str()) != 0) return false;
    return ::unlink(file.c_str()) == 0 || errno == ENOENT;
  });
}

std::filesystem::path copy_aside(const std::filesystem::path& file) {
  const auto content = read_file(file, "file to keep");
  return first_free(file, "copy", [&](const std::filesystem::path& target) {
    // O_EXCL: an existing backup is never written over; O_NOFOLLOW: nor is a symlink planted in its place.
    const int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) return false;
    std::size_t done = 0;
    while (done < content.size()) {
      const auto n = ::write(fd, content.data() + done, content.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int error = errno;
        ::close(fd);
        ::unlink(target.c_str());
        errno = error == 0 ? EIO : error;
        if (errno == EEXIST) errno = EIO;  // not "taken": a real failure
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    const bool synced = ::fsync(fd) == 0;
    const bool closed = ::close(fd) == 0;
    if (synced && closed) return true;
    const int error = errno == EEXIST ? EIO : errno;
    ::unlink(target.c_str());
    errno = error;
    return false;
  });
}

}  // namespace mill
