#include "mill/eval/migrate.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::size_t MigrationReport::files_moved() const {
  std::size_t total = 0;
  for (const auto& directory : directories) total += directory.files_moved;
  return total;
}

std::vector<std::pair<std::string, std::string>> result_directories_to_migrate(const std::filesystem::path& output_dir) {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(output_dir / "results", ec)) {
    if (!entry.is_directory(ec)) continue;
    const auto name = entry.path().filename().string();
    std::string canonical;
    try {
      canonical = path_component(ModelSpec::parse(name_from_path_component(name)).identity());
    } catch (const Error&) {
      continue;  // not a model spec mill can read: not a spelling question
    }
    if (canonical != name) out.emplace_back(name, canonical);
  }
  std::sort(out.begin(), out.end());
  return out;
}

MigrationReport migrate_result_directories(const std::filesystem::path& output_dir, bool dry_run) {
  MigrationReport report;
  const auto results = output_dir / "results";
  for (const auto& [from, to] : result_directories_to_migrate(output_dir)) {
    MovedResultDirectory moved{from, to, 0, {}};
    std::vector<std::filesystem::path> task_dirs;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(results / from, ec)) {
      if (entry.is_directory(ec)) task_dirs.push_back(entry.path());
    }
    std::sort(task_dirs.begin(), task_dirs.end());
    for (const auto& task_dir : task_dirs) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(task_dir, ec)) {
        if (entry.is_regular_file(ec)) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      const auto target_dir = results / to / task_dir.filename();
      for (const auto& file : files) {
        const auto target = target_dir / file.filename();
        if (std::filesystem::exists(target, ec)) {
          // The canonical directory's own file wins; a result or journal stays for the user to judge (a lock file
          // is no result: the canonical one serves).
          if (!file.filename().string().ends_with(".lock")) moved.kept.push_back(file);
          continue;
        }
        ++moved.files_moved;
        if (dry_run) continue;
        std::filesystem::create_directories(target_dir, ec);
        if (ec) throw Error(fmt::format("mill migrate: cannot create {}: {}", target_dir.string(), ec.message()));
        // rename(2) without replacing: the target was checked above; a file appearing meanwhile is kept.
        std::filesystem::rename(file, target, ec);
        if (ec) throw Error(fmt::format("mill migrate: cannot move {} to {}: {}", file.string(), target.string(), ec.message()));
      }
      if (!dry_run) std::filesystem::remove(task_dir, ec);  // only when empty
    }
    if (!dry_run) std::filesystem::remove(results / from, ec);  // only when empty
    report.directories.push_back(std::move(moved));
  }
  return report;
}

}  // namespace mill
