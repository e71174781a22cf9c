#pragma once
// SLURM time limits: parsing and formatting, and the limit computed for an array element.
#include <string>
#include <string_view>

namespace mill {

// Accepts SLURM's forms: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S". Minutes and seconds after the first
// field must be below 60, hours after a day count below 24. Returns minutes (seconds round up), or -1 when the
// text is not a time.
int parse_slurm_time(std::string_view text);

// Minutes as SLURM's "D-HH:MM:00" (or "HH:MM:00" under a day).
std::string format_slurm_time(int minutes);

// Fixed allowance per element for start-up and model loading, and the safety factor on eval time.
inline constexpr int kStartupMinutes = 5;
inline constexpr double kWalltimeMargin = 1.25;

struct Walltime {
  int evals_per_element = 0;  // may be lowered so that the limit fits the partition
  int minutes = 0;
  bool clamped = false;       // hit the partition maximum
  std::string explanation;    // one line for --dry_run
};

// limit = ceil(evals × minutes_per_eval × margin) + start-up, at most `max_minutes`. When the requested number
// of evals per element does not fit, it is reduced to what does (at least 1, then clamped).
Walltime compute_walltime(int evals_per_element, double minutes_per_eval, int max_minutes);

}  // namespace mill
