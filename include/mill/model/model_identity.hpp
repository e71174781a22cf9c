#pragma once
// What a job key says about its model (job.hpp), and where that model's results live. A checkpoint folder is
// identified by its content (checkpoint_files.hpp checkpoint_fingerprint), not its path; a hub model by its spec
// and revision. The planner, the worker and collect all derive it here, so they agree.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "mill/model/model_spec.hpp"

namespace mill {

struct ModelIdentity {
  std::string spec;       // ModelSpec::identity(): the canonical spec, which names the results directory
  std::string key_model;  // the key's `model`: `spec`, with a checkpoint folder's path written as "<checkpoint>"
  std::string revision;   // the key's `model_revision` (resolve_model_revision)
  std::string content;    // the key's `model_content`: a checkpoint folder's fingerprint; empty for other models
  std::filesystem::path folder;  // the checkpoint folder read, when `content` is set
  std::string problem;           // why the folder could not be fingerprinted (then `content` is "unreadable")

  bool is_checkpoint_folder() const { return !folder.empty(); }
  // What a result records about the checkpoint it read ({"folder", "fingerprint"}); null for other models.
  nlohmann::json checkpoint_record() const;
};

// Reads what identifies `spec`: fingerprints a checkpoint folder (headers and samples only, milliseconds), resolves
// a hub model's revision. Never throws for an unreadable folder: `problem` says why, and the preflight or the
// backend reports it to the user.
ModelIdentity identify_model(const ModelSpec& spec);

// The folder the spec's backend reads when it is a directory on this machine (the in-process runtime's name or
// path=, vllm's path=); nullopt for hub ids, remote models and mill-demo.
std::optional<std::filesystem::path> local_checkpoint_folder(const ModelSpec& spec);

// The model name of the results directory that holds `identity`'s results: its own spec, unless its checkpoint's
// content already has results under another name (the folder moved: <output_dir>/checkpoints/<fingerprint>.json
// says where they are, and that directory exists).
std::string results_model(const std::filesystem::path& output_dir, const ModelIdentity& identity);

// Records, once per content, which results directory holds a checkpoint's results (what results_model reads).
// Written by the worker after a result of a checkpoint folder; an existing record is kept.
void remember_results_model(const std::filesystem::path& output_dir, const ModelIdentity& identity,
                            const std::string& results_model);

}  // namespace mill
