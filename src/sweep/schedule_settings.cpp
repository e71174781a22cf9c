#include "mill/sweep/schedule_settings.hpp"

#include <fmt/format.h>

#include "mill/base/json_fields.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/manifest.hpp"

namespace mill {

namespace {

template <typename T>
nlohmann::json optional_json(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json();
}

std::optional<std::filesystem::path> path_field(const nlohmann::json& object, const char* name) {
  const auto text = string_field(object, name);
  return text.empty() ? std::nullopt : std::optional<std::filesystem::path>(text);
}

// The shortest text that reads back as the same double (10, 0.5, 2.25).
std::string number_text(double value) { return fmt::format("{}", value); }

}  // namespace

nlohmann::json ScheduleSettings::to_json() const {
  nlohmann::json json = {{"output_dir", output_dir.string()},
          {"cache_dir", cache_dir.string()},
          {"data_dir", data_dir ? nlohmann::json(data_dir->string()) : nlohmann::json()},
          {"venv_path", venv_path ? nlohmann::json(venv_path->string()) : nlohmann::json()},
          {"extra_task_paths", extra_task_paths},
          {"cluster", cluster},
          {"local", local},
          {"minutes_per_eval", optional_json(minutes_per_eval)},
          {"evals_per_element", optional_json(evals_per_element)},
          {"max_requeues", optional_json(max_requeues)},
          {"skip_model_check", skip_model_check}};
  if (cost_history) json["cost_history"] = cost_history->string();  // only when given: older manifests lack it
  return json;
}

ScheduleSettings ScheduleSettings::from_manifest(const Manifest& manifest, const std::filesystem::path& output_dir) {
  ScheduleSettings out;
  out.output_dir = output_dir;
  out.data_dir = manifest.data_dir();
  for (const auto& path : manifest.extra_task_paths()) out.extra_task_paths.push_back(path.string());
  const auto& settings = manifest.settings;
  const auto it = settings.find("schedule");
  if (it == settings.end() || !it->is_object()) return out;
  const auto& schedule = *it;
  // The output dir the manifest was found under wins: a results tree may have been moved since.
  if (const auto cache = path_field(schedule, "cache_dir")) out.cache_dir = *cache;
  out.venv_path = path_field(schedule, "venv_path");
  out.cost_history = path_field(schedule, "cost_history");
  out.cluster = string_field(schedule, "cluster");
  out.local = schedule.value("local", nlohmann::json(false)).is_boolean() && schedule.value("local", false);
  out.minutes_per_eval = finite_number_field(schedule, "minutes_per_eval");
  if (const auto evals = integer_field(schedule, "evals_per_element")) out.evals_per_element = static_cast<int>(*evals);
  if (const auto requeues = integer_field(schedule, "max_requeues")) out.max_requeues = static_cast<int>(*requeues);
  out.skip_model_check =
      schedule.value("skip_model_check", nlohmann::json(false)).is_boolean() && schedule.value("skip_model_check", false);
  return out;
}

std::vector<std::string> ScheduleSettings::global_arguments() const {
  std::vector<std::string> words = {"--output_dir", output_dir.string()};
  if (!cache_dir.empty()) words.insert(words.end(), {"--cache_dir", cache_dir.string()});
  return words;
}

std::vector<std::string> ScheduleSettings::schedule_arguments() const {
  std::vector<std::string> words;
  if (local) {
    words.push_back("--local");
  } else if (!cluster.empty()) {
    words.insert(words.end(), {"--cluster", cluster});
  }
  if (data_dir) words.insert(words.end(), {"--data_dir", data_dir->string()});
  if (venv_path) words.insert(words.end(), {"--venv_path", venv_path->string()});
  if (!extra_task_paths.empty()) words.insert(words.end(), {"--extra_task_paths", join(extra_task_paths, ",")});
  if (minutes_per_eval) words.insert(words.end(), {"--minutes_per_eval", number_text(*minutes_per_eval)});
  if (evals_per_element) words.insert(words.end(), {"--evals_per_element", std::to_string(*evals_per_element)});
  if (max_requeues) words.insert(words.end(), {"--max_requeues", std::to_string(*max_requeues)});
  if (skip_model_check) words.push_back("--skip_model_check");
  if (cost_history) words.insert(words.end(), {"--cost_history", cost_history->string()});
  return words;
}

}  // namespace mill
