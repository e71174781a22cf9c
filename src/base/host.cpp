#include "mill/base/host.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace mill {

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown";
  return buffer;
}

std::string current_user_name() {
  if (const auto* entry = ::getpwuid(::getuid()); entry && entry->pw_name) return entry->pw_name;
  if (const char* user = std::getenv("USER"); user && *user) return user;
  return std::to_string(::getuid());
}

std::string utc_time(std::chrono::system_clock::time_point when, const char* format) {
  const auto seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[64] = {};
  std::strftime(buffer, sizeof buffer, format, &utc);
  return buffer;
}

long long unix_seconds_of(const std::string& iso) {
  std::tm utc{};
  if (!::strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &utc)) return -1;
  return static_cast<long long>(::timegm(&utc));
}

}  // namespace mill
