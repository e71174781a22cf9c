#pragma once

namespace mill {
// mill's release version, from CMakeLists.txt.
const char* version();
// Bumped whenever a change to prompts, scoring or metrics could change a number: it is part of every job
// key, so results computed by an older scorer are reported as stale rather than silently reused.
inline constexpr int kScoringVersion = 2;
}  // namespace mill
