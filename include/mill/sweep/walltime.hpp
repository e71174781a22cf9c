#pragma once
// SLURM time limits: parsing and formatting.
#include <string>
#include <string_view>

namespace mill {

// Accepts SLURM's forms: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S". Minutes and seconds after the first
// field must be below 60, hours after a day count below 24. Returns minutes (seconds round up), or -1 when the
// text is not a time.
int parse_slurm_time(std::string_view text);

// Minutes as SLURM's "D-HH:MM:00" (or "HH:MM:00" under a day).
std::string format_slurm_time(int minutes);

// Fixed allowance per element for the batch shell, mill's start-up and writing results (model loading is
// predicted on its own, docs/schedule.md).
inline constexpr int kStartupMinutes = 5;

}  // namespace mill
