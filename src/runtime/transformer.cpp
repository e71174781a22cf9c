#include "transformer.hpp"

#include <cmath>
#include <fmt/format.h>
#include <limits>

#include "mill/error.hpp"

namespace mill::runtime {

namespace {

at::Tensor optional_bias(const WeightStore& weights, const std::string& name, std::int64_t size,
                         const at::TensorOptions& options) {
  return weights.contains(name) ? weights.get(name, {size}, options) : at::Tensor();
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

// Rotates the first rotary_dim features of each head by the position's angles (the "rotate half" layout that
// Hugging Face checkpoints use); the remaining features pass through (GPT-NeoX's partial rotary).
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, std::int64_t rotary_dim) {
  const auto head_dim = x.size(-1);
  const auto rotated = rotary_dim == head_dim ? x : x.narrow(-1, 0, rotary_dim);
  const auto half = rotary_dim / 2;
  const auto rotate_half = at::cat({rotated.narrow(-1, half, half).neg(), rotated.narrow(-1, 0, half)}, -1);
  auto out = rotated * cos + rotate_half * sin;
  if (rotary_dim == head_dim) return out;
  return at::cat({out, x.narrow(-1, rotary_dim, head_dim - rotary_dim)}, -1);
}

// Scores of one query chunk stay under this many elements, so long prompts do not need T × S memory per head.
constexpr std::int64_t kMaxScoreElements = std::int64_t{1} << 27;

}  // namespace

void KVCache::select_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
}

