#pragma once
// The decoder-only transformer in the weight layouts mill reads (the Llama family and the models written like it,
// Phi-3, GPT-2, GPT-NeoX), mapped at load time onto one canonical layer: fused q/k/v and (for gated MLPs) fused
// gate/up projections, so each layer is a handful of matrix products whatever the architecture. What differs
// between families is a parameter of that layer (which norms exist and where, q/k norms, score scale and
// soft-capping, sliding-window layers, rope variant); a mixture-of-experts MLP is the one separate piece.
#include <ATen/ATen.h>

#include <vector>

#include "checkpoint.hpp"

namespace mill::runtime {

// Keys and values of earlier tokens (float32), preallocated for `capacity` positions: [batch, kv_heads, capacity,
// head_dim] per layer; the first `length` positions are filled.
struct KVCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  at::Tensor positions;  // [batch, capacity] int64: each cached key's position (sliding-window layers need it)
  std::int64_t length = 0;
  std::int64_t capacity() const { return keys.empty() ? 0 : keys.front().size(2); }
  std::int64_t batch() const { return keys.empty() ? 0 : keys.front().size(0); }
  // Keeps only the given batch rows (after some sequences finished).
  void select_rows(const at::Tensor& rows);
};

class Transformer {
 public:
  Transformer(const TransformerConfig& config, const WeightStore& weights, const at::TensorOptions& options);

  const TransformerConfig& config() const { return config_; }
  const at::TensorOptions& options() const { return options_; }

  KVCache make_cache(std::int64_t batch, std::int64_t capacity) const;

  // Runs `tokens` [B, T] (int64) at `positions` [B, T] (int64). `mask` [B, 1, T, S] (bool, true = may attend)
  // covers the S = cache.length + T keys: the cached ones first, then these tokens; query t must never see a key
  // past S - T + t (attention skips those keys). An undefined mask means plain causal attention (query t sees keys
  // 0..S - T + t), which needs no mask tensor. With a cache, the new keys and values are written into it at
  // cache.length (which then advances by T); without one, only these tokens attend to each other. Returns the
  // final-norm hidden states [B, T, hidden] in float32.
  at::Tensor forward(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& mask, KVCache* cache) const;

  // Logits (float32, soft-capped where the model says so) for hidden states [N, hidden].
  at::Tensor logits(const at::Tensor& hidden) const;
  // Log-probabilities (float32, log-softmax over the vocabulary) for hidden states [N, hidden].
  at::Tensor log_probs(const at::Tensor& hidden) const;
  // The logit of tokens[i] for hidden[i] alone, computed in float32 ([N]).
  at::Tensor token_logits(const at::Tensor& hidden, const at::Tensor& tokens) const;

  std::int64_t parameter_count() const;

 private:
  struct Layer {
    // norm1/norm2 before attention/MLP (absent in OLMo 2); post1/post2 on the attention/MLP output before the
    // residual add (Gemma's sandwich, OLMo 2).
    at::Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias, post1_weight, post2_weight;
    at::Tensor q_norm, k_norm;  // [head_dim] per head, or over the whole projection
    at::Tensor qkv_weight, qkv_bias;  // [(heads + 2 kv_heads) * head_dim, hidden]
    at::Tensor out_weight, out_bias;
    at::Tensor up_weight, up_bias;  // gated: gate and up stacked, [2 * intermediate, hidden]
    at::Tensor down_weight, down_bias;
    at::Tensor router;                         // MoE: [experts, hidden]
    std::vector<at::Tensor> expert_up, expert_down;  // MoE: per expert, gate and up stacked / down
    bool local = false;                        // sliding-window attention
  };
  struct Rotary {
    at::Tensor cos, sin;  // float32 [B, T, 1, rotary_dim / 2]
  };
  // LayerNorm or RMSNorm of x in float32 (weights are float32), returned as `out`.
  at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::ScalarType out) const;
  at::Tensor attention(const Layer& layer, const at::Tensor& x, const Rotary& rotary, const at::Tensor& mask,
                       KVCache* cache, std::size_t index) const;
  at::Tensor mlp(const Layer& layer, const at::Tensor& x) const;
  at::Tensor gated(const at::Tensor& gate_up, std::int64_t width) const;
  at::Tensor mixture_of_experts(const Layer& layer, const at::Tensor& x) const;
  Rotary rotary(const at::Tensor& positions, const RopeSettings& rope, const at::Tensor& fixed_inv_freq) const;

  TransformerConfig config_;
  at::TensorOptions options_;
  at::Tensor embedding_, position_embedding_, final_norm_weight_, final_norm_bias_, lm_head_;
  at::Tensor inv_freq_, local_inv_freq_;  // float32 [rotary_dim / 2]; undefined when they depend on the length
  std::vector<Layer> layers_;
};

}  // namespace mill::runtime
