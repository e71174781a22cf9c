#include "mill/base/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <random>
#include <utility>

#include "mill/base/error.hpp"

namespace mill {

namespace {
// Closes a descriptor on scope exit.
struct Descriptor {
  int fd = -1;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      throw Error(fmt::format("cannot create directory {}: {}", path.parent_path().string(), ec.message()), ExitCode::system);
    }
  }
  // A unique temporary name: concurrent writers of the same result never share a temporary file.
  std::random_device random;
  const auto temporary =
      path.string() + fmt::format(".tmp.{}.{:08x}", static_cast<long>(::getpid()), random());
  Descriptor file;
  // 0666: the umask decides who else may read or replace it (002 in a group-shared results tree).
  file.fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (file.fd < 0) throw Error(fmt::format("cannot write {}: {}", temporary, std::strerror(errno)), ExitCode::system);
  auto fail = [&](const char* step) {
    const int error = errno;
    ::unlink(temporary.c_str());
    throw Error(fmt::format("cannot {} {}: {}", step, path.string(), std::strerror(error)), ExitCode::system);
  };
  std::size_t written = 0;
  while (written < content.size()) {
    const auto n = ::write(file.fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(file.fd) != 0) fail("flush");
  if (::close(std::exchange(file.fd, -1)) != 0) fail("close");
  if (::rename(temporary.c_str(), path.c_str()) != 0) fail("rename into place");
  Descriptor directory;
  directory.fd = ::open(path.has_parent_path() ? path.parent_path().c_str() : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory.fd >= 0) ::fsync(directory.fd);
}

std::optional<std::string> read_file_if_exists(const std::filesystem::path& path) {
  Descriptor file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
    throw Error(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  }
  std::string content;
  char buffer[16384];
  for (;;) {
    const auto n = ::read(file.fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
  }
  return content;
}

std::string read_file(const std::filesystem::path& path, std::string_view what) {
  auto content = read_file_if_exists(path);
  if (!content) throw Error(fmt::format("{} not found: {}", what, path.string()));
  return *content;
}

}  // namespace mill
