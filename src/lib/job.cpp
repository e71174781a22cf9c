#include "mill/job.hpp"

#include <fmt/format.h>

#include "mill/error.hpp"
#include "mill/text.hpp"
#include "mill/version.hpp"

namespace mill {

JobKey make_job_key(const Job& job, const std::string& model_revision) {
  JobKey key;
  key.inputs = {
      {"model", job.model.identity()},
      {"model_revision", model_revision},
      {"task", job.task->name},
      {"task_fingerprint", job.task->fingerprint},
      {"n_shot", job.n_shot},
      {"limit", job.limit ? nlohmann::json(*job.limit) : nlohmann::json()},
      {"scoring_version", kScoringVersion},
  };
  key.digest = content_hash(key.inputs.dump());
  return key;
}

std::vector<std::string> differing_key_inputs(const nlohmann::json& expected, const nlohmann::json& found) {
  std::vector<std::string> names;
  for (const auto& [name, value] : expected.items()) {
    if (!found.is_object() || !found.contains(name) || found[name] != value) names.push_back(name);
  }
  return names;
}

namespace {
constexpr std::size_t kMaxResultDirectoryName = 255;  // NAME_MAX on Linux file systems

// A name whose directory the file system cannot hold is refused up front, naming it, rather than failing on the
// first file operation (the longest file name here, "<n>shot-limit<n>.journal.jsonl", is far shorter).
std::string checked_component(const char* what, const std::string& name) {
  auto component = path_component(name);
  if (component.size() > kMaxResultDirectoryName) {
    throw Error(fmt::format("{} name {}{} is too long for its results directory ({} bytes once escaped; at most {})",
                            what, quote_value(name.substr(0, 60)), name.size() > 60 ? "..." : "", component.size(),
                            kMaxResultDirectoryName));
  }
  return component;
}

std::filesystem::path job_stem(const std::filesystem::path& output_dir, const Job& job) {
  auto file = fmt::format("{}shot", job.n_shot);
  if (job.limit) file += fmt::format("-limit{}", *job.limit);
  return output_dir / "results" / checked_component("model", job.model.identity()) /
         checked_component("task", job.task->name) / file;
}
}  // namespace

std::filesystem::path result_path(const std::filesystem::path& output_dir, const Job& job) {
  auto path = job_stem(output_dir, job);
  path += ".json";
  return path;
}

std::filesystem::path journal_path(const std::filesystem::path& output_dir, const Job& job) {
  auto path = job_stem(output_dir, job);
  path += ".journal.jsonl";
  return path;
}

}  // namespace mill
