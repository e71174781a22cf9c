#pragma once
// A Hugging Face checkpoint on disk, without loading it: where a spec's checkpoint is (a local folder or the hub
// cache layout), which weight files it has, and the cheap plan-time check of a folder (directory entries and small
// JSON files only, never the weights). The in-process runtime loads what these functions find.
#include <filesystem>
#include <string>
#include <vector>

#include "mill/model/model_spec.hpp"

namespace mill {

// $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; empty when none can be derived.
std::filesystem::path hub_cache_dir();

// ORG/NAME → <hub>/models--ORG--NAME.
std::filesystem::path hub_repo_dir(const std::filesystem::path& hub, const std::string& model_id);

struct CheckpointLocation {
  std::filesystem::path folder;
  std::string revision;  // the snapshot's commit for hub-cache models, "local" for a folder
};

// `model` (a folder, or ORG/NAME looked up in the hub cache: snapshots/<revision | refs/main | the only snapshot>).
// Never downloads. Not found throws mill::Error saying where it looked.
CheckpointLocation locate_checkpoint(const std::string& model, const std::string& revision = "");
// The spec's `path` arg or name, with its `revision` arg.
CheckpointLocation locate_checkpoint(const ModelSpec& spec);

// The architectures (config.json `architectures[0]`) the in-process runtime implements.
const std::vector<std::string>& runtime_architectures();

// The safetensors files a folder's weights are in: model.safetensors, or the shards its index names (each once,
// sorted). Missing weights, pytorch_model.bin-only folders and a malformed index throw mill::Error.
std::vector<std::string> weight_files(const std::filesystem::path& folder);

// The content fingerprint of a checkpoint folder (32 hex digits): what determines its numbers, read cheaply. It
// covers the bytes of config.json, generation_config.json, the shard index, the tokenizer files and a chat template,
// and for every weight file its name, size, safetensors header (an 8-byte little-endian length, then that many
// bytes of JSON: tensor names, dtypes, shapes, offsets) and 16 blocks of 4 KiB sampled evenly over its tensor
// bytes, so that weights of the same shapes written in place (a later training step) change it. The folder's path
// is not in it: a moved or copied folder keeps its fingerprint. A change confined to bytes that no sample covers
// goes unnoticed. Unreadable or malformed files throw mill::Error naming the file.
std::string checkpoint_fingerprint(const std::filesystem::path& folder);

// Every problem a worker would hit reading `folder` as a checkpoint: config.json missing or not JSON, an
// architecture the runtime lacks (when `need_runtime_architecture`), weight files missing or unreadable, no
// tokenizer. Reads config.json and the shard index, nothing else.
std::vector<std::string> checkpoint_problems(const std::filesystem::path& folder, bool need_runtime_architecture);

// Parameters in a checkpoint folder's safetensors files (headers only).
double checkpoint_parameters(const std::filesystem::path& folder);

}  // namespace mill
