#pragma once
// Durable file I/O: a final file is either absent or complete, never torn.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace mill {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the
// directory. Parent directories are created. On any failure the temporary file is removed, `path` keeps its
// old content, and mill::Error names the path and the system's reason.
void write_file_atomically(const std::filesystem::path& path, std::string_view content);

// The whole file, or nullopt if it does not exist. Other failures throw mill::Error.
std::optional<std::string> read_file_if_exists(const std::filesystem::path& path);

// The whole file; a missing file throws mill::Error naming `what` and the path.
std::string read_file(const std::filesystem::path& path, std::string_view what = "file");

}  // namespace mill
