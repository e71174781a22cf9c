#pragma once
// Finding and reading a Hugging Face checkpoint: the folder (local path or the hub cache layout), config.json as
// a TransformerConfig, and the safetensors weights, memory-mapped and converted to the requested dtype/device.
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/checkpoint_files.hpp"
#include "mill/model_spec.hpp"
#include "mill/safetensors.hpp"

namespace mill::runtime {

enum class NormKind { rms, layer };
enum class Activation { silu_gated, gelu_exact, gelu_tanh };

struct TransformerConfig {
  std::string architecture;  // the config.json value, e.g. LlamaForCausalLM
  std::string family;        // llama, gpt2, gpt_neox
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t max_positions = 0;  // max_position_embeddings / n_positions
  std::int64_t sliding_window = 0;  // 0: none
  double norm_eps = 1e-5;
  NormKind norm = NormKind::rms;
  Activation activation = Activation::silu_gated;
  bool tied_embeddings = false;
  bool learned_positions = false;   // GPT-2
  bool parallel_residual = false;   // GPT-NeoX
  std::int64_t rotary_dim = 0;      // 0: no rotary embedding
  double rope_theta = 10000;
  std::string rope_type = "default";  // default, linear, llama3
  double rope_factor = 1;
  double rope_low_freq_factor = 1;
  double rope_high_freq_factor = 4;
  double rope_original_max_positions = 8192;
  std::vector<std::int64_t> eos_token_ids;
};

// Reads config.json; an unknown architecture or a missing/invalid field is a mill::Error naming the file.
TransformerConfig read_config(const std::filesystem::path& folder);

// A read-only memory map of one file.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// All tensors of a checkpoint (model.safetensors, or the shards its index names). Tensors are views of the
// mapped files until converted, so loading touches each byte once.
class WeightStore {
 public:
  explicit WeightStore(const std::filesystem::path& folder);
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // The tensor, checked against `shape`, converted to `options` (dtype + device). Missing or misshapen tensors
  // throw mill::Error naming the tensor, the file and the expected shape.
  at::Tensor get(const std::string& name, const std::vector<std::int64_t>& shape, const at::TensorOptions& options) const;
  std::vector<std::string> names() const;
  const std::string& dtype_summary() const { return dtype_summary_; }  // e.g. "BF16"

 private:
  struct Entry {
    const MappedFile* file;
    const safetensors::Header* header;
    const safetensors::TensorInfo* info;
    std::string file_name;
  };
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::unique_ptr<safetensors::Header>> headers_;
  std::map<std::string, Entry> index_;
  std::string dtype_summary_;
};

}  // namespace mill::runtime
