#pragma once
// A sweep's manifest.json: what each array element evaluates (schema in docs/results.md). This module is its
// one writer and its one reader; the planner builds the content (plan.hpp's make_manifest), the worker, requeue,
// status, in-flight detection and collect read it through read_manifest.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mill/eval/job.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

inline constexpr const char* kManifestSchema = "mill.manifest/1";

struct ManifestJob {
  std::string task;
  int n_shot = 0;
  std::optional<int> limit;
  std::string key;  // the job key the plan computed (the worker compares it with its own)
};

struct ManifestElement {
  std::string model;           // the spec as planned, execution arguments kept
  std::string model_revision;  // the revision the plan resolved; empty in manifests written before it
  std::vector<ManifestJob> jobs;
};

struct Manifest {
  // Sweep-wide values: extra_task_paths, data_dir, gpu_type, max_requeues, sweep_id and `schedule`
  // (schedule_settings.hpp). Kept as written so that fields added later survive a reader that does not know them.
  nlohmann::json settings = nlohmann::json::object();
  std::vector<ManifestElement> elements;

  std::vector<std::filesystem::path> extra_task_paths() const;
  std::optional<std::filesystem::path> data_dir() const;
  std::string gpu_type() const;  // empty when the profile named none
  std::optional<int> max_requeues() const;
};

nlohmann::json to_json(const Manifest& manifest);
void write_manifest(const std::filesystem::path& path, const Manifest& manifest);

// Throws mill::Error naming the file and what is wrong: unreadable, not JSON, another schema, an element without
// `model` and `jobs`.
Manifest read_manifest(const std::filesystem::path& path);

// The jobs of one element as the worker evaluates them: results under the directory the worker writes (a moved
// checkpoint folder keeps its results' directory, model_identity.hpp). Tasks the registry does not know are left
// out. Throws mill::Error when the element's model spec does not parse.
struct ElementJob {
  Job job;
  const ManifestJob* planned = nullptr;
};
std::vector<ElementJob> element_jobs(const ManifestElement& element, const TaskRegistry& registry,
                                     const std::filesystem::path& output_dir);

}  // namespace mill
