#include "mill/sweep/manifest.hpp"

#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/model/model_identity.hpp"
#include "mill/model/model_spec.hpp"

namespace mill {

std::vector<std::filesystem::path> Manifest::extra_task_paths() const {
  std::vector<std::filesystem::path> paths;
  if (const auto it = settings.find("extra_task_paths"); it != settings.end() && it->is_array()) {
    for (const auto& path : *it) {
      if (path.is_string()) paths.emplace_back(path.get<std::string>());
    }
  }
  return paths;
}

std::optional<std::filesystem::path> Manifest::data_dir() const {
  const auto dir = string_field(settings, "data_dir");
  return dir.empty() ? std::nullopt : std::optional<std::filesystem::path>(dir);
}

std::string Manifest::gpu_type() const { return string_field(settings, "gpu_type"); }

std::optional<int> Manifest::max_requeues() const {
  const auto value = integer_field(settings, "max_requeues");
  return value ? std::optional<int>(static_cast<int>(*value)) : std::nullopt;
}

nlohmann::json to_json(const Manifest& manifest) {
  nlohmann::json elements = nlohmann::json::array();
  for (const auto& element : manifest.elements) {
    nlohmann::json jobs = nlohmann::json::array();
    for (const auto& job : element.jobs) {
      jobs.push_back({{"task", job.task},
                      {"n_shot", job.n_shot},
                      {"limit", job.limit ? nlohmann::json(*job.limit) : nlohmann::json()},
                      {"key", job.key}});
    }
    elements.push_back({{"model", element.model}, {"model_revision", element.model_revision}, {"jobs", jobs}});
  }
  return {{"schema", kManifestSchema}, {"settings", manifest.settings}, {"elements", elements}};
}

void write_manifest(const std::filesystem::path& path, const Manifest& manifest) {
  write_file_atomically(path, to_json(manifest).dump(2) + "\n");
}

Manifest read_manifest(const std::filesystem::path& path) {
  const auto where = path.string();
  const auto document = nlohmann::json::parse(read_file(path, "manifest"), nullptr, false);
  if (document.is_discarded() || !document.is_object()) throw Error(fmt::format("{}: not a JSON manifest", where));
  if (string_field(document, "schema") != kManifestSchema) {
    throw Error(fmt::format("{}: field `schema` is not \"{}\"", where, kManifestSchema));
  }
  const auto elements = document.find("elements");
  if (elements == document.end() || !elements->is_array())
    throw Error(fmt::format("{}: field `elements` is missing", where));
  Manifest manifest;
  if (const auto settings = document.find("settings"); settings != document.end() && settings->is_object()) {
    manifest.settings = *settings;
  }
  for (std::size_t index = 0; index < elements->size(); ++index) {
    const auto& entry = (*elements)[index];
    ManifestElement element;
    element.model = string_field(entry, "model");
    element.model_revision = string_field(entry, "model_revision");
    const auto jobs = entry.is_object() ? entry.find("jobs") : entry.end();
    if (element.model.empty() || jobs == entry.end() || !jobs->is_array()) {
      throw Error(fmt::format("{}: element {} has no `model` and `jobs`", where, index));
    }
    for (const auto& job : *jobs) {
      // Lenient inside a job, as every reader was before this module: a job without a task names no known task
      // (the worker reports it), a missing n_shot is 0.
      ManifestJob planned{string_field(job, "task"), static_cast<int>(integer_field(job, "n_shot").value_or(0)),
                          std::nullopt, string_field(job, "key")};
      if (const auto limit = integer_field(job, "limit")) planned.limit = static_cast<int>(*limit);
      element.jobs.push_back(std::move(planned));
    }
    manifest.elements.push_back(std::move(element));
  }
  return manifest;
}

std::vector<ElementJob> element_jobs(const ManifestElement& element, const TaskRegistry& registry,
                                     const std::filesystem::path& output_dir) {
  const auto spec = ModelSpec::parse(element.model);
  const auto results_name = local_checkpoint_folder(spec) ? results_model(output_dir, identify_model(spec)) : "";
  std::vector<ElementJob> jobs;
  for (const auto& planned : element.jobs) {
    const auto* task = registry.find(planned.task);
    if (!task) continue;
    jobs.push_back({Job{spec, task, planned.n_shot, planned.limit, results_name}, &planned});
  }
  return jobs;
}

}  // namespace mill
