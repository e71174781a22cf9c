#include "mill/model/checkpoint_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/shell.hpp"

namespace mill {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  const auto text = read_file(path, "checkpoint file");
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) throw Error(fmt::format("{}: not valid JSON", path.string()));
  return json;
}

bool readable(const std::filesystem::path& path) { return ::access(path.c_str(), R_OK) == 0; }

// An open file read by offset; closes itself. Errors name the file.
class FileReader {
 public:
  explicit FileReader(const std::filesystem::path& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) fail("cannot open");
    struct stat info {};
    if (::fstat(fd_, &info) != 0) fail("cannot stat");
    size_ = static_cast<std::uint64_t>(info.st_size);
  }
  ~FileReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  std::uint64_t size() const { return size_; }

  // Appends `length` bytes from `offset` to `out`.
  void read_into(std::string& out, std::uint64_t offset, std::uint64_t length) const {
    const auto start = out.size();
    out.resize(start + length);
    std::uint64_t done = 0;
    while (done < length) {
      const auto got = ::pread(fd_, out.data() + start + done, length - done, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("cannot read");
      if (got == 0) throw Error(fmt::format("{}: ends at {} bytes while being read (changed meanwhile?)", path_.string(), offset + done));
      done += static_cast<std::uint64_t>(got);
    }
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw Error(fmt::format("{}: {}: {}", path_.string(), what, std::strerror(errno)));
  }
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// Appends "<label> <size>\n<bytes>" so that no two inputs run together.
void append_part(std::string& digest_input, const std::string& label, const std::string& bytes) {
  digest_input += fmt::format("{} {}\n", label, bytes.size());
  digest_input += bytes;
}

constexpr std::uint64_t kMaxSafetensorsHeader = 100u << 20;  // what the safetensors format itself allows
constexpr std::uint64_t kSampleBlock = 4096;
constexpr int kSampleBlocks = 16;

// `length` bytes from `start`: all of them when few, else kSampleBlocks blocks spread evenly (first and last included).
void append_samples(std::string& bytes, const FileReader& file, std::uint64_t start, std::uint64_t length) {
  if (length <= kSampleBlock * kSampleBlocks) {
    file.read_into(bytes, start, length);
    return;
  }
  for (int block = 0; block < kSampleBlocks; ++block) {
    file.read_into(bytes, start + (length - kSampleBlock) * static_cast<std::uint64_t>(block) / (kSampleBlocks - 1),
                   kSampleBlock);
  }
}

// A weight file's size and sampled bytes: for a safetensors file its whole header and samples of its tensor bytes,
// for another format (pytorch_model.bin for vllm, say) samples of the whole file.
void append_weight_file(std::string& digest_input, const std::filesystem::path& path, bool safetensors) {
  const FileReader file(path);
  std::string bytes;
  std::uint64_t data_start = 0;
  if (safetensors) {
    if (file.size() < 8)
      throw Error(fmt::format("{}: too short for a safetensors file ({} bytes)", path.string(), file.size()));
    file.read_into(bytes, 0, 8);
    std::uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = header_length << 8 | static_cast<unsigned char>(bytes[i]);
    if (header_length > kMaxSafetensorsHeader || header_length > file.size() - 8) {
      throw Error(fmt::format("{}: not a safetensors file (its header length {} does not fit its {} bytes)",
                              path.string(), header_length, file.size()));
    }
    file.read_into(bytes, 8, header_length);
    data_start = 8 + header_length;
  }
  append_samples(bytes, file, data_start, file.size() - data_start);
  append_part(digest_input, fmt::format("weights {} {}", path.filename().string(), file.size()), bytes);
}

}  // namespace

std::string checkpoint_fingerprint(const std::filesystem::path& folder) {
  std::string digest_input = "mill.checkpoint_fingerprint/1\n";
  // Every file that shapes prompts, tokens or the network, when present (a chat template may sit on its own).
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
                           "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                           "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json"}) {
    const auto path = folder / name;
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) continue;
    const FileReader file(path);
    std::string bytes;
    file.read_into(bytes, 0, file.size());
    append_part(digest_input, name, bytes);
  }
  std::vector<std::string> safetensors;
  try {
    safetensors = weight_files(folder);
  } catch (const Error&) {
    // Not a safetensors checkpoint (vllm also reads .bin and .pt weights): every weight-like file, sampled.
    std::vector<std::filesystem::path> others;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
      const auto extension = entry.path().extension().string();
      if (entry.is_regular_file(ec) && (extension == ".bin" || extension == ".pt" || extension == ".pth" ||
                                        extension == ".gguf" || extension == ".safetensors")) {
        others.push_back(entry.path());
      }
    }
    if (others.empty()) throw;
    std::sort(others.begin(), others.end());
    for (const auto& path : others) append_weight_file(digest_input, path, false);
    return content_hash(digest_input);
  }
  for (const auto& file : safetensors) append_weight_file(digest_input, folder / file, true);
  return content_hash(digest_input);
}

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
  static const std::vector<std::string> names = {
      "LlamaForCausalLM",  "MistralForCausalLM", "Qwen2ForCausalLM",   "Qwen3ForCausalLM",   "Qwen3MoeForCausalLM",
      "MixtralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",  "Phi3ForCausalLM",    "Olmo2ForCausalLM",
      "GPT2LMHeadModel",   "GPTNeoXForCausalLM"};
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
    // Unpickling is code execution by design; mill reads safetensors only and says how to convert, once.
    throw Error(fmt::format("{} holds pytorch_model.bin weights; mill reads safetensors only. Convert once with: "
                            "python -c \"import sys, transformers as t; src, dst = sys.argv[1:]; "
                            "t.AutoModelForCausalLM.from_pretrained(src).save_pretrained(dst, safe_serialization=True); "
                            "t.AutoTokenizer.from_pretrained(src).save_pretrained(dst)\" {} {}",
                            folder.string(), shell_quote(folder.string()), shell_quote(folder.string() + "-safetensors")));
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

double checkpoint_parameters(const std::filesystem::path& folder) {
  double parameters = 0;
  for (const auto& file : weight_files(folder)) {
    const auto path = folder / file;
    std::ifstream in(path, std::ios::binary);
    unsigned char prefix[8] = {};
    if (!in.read(reinterpret_cast<char*>(prefix), 8)) throw Error(fmt::format("{}: too short for a safetensors file", path.string()));
    std::uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = length << 8 | prefix[i];
    if (length > (100u << 20)) throw Error(fmt::format("{}: safetensors header of {} bytes is implausible", path.string(), length));
    std::string header(length, '\0');
    if (!in.read(header.data(), static_cast<std::streamsize>(length))) {
      throw Error(fmt::format("{}: its safetensors header is cut short", path.string()));
    }
    const auto tensors = nlohmann::json::parse(header, nullptr, false);
    if (tensors.is_discarded() || !tensors.is_object()) throw Error(fmt::format("{}: safetensors header is not JSON", path.string()));
    for (const auto& [name, info] : tensors.items()) {
      if (name == "__metadata__" || !info.is_object() || !info.contains("shape") || !info["shape"].is_array()) continue;
      double count = 1;
      for (const auto& extent : info["shape"]) count *= extent.is_number() ? extent.get<double>() : 0;
      parameters += count;
    }
  }
  return parameters;
}

}  // namespace mill
