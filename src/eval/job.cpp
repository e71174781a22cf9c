#include "mill/eval/job.hpp"

#include <cstdio>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"

namespace mill {

std::string results_model_of(const Job& job) {
  return job.results_model.empty() ? job.model.identity() : job.results_model;
}

JobKey make_job_key(const Job& job, const std::string& model_revision) {
  ModelIdentity model;
  model.spec = model.key_model = job.model.identity();
  model.revision = model_revision;
  return make_job_key(job, model);
}

JobKey make_job_key(const Job& job, const ModelIdentity& model) {
  JobKey key;
  key.inputs = {
      {"model", model.key_model},
      {"model_revision", model.revision},
      {"task", job.task->name},
      {"task_fingerprint", job.task->fingerprint},
      {"n_shot", job.n_shot},
      {"limit", job.limit ? nlohmann::json(*job.limit) : nlohmann::json()},
      {"scoring_version", kScoringVersion},
  };
  if (!model.content.empty()) key.inputs["model_content"] = model.content;
  key.digest = content_hash(key.inputs.dump());
  return key;
}

namespace {
// A recorded model spec in today's spelling; one mill cannot parse is compared as written.
std::string canonical_recorded_model(const std::string& recorded) {
  try {
    return ModelSpec::parse(recorded).identity();
  } catch (const Error&) {
    return recorded;
  }
}

bool same_input(const std::string& name, const nlohmann::json& expected, const nlohmann::json& found) {
  if (found == expected) return true;
  // A planner that cannot see the model's cache expects no particular revision: the one a worker resolved and
  // recorded answers the job (docs/results.md, "Hugging Face revisions").
  if (name == "model_revision" && expected == kUnresolvedRevision && found.is_string()) return true;
  if (name == "model" && found.is_string() && expected.is_string()) {
    return canonical_recorded_model(found.get<std::string>()) == expected.get<std::string>();
  }
  return false;
}
}  // namespace

std::vector<std::string> differing_key_inputs(const nlohmann::json& expected, const nlohmann::json& found) {
  std::vector<std::string> names;
  for (const auto& [name, value] : expected.items()) {
    if (!found.is_object() || !found.contains(name) || !same_input(name, value, found[name])) names.push_back(name);
  }
  // An input only the recorded key has (a content fingerprint, say) also tells the jobs apart.
  if (found.is_object()) {
    for (const auto& [name, value] : found.items()) {
      if (!value.is_null() && (!expected.is_object() || !expected.contains(name))) names.push_back(name);
    }
  }
  return names;
}

KeyMatch match_job_key(const JobKey& expected, const std::string& found_digest, const nlohmann::json& found_inputs) {
  if (found_digest == expected.digest) return {true, {}};
  auto differing = differing_key_inputs(expected.inputs, found_inputs);
  // Recorded inputs are trusted only when they are what the recorded digest was computed from.
  const bool consistent = found_inputs.is_object() && content_hash(found_inputs.dump()) == found_digest;
  return {consistent && differing.empty(), std::move(differing)};
}

std::string stale_reason(const std::vector<std::string>& differing) {
  if (differing.empty()) return "key differs";
  std::vector<std::string> phrases, others;
  for (const auto& name : differing) {
    if (name == "model_content") {
      phrases.push_back("model content changed");
    } else {
      others.push_back(name);
    }
  }
  if (!others.empty()) phrases.push_back("computed with a different " + join(others, ", "));
  return join(phrases, "; ");
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
  return output_dir / "results" / checked_component("model", results_model_of(job)) /
         checked_component("task", job.task->name) / result_file_stem(job.n_shot, job.limit);
}
}  // namespace

std::string result_file_stem(int n_shot, std::optional<int> limit) {
  return limit ? fmt::format("{}shot-limit{}", n_shot, *limit) : fmt::format("{}shot", n_shot);
}

bool parse_result_file_stem(const std::string& stem, int& n_shot, std::optional<int>& limit) {
  int shots = 0, lim = 0, used = 0;
  if (std::sscanf(stem.c_str(), "%dshot-limit%d%n", &shots, &lim, &used) == 2 && used == static_cast<int>(stem.size())) {
    n_shot = shots;
    limit = lim;
    return true;
  }
  used = 0;
  if (std::sscanf(stem.c_str(), "%dshot%n", &shots, &used) == 1 && used == static_cast<int>(stem.size())) {
    n_shot = shots;
    limit.reset();
    return true;
  }
  return false;
}

std::filesystem::path result_path(const std::filesystem::path& output_dir, const Job& job) {
  auto path = job_stem(output_dir, job);
  path += ".json";
  return path;
}

std::filesystem::path journal_path(const std::filesystem::path& output_dir, const Job& job) {
  return journal_beside(result_path(output_dir, job));
}

std::filesystem::path journal_beside(const std::filesystem::path& result_file) {
  auto path = result_file;
  path.replace_extension(".journal.jsonl");
  return path;
}

}  // namespace mill
