#include "mill/sweep/walltime.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <vector>

#include "mill/base/text.hpp"

namespace mill {

namespace {
bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos && text.size() <= 6;
}
}  // namespace

int parse_slurm_time(std::string_view text) {
  int days = 0;
  std::string_view rest = text;
  const auto dash = text.find('-');
  if (dash != std::string_view::npos) {
    if (!all_digits(text.substr(0, dash))) return -1;
    days = std::stoi(std::string(text.substr(0, dash)));
    rest = text.substr(dash + 1);
  }
  std::vector<int> parts;
  for (const auto& piece : split_list(rest, ':')) {
    if (!all_digits(piece)) return -1;
    parts.push_back(std::stoi(piece));
  }
  if (parts.empty() || parts.size() > 3 || std::count(rest.begin(), rest.end(), ':') + 1 != static_cast<long>(parts.size())) {
    return -1;
  }
  // Only the leading field may exceed its clock range (90 minutes, 30:00:00 hours); a later field of 60 or more
  // (`25:99:99`) or hours of 24 or more after a day count are typos, not times.
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] >= 60) return -1;
  }
  if (dash != std::string_view::npos && parts[0] >= 24) return -1;
  // D-H, D-H:M, D-H:M:S and H:M:S count from hours; M and M:S from minutes.
  const bool from_hours = dash != std::string_view::npos || parts.size() == 3;
  const long multipliers[] = {from_hours ? 3600 : 60, from_hours ? 60 : 1, 1};
  long seconds = days * 86400L;
  for (std::size_t i = 0; i < parts.size(); ++i) seconds += parts[i] * multipliers[i];
  if (seconds > 365L * 86400) return -1;
  return static_cast<int>((seconds + 59) / 60);
}

std::string format_slurm_time(int minutes) {
  const int days = minutes / (24 * 60);
  const int hours = (minutes / 60) % 24;
  const int mins = minutes % 60;
  if (days > 0) return fmt::format("{}-{:02}:{:02}:00", days, hours, mins);
  return fmt::format("{:02}:{:02}:00", hours, mins);
}

}  // namespace mill
