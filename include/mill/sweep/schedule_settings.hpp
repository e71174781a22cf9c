#pragma once
// The settings a sweep was planned with, as `mill schedule` options. schedule records them in the manifest
// (`settings.schedule`), so that `collect --check` can print a command that plans the missing jobs again with
// exactly the same settings (docs/collect.md). --limit is per job (it is in the job key), so it is not here.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mill {

struct Manifest;  // manifest.hpp

struct ScheduleSettings {
  std::filesystem::path output_dir;
  std::filesystem::path cache_dir;                  // empty: unknown (not repeated)
  std::optional<std::filesystem::path> data_dir;    // --data_dir or $MILL_DATA_DIR at plan time
  std::optional<std::filesystem::path> venv_path;   // only when given with --venv_path (a profile's own follows it)
  std::vector<std::string> extra_task_paths;        // absolute
  std::string cluster;                              // the profile the sweep used; empty: unknown, or --local
  bool local = false;                               // planned with --local
  std::optional<double> minutes_per_eval;           // only when given
  std::optional<int> evals_per_element;             // only when given
  std::optional<int> max_requeues;                  // only when given
  bool skip_model_check = false;
  std::optional<std::filesystem::path> cost_history;  // --cost_history: a shared history file for the cost model

  // The manifest's `settings.schedule` object.
  nlohmann::json to_json() const;

  // From a manifest's settings (read by manifest.hpp); `output_dir` is where the manifest was found. Manifests written before
  // `settings.schedule` existed still give extra_task_paths and data_dir. Wrong types are ignored (a manifest is
  // not user input, and collect must not fail on an old one).
  static ScheduleSettings from_manifest(const Manifest& manifest, const std::filesystem::path& output_dir);

  // Words before `schedule` (--output_dir, --cache_dir) and after `schedule MODELS TASKS` (everything else), unquoted.
  std::vector<std::string> global_arguments() const;
  std::vector<std::string> schedule_arguments() const;

  bool operator==(const ScheduleSettings& other) const { return to_json() == other.to_json(); }
};

}  // namespace mill
