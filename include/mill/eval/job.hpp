#pragma once
// One unit of work (model × task × n_shot), its identity key, and where its files live.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/model/model_identity.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

struct Job {
  ModelSpec model;
  const TaskInfo* task = nullptr;
  int n_shot = 0;
  std::optional<int> limit;  // --limit: evaluate only the first N documents
  // The model name of its results directory when it is not model.identity(): a checkpoint folder that moved keeps
  // writing where its content's results are (model_identity.hpp results_model).
  std::string results_model;
};

// The model its results directory stands for: job.results_model, else job.model.identity().
std::string results_model_of(const Job& job);

// What determines a job's numbers, and its digest. Two results with the same digest are interchangeable.
struct JobKey {
  nlohmann::json inputs;  // model identity and revision, task and its fingerprint, n_shot, limit, scoring version
  std::string digest;     // content hash of `inputs`
};

// `model` comes from identify_model() (model_identity.hpp); it is a parameter so a caller identifies each model
// once. A checkpoint folder's key holds its content fingerprint (`model_content`) and not its path.
JobKey make_job_key(const Job& job, const ModelIdentity& model);
// A model without local content (a hub id, a remote model) at `model_revision`.
JobKey make_job_key(const Job& job, const std::string& model_revision);

// Names of the key inputs that differ between the key expected now and one a result recorded, e.g.
// {"task_fingerprint", "model_revision"}. The recorded `model` is read under today's spelling rules
// (ModelSpec::identity), so a result written before a rule changed still matches.
std::vector<std::string> differing_key_inputs(const nlohmann::json& expected, const nlohmann::json& found);

// Whether a result recorded with `found_digest` and `found_inputs` answers the job keyed `expected`: the same
// digest, or (for results written under earlier spelling rules) self-consistent recorded inputs that
// differing_key_inputs finds equal. Otherwise `differing` names what changed.
struct KeyMatch {
  bool same = false;
  std::vector<std::string> differing;
};
KeyMatch match_job_key(const JobKey& expected, const std::string& found_digest, const nlohmann::json& found_inputs);

// The reason a stale result shows: "model content changed", "computed with a different scoring_version", ...
std::string stale_reason(const std::vector<std::string>& differing);

// The name of a job's files without extension: "5shot", or "5shot-limit10" for a --limit run; and back
// (false for any other name).
std::string result_file_stem(int n_shot, std::optional<int> limit);
bool parse_result_file_stem(const std::string& stem, int& n_shot, std::optional<int>& limit);

// <output_dir>/results/<model>/<task>/<n>shot[-limitN].json — the final result (written atomically).
std::filesystem::path result_path(const std::filesystem::path& output_dir, const Job& job);
// The per-sample journal beside it: <...>.journal.jsonl (append-only).
std::filesystem::path journal_path(const std::filesystem::path& output_dir, const Job& job);
// The journal that belongs to a result file: <stem>.journal.jsonl beside <stem>.json.
std::filesystem::path journal_beside(const std::filesystem::path& result_file);

}  // namespace mill
