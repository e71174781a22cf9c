#include "mill/job.hpp"

#include <fmt/format.h>

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
std::filesystem::path job_stem(const std::filesystem::path& output_dir, const Job& job) {
  auto file = fmt::format("{}shot", job.n_shot);
  if (job.limit) file += fmt::format("-limit{}", *job.limit);
  return output_dir / "results" / path_component(job.model.identity()) / path_component(job.task->name) / file;
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
