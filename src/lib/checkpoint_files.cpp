#include "mill/checkpoint_files.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <set>

#include "mill/atomic_file.hpp"
#include "mill/error.hpp"
#include "mill/text.hpp"

namespace mill {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  const auto text = read_file(path, "checkpoint file");
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) throw Error(fmt::format("{}: not valid JSON", path.string()));
  return json;
}

bool readable(const std::filesystem::path& path) { return ::access(path.c_str(), R_OK) == 0; }

}  // namespace

std::filesystem::path hub_cache_dir() {
  if (const char* cache = std::getenv("HF_HUB_CACHE"); cache && *cache) return cache;
  if (const char* home = std::getenv("HF_HOME"); home && *home) return std::filesystem::path(home) / "hub";
  if (const char* user_home = std::getenv("HOME"); user_home && *user_home) {
    return std::filesystem::path(user_home) / ".cache" / "huggingface" / "hub";
  }
  return {};
}

std::filesystem::path hub_repo_dir(const std::filesystem::path& hub, const std::string& model_id) {
  std::string folder = "models--" + model_id;
  for (auto at = folder.find('/'); at != std::string::npos; at = folder.find('/', at)) folder.replace(at, 1, "--");
  return hub / folder;
}

CheckpointLocation locate_checkpoint(const std::string& model, const std::string& wanted_revision) {
  std::error_code ec;
  if (std::filesystem::is_directory(model, ec)) return {std::filesystem::absolute(model), "local"};
  const auto looks_like_path = model.empty() || model.front() == '/' || model.front() == '.' || model.front() == '~';
  if (looks_like_path || model.find('/') == std::string::npos) {
    throw Error(fmt::format("model {}: no such folder, and not an ORG/NAME to look up in the Hugging Face cache",
                            quote_value(model)));
  }
  const auto hub = hub_cache_dir();
  const auto repo = hub_repo_dir(hub, model);
  if (hub.empty() || !std::filesystem::is_directory(repo / "snapshots", ec)) {
    throw Error(fmt::format("model {} is not in the Hugging Face cache (looked for {}); mill never downloads: fetch it "
                            "first (huggingface-cli download {}) or set HF_HOME / HF_HUB_CACHE",
                            model, (repo / "snapshots").string(), model));
  }
  std::string revision;
  if (!wanted_revision.empty()) {
    revision = wanted_revision;
    // A branch or tag name resolves through refs/, a commit is a snapshot folder.
    if (auto ref = read_file_if_exists(repo / "refs" / revision)) revision = trim(*ref);
  } else if (auto ref = read_file_if_exists(repo / "refs" / "main")) {
    revision = trim(*ref);
  } else {
    std::vector<std::string> snapshots;
    for (const auto& entry : std::filesystem::directory_iterator(repo / "snapshots", ec)) {
      snapshots.push_back(entry.path().filename().string());
    }
    if (snapshots.size() != 1) {
      throw Error(fmt::format("model {}: {} has no refs/main and {} snapshots; pick one with [revision=COMMIT]", model,
                              repo.string(), snapshots.size()));
    }
    revision = snapshots.front();
  }
  const auto folder = repo / "snapshots" / revision;
  if (!std::filesystem::is_directory(folder, ec)) {
    throw Error(fmt::format("model {}: snapshot {} is not in the cache ({} missing)", model, revision, folder.string()));
  }
  return {folder, revision};
}

CheckpointLocation locate_checkpoint(const ModelSpec& spec) {
  return locate_checkpoint(spec.arg("path").value_or(spec.name), spec.arg("revision").value_or(""));
}

const std::vector<std::string>& runtime_architectures() {
  static const std::vector<std::string> names = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                                 "GPT2LMHeadModel", "GPTNeoXForCausalLM"};
  return names;
}

std::vector<std::string> weight_files(const std::filesystem::path& folder) {
  std::error_code ec;
  const auto index_path = folder / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path, ec)) {
    const auto index = read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error(fmt::format("{}: no weight_map object", index_path.string()));
    }
    std::set<std::string> unique;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string()) throw Error(fmt::format("{}: weight_map[{}] is not a file name", index_path.string(), name));
      const auto file_name = file.get<std::string>();
      if (file_name.find('/') != std::string::npos || file_name == "..") {
        throw Error(fmt::format("{}: weight_map[{}] names {} outside the folder", index_path.string(), name,
                                quote_value(file_name)));
      }
      unique.insert(file_name);
    }
    return {unique.begin(), unique.end()};
  }
  if (std::filesystem::exists(folder / "model.safetensors", ec)) return {"model.safetensors"};
  if (std::filesystem::exists(folder / "pytorch_model.bin", ec) ||
      std::filesystem::exists(folder / "pytorch_model.bin.index.json", ec)) {
    throw Error(fmt::format("{} holds pytorch_model.bin weights; mill reads safetensors only (convert the checkpoint "
                            "to model.safetensors)",
                            folder.string()));
  }
  throw Error(fmt::format("{} has neither model.safetensors nor model.safetensors.index.json", folder.string()));
}

std::vector<std::string> checkpoint_problems(const std::filesystem::path& folder, bool need_runtime_architecture) {
  std::vector<std::string> problems;
  std::error_code ec;
  const auto config_path = folder / "config.json";
  if (!std::filesystem::exists(config_path, ec)) {
    problems.push_back(fmt::format("{} has no config.json (expected a Hugging Face checkpoint folder)", folder.string()));
  } else {
    try {
      const auto config = read_json(config_path);
      const auto architectures = config.is_object() ? config.value("architectures", nlohmann::json()) : nlohmann::json();
      if (need_runtime_architecture) {
        const auto& known = runtime_architectures();
        if (!architectures.is_array() || architectures.empty() || !architectures[0].is_string()) {
          problems.push_back(fmt::format("{}: no \"architectures\" list (supported: {})", config_path.string(),
                                         join(known, ", ")));
        } else if (const auto name = architectures[0].get<std::string>();
                   std::find(known.begin(), known.end(), name) == known.end()) {
          problems.push_back(fmt::format("{}: architecture {} is not supported by the in-process runtime (supported: "
                                         "{}; vllm[path=...] runs others)",
                                         config_path.string(), quote_value(name), join(known, ", ")));
        }
      }
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
  }
  if (need_runtime_architecture) {
    try {
      for (const auto& file : weight_files(folder)) {
        const auto path = folder / file;
        if (!std::filesystem::exists(path, ec)) {
          problems.push_back(
              fmt::format("{}: the shard {} named by model.safetensors.index.json is missing", folder.string(), file));
        } else if (!readable(path)) {
          problems.push_back(fmt::format("{}: weight file {} is not readable (permissions)", folder.string(), file));
        }
      }
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
    if (!std::filesystem::exists(folder / "tokenizer.json", ec) && !std::filesystem::exists(folder / "tokenizer.model", ec)) {
      problems.push_back(fmt::format("{}: has neither tokenizer.json nor tokenizer.model", folder.string()));
    }
  }
  return problems;
}

}  // namespace mill
