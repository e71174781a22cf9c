#pragma once
// One unit of work (model × task × n_shot), its identity key, and where its files live.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "mill/model_spec.hpp"
#include "mill/tasks.hpp"

namespace mill {

struct Job {
  ModelSpec model;
  const TaskInfo* task = nullptr;
  int n_shot = 0;
  std::optional<int> limit;  // --limit: evaluate only the first N documents
};

// What determines a job's numbers, and its digest. Two results with the same digest are interchangeable.
struct JobKey {
  nlohmann::json inputs;  // model identity and revision, task and its fingerprint, n_shot, limit, scoring version
  std::string digest;     // content hash of `inputs`
};

// `model_revision` comes from resolve_model_revision(); it is a parameter so a caller resolves each model once.
JobKey make_job_key(const Job& job, const std::string& model_revision);

// Names of the key inputs that differ between two keys, e.g. {"task_fingerprint", "model_revision"}.
std::vector<std::string> differing_key_inputs(const nlohmann::json& expected, const nlohmann::json& found);

// <output_dir>/results/<model>/<task>/<n>shot[-limitN].json — the final result (written atomically).
std::filesystem::path result_path(const std::filesystem::path& output_dir, const Job& job);
// The per-sample journal beside it: <...>.journal.jsonl (append-only).
std::filesystem::path journal_path(const std::filesystem::path& output_dir, const Job& job);

}  // namespace mill
