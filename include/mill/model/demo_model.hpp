#pragma once
// A deterministic tiny checkpoint in the real Hugging Face file formats (config.json, model.safetensors or
// shards with an index, tokenizer.json with a byte-level BPE vocabulary trained here on built-in text,
// tokenizer_config.json). Weights are fixed pseudo-random numbers from a seed, so the same options always give
// the same bytes. It serves the README's main command, the tests and the benchmarks, without any download.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mill {

struct DemoModelOptions {
  // llama (Llama-3 style rope scaling), qwen2 (qkv bias, tied), qwen3, qwen3_moe, mixtral, gemma2, gemma3, phi3,
  // olmo2, gpt2, gpt_neox (demo_model_architectures())
  std::string architecture = "llama";
  std::string dtype = "float32";       // float32, bfloat16 or float16: how the weights are stored
  int shards = 1;                      // > 1 writes model-0000i-of-0000n.safetensors + model.safetensors.index.json
  std::uint64_t seed = 20241;
  int hidden_size = 64;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;  // all but gpt2 and gpt_neox (grouped-query attention)
  int intermediate_size = 128;
  int bpe_merges = 256;  // vocabulary = 256 bytes + merges + <|endoftext|>
  // The variant that llama.cpp can represent, for the llama.cpp check (tests/llamacpp/): Qwen3-MoE renormalises
  // its top-k and has no dense layer, Gemma 2/3 scale scores by 1/sqrt(head_dim) (query_pre_attn_scalar =
  // head_dim), Phi-3's sliding window is wider than the model's positions. The other families are unchanged.
  bool llamacpp_compatible = false;
};

const std::vector<std::string>& demo_model_architectures();

// Writes the checkpoint into `folder` (created if needed; existing files of the same names are replaced).
// Bad options throw mill::Error naming the option and the valid values.
void write_demo_model(const std::filesystem::path& folder, const DemoModelOptions& options);

}  // namespace mill
