#pragma once
// Facts about this process's host and clock that several stages record: host name, user, UTC time stamps.
#include <chrono>
#include <string>

namespace mill {

// gethostname(), or "unknown" when it fails.
std::string host_name();

// The login name of the current user (passwd entry, then $USER, then the numeric uid).
std::string current_user_name();

// `when` in UTC with a strftime format; the default is ISO 8601 to the second ("2026-11-25T08:45:31Z").
std::string utc_time(std::chrono::system_clock::time_point when = std::chrono::system_clock::now(),
                     const char* format = "%Y-%m-%dT%H:%M:%SZ");

// Unix seconds of an ISO 8601 UTC time ("2026-11-25T08:30:00Z", fractions allowed and dropped); -1 if it is not one.
long long unix_seconds_of(const std::string& iso);

}  // namespace mill
