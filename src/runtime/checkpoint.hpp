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

#include "mill/model/checkpoint_files.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/model/safetensors.hpp"

namespace mill::runtime {

enum class NormKind { rms, layer };
enum class Activation { silu_gated, gelu_tanh_gated, gelu_exact, gelu_tanh };
// Where q/k RMSNorm applies: not at all, over each head (Qwen3, Gemma 3) or over the whole projection (OLMo 2).
enum class QKNorm { none, per_head, whole };

// How the rotary angles are made from the positions (transformers' rope types, plus the per-layer choice).
struct RopeSettings {
  std::string type = "default";  // default, linear, llama3, yarn, dynamic, longrope
  double theta = 10000;
  double factor = 1;
  double low_freq_factor = 1;   // llama3
  double high_freq_factor = 4;  // llama3
  double original_max_positions = 8192;  // llama3, yarn, longrope
  double attention_factor = 1;  // yarn, longrope: cos and sin are scaled by it
  double beta_fast = 32, beta_slow = 1;  // yarn
  bool truncate = true;                  // yarn
  std::vector<double> short_factor, long_factor;  // longrope
};

struct TransformerConfig {
  std::string architecture;  // the config.json value, e.g. LlamaForCausalLM
  std::string family;        // llama (and the families written like it), phi3, gpt2, gpt_neox
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t max_positions = 0;  // max_position_embeddings / n_positions
  std::int64_t sliding_window = 0;  // Mistral/Qwen2: caps the context length; 0: none
  double norm_eps = 1e-5;
  NormKind norm = NormKind::rms;
  bool norm_plus_one = false;     // Gemma: RMSNorm scales by (1 + weight)
  bool norm_scale_in_float = false;  // Gemma, OLMo 2: the weight multiplies in float32 before the cast back
  // Which norms a layer has: before attention/MLP (pre), after them on the branch (post), or both (Gemma's
  // sandwich). OLMo 2 has only the post norms.
  bool pre_norms = true;
  bool post_norms = false;
  QKNorm qk_norm = QKNorm::none;
  Activation activation = Activation::silu_gated;
  bool tied_embeddings = false;
  bool learned_positions = false;   // GPT-2
  bool parallel_residual = false;   // GPT-NeoX
  double embedding_scale = 0;       // Gemma: embeddings times sqrt(hidden_size) (rounded to the compute dtype); 0: none
  double attention_scale = 0;       // score scale; 0: 1/sqrt(head_dim) (Gemma: query_pre_attn_scalar^-1/2)
  double attention_softcap = 0;     // Gemma 2: scores = cap * tanh(scores / cap); 0: none
  double final_softcap = 0;         // Gemma 2: logits likewise
  // Sliding-window layers (Gemma 2/3, Phi-3): a query attends to keys less than local_window positions back.
  std::int64_t local_window = 0;
  std::vector<bool> local_layers;   // per layer; empty: none
  std::int64_t rotary_dim = 0;      // 0: no rotary embedding
  RopeSettings rope;                // global layers (all layers unless local_rope is set)
  bool has_local_rope = false;      // Gemma 3: local layers rotate with their own base
  RopeSettings local_rope;
  // Mixture of experts (Mixtral, Qwen3-MoE): per layer, a router picks experts_per_token of `experts` SwiGLU MLPs.
  std::int64_t experts = 0;
  std::int64_t experts_per_token = 0;
  std::int64_t expert_intermediate_size = 0;
  bool normalize_top_k = true;      // renormalise the chosen experts' weights to sum to one
  std::vector<bool> sparse_layers;  // per layer: true = MoE, false = dense MLP
  std::vector<std::int64_t> eos_token_ids;
};

// Reads config.json; an unknown architecture or a missing/invalid field is a mill::Error naming the file.
TransformerConfig read_config(const std::filesystem::path& folder);

// A private memory map of one file. Tensors that view it keep it alive (shared ownership), so it is unmapped
// when the last of them goes.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  // Gives the pages that lie wholly inside [begin, end) back to the kernel: they leave this process's resident
  // set and, if read again, come back from the file (the mapping is private and never written).
  void release(std::size_t begin, std::size_t end) const;

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// All tensors of a checkpoint (model.safetensors, or the shards its index names), memory-mapped. A tensor whose
// stored dtype is the one asked for, on the CPU, is a view of the mapping (no copy); any other is converted, and
// the pages it was read from are released once no view of them is left, so loading holds the converted model
// plus at most the tensors being converted, never the file and a full copy.
class WeightStore {
 public:
  explicit WeightStore(const std::filesystem::path& folder);
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  // The tensor, checked against `shape`, converted to `options` (dtype + device). Missing or misshapen tensors
  // throw mill::Error naming the tensor, the file and the expected shape.
  at::Tensor get(const std::string& name, const std::vector<std::int64_t>& shape, const at::TensorOptions& options) const;
  const std::string& dtype_summary() const { return dtype_summary_; }  // e.g. "BF16"

 private:
  struct Entry {
    std::shared_ptr<const MappedFile> file;
    const safetensors::Header* header;
    const safetensors::TensorInfo* info;
    std::string file_name;
  };
  std::vector<std::unique_ptr<safetensors::Header>> headers_;
  std::map<std::string, Entry> index_;
  std::string dtype_summary_;
};

}  // namespace mill::runtime