Transformer::Transformer(const TransformerConfig& config, const WeightStore& weights, const at::TensorOptions& options)
    : config_(config), options_(options) {
  const auto V = config.vocab_size, H = config.hidden_size, I = config.intermediate_size, D = config.head_dim;
  const auto q_size = config.heads * D, kv_size = config.kv_heads * D;
  auto get = [&](const std::string& name, std::vector<std::int64_t> shape) { return weights.get(name, shape, options); };
  if (config.family == "llama") {
    embedding_ = get("model.embed_tokens.weight", {V, H});
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("model.layers.{}.", l);
      Layer layer;
      layer.norm1_weight = get(p + "input_layernorm.weight", {H});
      layer.norm2_weight = get(p + "post_attention_layernorm.weight", {H});
      layer.qkv_weight = at::cat({get(p + "self_attn.q_proj.weight", {q_size, H}), get(p + "self_attn.k_proj.weight", {kv_size, H}),
                                  get(p + "self_attn.v_proj.weight", {kv_size, H})});
      if (weights.contains(p + "self_attn.q_proj.bias")) {
        layer.qkv_bias = at::cat({get(p + "self_attn.q_proj.bias", {q_size}), get(p + "self_attn.k_proj.bias", {kv_size}),
                                  get(p + "self_attn.v_proj.bias", {kv_size})});
      }
      layer.out_weight = get(p + "self_attn.o_proj.weight", {H, q_size});
      layer.out_bias = optional_bias(weights, p + "self_attn.o_proj.bias", H, options);
      layer.up_weight = at::cat({get(p + "mlp.gate_proj.weight", {I, H}), get(p + "mlp.up_proj.weight", {I, H})});
      if (weights.contains(p + "mlp.gate_proj.bias")) {
        layer.up_bias = at::cat({get(p + "mlp.gate_proj.bias", {I}), get(p + "mlp.up_proj.bias", {I})});
      }
      layer.down_weight = get(p + "mlp.down_proj.weight", {H, I});
      layer.down_bias = optional_bias(weights, p + "mlp.down_proj.bias", H, options);
      layers_.push_back(std::move(layer));
    }
    final_norm_weight_ = get("model.norm.weight", {H});
    lm_head_ = config.tied_embeddings ? embedding_ : get("lm_head.weight", {V, H});
  } else if (config.family == "gpt2") {
    const std::string prefix = weights.contains("transformer.wte.weight") ? "transformer." : "";
    embedding_ = get(prefix + "wte.weight", {V, H});
    position_embedding_ = get(prefix + "wpe.weight", {config.max_positions, H});
    // GPT-2 stores projections as Conv1D ([in, out]); transposed once here into the [out, in] of a linear layer.
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("{}h.{}.", prefix, l);
      Layer layer;
      layer.norm1_weight = get(p + "ln_1.weight", {H});
      layer.norm1_bias = get(p + "ln_1.bias", {H});
      layer.norm2_weight = get(p + "ln_2.weight", {H});
      layer.norm2_bias = get(p + "ln_2.bias", {H});
      layer.qkv_weight = get(p + "attn.c_attn.weight", {H, 3 * H}).t().contiguous();
      layer.qkv_bias = get(p + "attn.c_attn.bias", {3 * H});
      layer.out_weight = get(p + "attn.c_proj.weight", {H, H}).t().contiguous();
      layer.out_bias = get(p + "attn.c_proj.bias", {H});
      layer.up_weight = get(p + "mlp.c_fc.weight", {H, I}).t().contiguous();
      layer.up_bias = get(p + "mlp.c_fc.bias", {I});
      layer.down_weight = get(p + "mlp.c_proj.weight", {I, H}).t().contiguous();
      layer.down_bias = get(p + "mlp.c_proj.bias", {H});
      layers_.push_back(std::move(layer));
    }
    final_norm_weight_ = get(prefix + "ln_f.weight", {H});
    final_norm_bias_ = get(prefix + "ln_f.bias", {H});
    lm_head_ = embedding_;
  } else {  // gpt_neox
    embedding_ = get("gpt_neox.embed_in.weight", {V, H});
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("gpt_neox.layers.{}.", l);
      Layer layer;
      layer.norm1_weight = get(p + "input_layernorm.weight", {H});
      layer.norm1_bias = get(p + "input_layernorm.bias", {H});
      layer.norm2_weight = get(p + "post_attention_layernorm.weight", {H});
      layer.norm2_bias = get(p + "post_attention_layernorm.bias", {H});
      // NeoX interleaves q, k and v per head ([heads, 3, head_dim] rows); regrouped into q | k | v.
      layer.qkv_weight = get(p + "attention.query_key_value.weight", {3 * H, H})
                             .view({config.heads, 3, D, H})
                             .permute({1, 0, 2, 3})
                             .reshape({3 * H, H});
      if (weights.contains(p + "attention.query_key_value.bias")) {
        layer.qkv_bias = get(p + "attention.query_key_value.bias", {3 * H})
                             .view({config.heads, 3, D})
                             .permute({1, 0, 2})
                             .reshape({3 * H});
      }
      layer.out_weight = get(p + "attention.dense.weight", {H, H});
      layer.out_bias = optional_bias(weights, p + "attention.dense.bias", H, options);
      layer.up_weight = get(p + "mlp.dense_h_to_4h.weight", {I, H});
      layer.up_bias = optional_bias(weights, p + "mlp.dense_h_to_4h.bias", I, options);
      layer.down_weight = get(p + "mlp.dense_4h_to_h.weight", {H, I});
      layer.down_bias = optional_bias(weights, p + "mlp.dense_4h_to_h.bias", H, options);
      layers_.push_back(std::move(layer));
    }
    final_norm_weight_ = get("gpt_neox.final_layer_norm.weight", {H});
    final_norm_bias_ = get("gpt_neox.final_layer_norm.bias", {H});
    lm_head_ = config.tied_embeddings ? embedding_ : get("embed_out.weight", {V, H});
  }

  if (config.rotary_dim > 0) {
    const auto float_options = at::TensorOptions().dtype(at::kFloat);
    const auto rotary = static_cast<float>(config.rotary_dim);
    // Computed in float32 the way the reference implementation does, so the angles agree bit for bit.
    auto exponents = at::arange(0, config.rotary_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / rotary;
    auto inv_freq = at::pow(static_cast<float>(config.rope_theta), exponents).reciprocal();
    const double factor = config.rope_factor;
    if (config.rope_type == "linear") {
      inv_freq = inv_freq / factor;
    } else if (config.rope_type == "llama3") {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
      const double old_length = config.rope_original_max_positions;
      const double low_wavelength = old_length / config.rope_low_freq_factor;
      const double high_wavelength = old_length / config.rope_high_freq_factor;
      auto wavelength = (2 * M_PI) / inv_freq;
      auto scaled = at::where(wavelength > low_wavelength, inv_freq / factor, inv_freq);
      auto smooth = (old_length / wavelength - config.rope_low_freq_factor) /
                    (config.rope_high_freq_factor - config.rope_low_freq_factor);
      auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      auto medium = (wavelength >= high_wavelength).logical_and(wavelength <= low_wavelength);
      inv_freq = at::where(medium, smoothed, scaled);
    }
    inv_freq_ = inv_freq.to(float_options.device(options.device()));
  }
}

KVCache Transformer::make_cache(std::int64_t batch, std::int64_t capacity) const {
  KVCache cache;
  for (std::int64_t l = 0; l < config_.layers; ++l) {
    cache.keys.push_back(at::empty({batch, config_.kv_heads, capacity, config_.head_dim}, options_));
    cache.values.push_back(at::empty({batch, config_.kv_heads, capacity, config_.head_dim}, options_));
  }
  return cache;
}

at::Tensor Transformer::norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const {
  if (config_.norm == NormKind::layer) return at::layer_norm(x, {config_.hidden_size}, weight, bias, config_.norm_eps);
  // RMSNorm in float32, scaled in the model's dtype, as the reference implementation does.
  auto xf = x.to(at::kFloat);
  xf = xf * at::rsqrt(xf.pow(2).mean(-1, true) + config_.norm_eps);
  return weight * xf.to(x.scalar_type());
}

