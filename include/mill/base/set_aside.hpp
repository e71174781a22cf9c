#pragma once
// Keeping an old file beside its replacement: the first free name of <file>.stale, <file>.stale.1, <file>.stale.2,
// ... is taken without ever replacing an existing one, so a second key change never destroys the first backup.
#include <filesystem>

namespace mill {

// Renames `file` to its first free backup name and returns that name. mill::Error (eval_failed) names the file
// and the system's reason when it cannot.
std::filesystem::path move_aside(const std::filesystem::path& file);

// Copies `file` to its first free backup name (the original stays) and returns that name.
std::filesystem::path copy_aside(const std::filesystem::path& file);

}  // namespace mill