at::Tensor Transformer::attention(const Layer& layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                  const at::Tensor& blocked, KVCache* cache, std::size_t index) const {
  const auto B = x.size(0), T = x.size(1), D = config_.head_dim;
  const auto Hq = config_.heads, Hkv = config_.kv_heads, G = Hq / Hkv;
  const auto qkv = linear(x, layer.qkv_weight, layer.qkv_bias);
  auto q = qkv.narrow(-1, 0, Hq * D).view({B, T, Hq, D}).transpose(1, 2);
  auto k = qkv.narrow(-1, Hq * D, Hkv * D).view({B, T, Hkv, D}).transpose(1, 2);
  auto v = qkv.narrow(-1, (Hq + Hkv) * D, Hkv * D).view({B, T, Hkv, D}).transpose(1, 2);
  if (config_.rotary_dim > 0) {
    q = apply_rotary(q, cos, sin, config_.rotary_dim);
    k = apply_rotary(k, cos, sin, config_.rotary_dim);
  }
  if (cache) {
    const auto start = cache->length;
    cache->keys[index].narrow(2, start, T).copy_(k);
    cache->values[index].narrow(2, start, T).copy_(v);
    k = cache->keys[index].narrow(2, 0, start + T);
    v = cache->values[index].narrow(2, 0, start + T);
  }
  const auto S = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto kt = k.transpose(-1, -2);
  // Grouped-query attention without copying keys: the G query heads of one key head share a matrix product.
  const auto chunk = std::max<std::int64_t>(1, std::min<std::int64_t>(T, kMaxScoreElements / std::max<std::int64_t>(1, B * Hq * S)));
  std::vector<at::Tensor> outputs;
  for (std::int64_t t0 = 0; t0 < T; t0 += chunk) {
    const auto Tc = std::min(chunk, T - t0);
    const auto qc = (Tc == T ? q : q.narrow(2, t0, Tc)).reshape({B, Hkv, G * Tc, D});
    auto scores = at::matmul(qc, kt).mul_(scale).view({B, Hq, Tc, S});
    scores.masked_fill_(Tc == T ? blocked : blocked.narrow(2, t0, Tc), -std::numeric_limits<float>::infinity());
    auto probs = at::softmax(scores, -1, at::kFloat).to(x.scalar_type());
    outputs.push_back(at::matmul(probs.view({B, Hkv, G * Tc, S}), v).view({B, Hq, Tc, D}));
  }
  auto out = outputs.size() == 1 ? outputs.front() : at::cat(outputs, 2);
  out = out.transpose(1, 2).reshape({B, T, Hq * D});
  return linear(out, layer.out_weight, layer.out_bias);
}

at::Tensor Transformer::mlp(const Layer& layer, const at::Tensor& x) const {
  auto h = linear(x, layer.up_weight, layer.up_bias);
  if (config_.activation == Activation::silu_gated) {
    const auto I = config_.intermediate_size;
    h = at::silu(h.narrow(-1, 0, I)) * h.narrow(-1, I, I);
  } else {
    h = at::gelu(h, config_.activation == Activation::gelu_tanh ? "tanh" : "none");
  }
  return linear(h, layer.down_weight, layer.down_bias);
}

at::Tensor Transformer::forward(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& mask,
                                KVCache* cache) const {
  const auto T = tokens.size(1);
  if (cache && cache->length + T > cache->capacity()) {
    throw Error(fmt::format("internal: KV cache overflow ({} + {} > {})", cache->length, T, cache->capacity()),
                ExitCode::internal);
  }
  auto x = at::embedding(embedding_, tokens);
  if (config_.learned_positions) x = x + at::embedding(position_embedding_, positions);
  at::Tensor cos, sin;
  if (config_.rotary_dim > 0) {
    const auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;
    const auto angles = at::cat({freqs, freqs}, -1).unsqueeze(1);  // [B, 1, T, rotary_dim]
    cos = angles.cos().to(x.scalar_type());
    sin = angles.sin().to(x.scalar_type());
  }
  const auto blocked = mask.logical_not();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    if (config_.parallel_residual) {
      auto attended = attention(layer, norm(x, layer.norm1_weight, layer.norm1_bias), cos, sin, blocked, cache, i);
      x = x + attended + mlp(layer, norm(x, layer.norm2_weight, layer.norm2_bias));
    } else {
      x = x + attention(layer, norm(x, layer.norm1_weight, layer.norm1_bias), cos, sin, blocked, cache, i);
      x = x + mlp(layer, norm(x, layer.norm2_weight, layer.norm2_bias));
    }
  }
  if (cache) cache->length += T;
  return norm(x, final_norm_weight_, final_norm_bias_);
}

at::Tensor Transformer::log_probs(const at::Tensor& hidden) const {
  return at::log_softmax(at::linear(hidden, lm_head_).to(at::kFloat), -1);
}

std::int64_t Transformer::parameter_count() const {
  std::int64_t total = embedding_.numel() + (lm_head_.is_same(embedding_) ? 0 : lm_head_.numel());
  if (position_embedding_.defined()) total += position_embedding_.numel();
  for (const auto& layer : layers_) {
    for (const auto* t : {&layer.norm1_weight, &layer.norm1_bias, &layer.norm2_weight, &layer.norm2_bias, &layer.qkv_weight,
                          &layer.qkv_bias, &layer.out_weight, &layer.out_bias, &layer.up_weight, &layer.up_bias,
                          &layer.down_weight, &layer.down_bias}) {
      if (t->defined()) total += t->numel();
    }
  }
  return total;
}

}  // namespace mill::runtime
