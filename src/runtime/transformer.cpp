#include "transformer.hpp"

#include <cmath>
#include <fmt/format.h>
#include <limits>

#include "mill/base/error.hpp"

namespace mill::runtime {

namespace {

at::Tensor optional_bias(const WeightStore& weights, const std::string& name, std::int64_t size,
                         const at::TensorOptions& options) {
  return weights.contains(name) ? weights.get(name, {size}, options) : at::Tensor();
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

// Rotates, in place, the first rotary_dim features of each head of x [B, T, heads, head_dim] (float32) by the
// position's angles, in the "rotate half" layout that Hugging Face checkpoints use: with (a, b) the two halves,
// a' = a cos - b sin and b' = b cos + a sin. cos and sin are [B, T, 1, rotary_dim / 2]; the remaining features
// pass through (partial rotary).
void rotate_in_place(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, std::int64_t rotary_dim) {
  const auto half = rotary_dim / 2;
  auto a = x.narrow(-1, 0, half), b = x.narrow(-1, half, half);
  const auto a0 = a.clone();
  a.mul_(cos).addcmul_(b, sin, -1);
  b.mul_(cos).addcmul_(a0, sin);
}

// Attention runs over blocks of at most this many queries, each against the keys it can see (causal: the keys up
// to its last query), so the work above the diagonal is skipped and score memory stays small.
constexpr std::int64_t kQueryBlock = 128;
// ... and a block's scores stay under this many elements (fewer queries per block for large batches).
constexpr std::int64_t kMaxBlockScores = std::int64_t{1} << 22;

}  // namespace

void KVCache::select_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
  if (positions.defined()) positions = positions.index_select(0, rows);
}

namespace {

// The rotary inverse frequencies (float32, [rotary_dim / 2]) for a forward whose largest position is
// `length` - 1; only `dynamic` and `longrope` depend on that length.
at::Tensor rope_inverse_frequencies(const RopeSettings& rope, std::int64_t rotary_dim, std::int64_t length) {
  const auto float_options = at::TensorOptions().dtype(at::kFloat);
  const auto rotary = static_cast<float>(rotary_dim);
  // Computed in float32 the way the reference implementation does, so the angles agree bit for bit.
  const auto exponents = at::arange(0, rotary_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / rotary;
  const auto powers = [&](double theta) { return at::pow(static_cast<float>(theta), exponents); };
  auto inv_freq = powers(rope.theta).reciprocal();
  const double factor = rope.factor;
  if (rope.type == "linear") {
    inv_freq = inv_freq / factor;
  } else if (rope.type == "llama3") {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    const double old_length = rope.original_max_positions;
    const double low_wavelength = old_length / rope.low_freq_factor;
    const double high_wavelength = old_length / rope.high_freq_factor;
    auto wavelength = (2 * M_PI) / inv_freq;
    auto scaled = at::where(wavelength > low_wavelength, inv_freq / factor, inv_freq);
    auto smooth = (old_length / wavelength - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
    auto medium = (wavelength >= high_wavelength).logical_and(wavelength <= low_wavelength);
    inv_freq = at::where(medium, smoothed, scaled);
  } else if (rope.type == "yarn") {
    // YaRN: dimensions that turn many times within the original context keep their frequency, slow ones are
    // divided by `factor`, with a linear ramp between the two correction dimensions.
    const auto correction_dim = [&](double rotations) {
      return static_cast<double>(rotary_dim) * std::log(rope.original_max_positions / (rotations * 2 * M_PI)) /
             (2 * std::log(rope.theta));
    };
    double low = correction_dim(rope.beta_fast), high = correction_dim(rope.beta_slow);
    if (rope.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(rotary_dim - 1));
    if (low == high) high += 0.001;
    const auto ramp = ((at::arange(rotary_dim / 2, float_options) - low) / (high - low)).clamp(0, 1);
    const auto keep = 1 - ramp;
    const auto pos_freqs = powers(rope.theta);
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep;
  } else if (rope.type == "dynamic") {
    // Dynamic NTK: past the trained length the base grows with the sequence; within it, the plain rope.
    if (static_cast<double>(length) > rope.original_max_positions) {
      const double d = static_cast<double>(rotary_dim);
      const double base = rope.theta * std::pow(factor * static_cast<double>(length) / rope.original_max_positions - (factor - 1), d / (d - 2));
      inv_freq = powers(base).reciprocal();
    }
  } else if (rope.type == "longrope") {
    // LongRoPE (Phi-3): per-dimension divisors, the long set once the sequence passes the trained length.
    const auto& divisors = static_cast<double>(length) > rope.original_max_positions ? rope.long_factor : rope.short_factor;
    const auto ext = at::tensor(std::vector<float>(divisors.begin(), divisors.end()), float_options);
    inv_freq = 1.0 / (ext * powers(rope.theta));
  }
  return inv_freq;
}

bool depends_on_length(const RopeSettings& rope) { return rope.type == "dynamic" || rope.type == "longrope"; }

}  // namespace

Transformer::Transformer(const TransformerConfig& config, const WeightStore& weights, const at::TensorOptions& options)
    : config_(config), options_(options) {
  const auto V = config.vocab_size, H = config.hidden_size, I = config.intermediate_size, D = config.head_dim;
  const auto q_size = config.heads * D, kv_size = config.kv_heads * D;
  auto get = [&](const std::string& name, std::vector<std::int64_t> shape) { return weights.get(name, shape, options); };
  // Norm weights (and biases) are float32 whatever the compute dtype: norms run on the float32 residual stream.
  const auto float_options = options.dtype(at::kFloat);
  auto get_float = [&](const std::string& name, std::int64_t size) { return weights.get(name, {size}, float_options); };
  // RMSNorm weights; Gemma's (1 + w) is folded in here, in float32 as the reference computes it.
  auto norm_weight = [&](const std::string& name, std::int64_t size) {
    if (!config.norm_plus_one) return get_float(name, size);
    return weights.get(name, {size}, float_options) + 1;
  };
  if (config.family == "llama" || config.family == "phi3") {
    const bool phi3 = config.family == "phi3";
    embedding_ = get("model.embed_tokens.weight", {V, H});
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("model.layers.{}.", l);
      Layer layer;
      if (config.pre_norms) {
        layer.norm1_weight = norm_weight(p + "input_layernorm.weight", H);
        layer.norm2_weight = norm_weight(p + (config.post_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), H);
      }
      if (config.post_norms) {
        layer.post1_weight = norm_weight(p + "post_attention_layernorm.weight", H);
        layer.post2_weight = norm_weight(p + "post_feedforward_layernorm.weight", H);
      }
      if (config.qk_norm == QKNorm::per_head) {
        layer.q_norm = norm_weight(p + "self_attn.q_norm.weight", D);
        layer.k_norm = norm_weight(p + "self_attn.k_norm.weight", D);
      } else if (config.qk_norm == QKNorm::whole) {
        layer.q_norm = norm_weight(p + "self_attn.q_norm.weight", q_size);
        layer.k_norm = norm_weight(p + "self_attn.k_norm.weight", kv_size);
      }
      if (phi3) {
        layer.qkv_weight = get(p + "self_attn.qkv_proj.weight", {q_size + 2 * kv_size, H});
      } else {
        layer.qkv_weight = at::cat({get(p + "self_attn.q_proj.weight", {q_size, H}), get(p + "self_attn.k_proj.weight", {kv_size, H}),
                                    get(p + "self_attn.v_proj.weight", {kv_size, H})});
        if (weights.contains(p + "self_attn.q_proj.bias")) {
          layer.qkv_bias = at::cat({get(p + "self_attn.q_proj.bias", {q_size}), get(p + "self_attn.k_proj.bias", {kv_size}),
                                    get(p + "self_attn.v_proj.bias", {kv_size})});
        }
      }
      layer.out_weight = get(p + "self_attn.o_proj.weight", {H, q_size});
      layer.out_bias = optional_bias(weights, p + "self_attn.o_proj.bias", H, options);
      const bool sparse = config.experts > 0 && config.sparse_layers.at(static_cast<std::size_t>(l));
      if (sparse) {
        const bool mixtral = config.architecture == "MixtralForCausalLM";
        const auto E = config.experts, J = config.expert_intermediate_size;
        const auto m = p + (mixtral ? "block_sparse_moe." : "mlp.");
        layer.router = get(m + "gate.weight", {E, H});
        for (std::int64_t e = 0; e < E; ++e) {
          const auto x = fmt::format("{}experts.{}.", m, e);
          layer.expert_up.push_back(at::cat({get(x + (mixtral ? "w1.weight" : "gate_proj.weight"), {J, H}),
                                             get(x + (mixtral ? "w3.weight" : "up_proj.weight"), {J, H})}));
          layer.expert_down.push_back(get(x + (mixtral ? "w2.weight" : "down_proj.weight"), {H, J}));
        }
      } else if (phi3) {
        layer.up_weight = get(p + "mlp.gate_up_proj.weight", {2 * I, H});  // gate rows first, as Phi-3 splits it
        layer.down_weight = get(p + "mlp.down_proj.weight", {H, I});
      } else {
        layer.up_weight = at::cat({get(p + "mlp.gate_proj.weight", {I, H}), get(p + "mlp.up_proj.weight", {I, H})});
        if (weights.contains(p + "mlp.gate_proj.bias")) {
          layer.up_bias = at::cat({get(p + "mlp.gate_proj.bias", {I}), get(p + "mlp.up_proj.bias", {I})});
        }
        layer.down_weight = get(p + "mlp.down_proj.weight", {H, I});
        layer.down_bias = optional_bias(weights, p + "mlp.down_proj.bias", H, options);
      }
      layer.local = !config.local_layers.empty() && config.local_layers.at(static_cast<std::size_t>(l));
      layers_.push_back(std::move(layer));
    }
    final_norm_weight_ = norm_weight("model.norm.weight", H);
    lm_head_ = config.tied_embeddings ? embedding_ : get("lm_head.weight", {V, H});
  } else if (config.family == "gpt2") {
    const std::string prefix = weights.contains("transformer.wte.weight") ? "transformer." : "";
    embedding_ = get(prefix + "wte.weight", {V, H});
    position_embedding_ = get(prefix + "wpe.weight", {config.max_positions, H});
    // GPT-2 stores projections as Conv1D ([in, out]); transposed once here into the [out, in] of a linear layer.
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("{}h.{}.", prefix, l);
      Layer layer;
      layer.norm1_weight = get_float(p + "ln_1.weight", H);
      layer.norm1_bias = get_float(p + "ln_1.bias", H);
      layer.norm2_weight = get_float(p + "ln_2.weight", H);
      layer.norm2_bias = get_float(p + "ln_2.bias", H);
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
    final_norm_weight_ = get_float(prefix + "ln_f.weight", H);
    final_norm_bias_ = get_float(prefix + "ln_f.bias", H);
    lm_head_ = embedding_;
  } else {  // gpt_neox
    embedding_ = get("gpt_neox.embed_in.weight", {V, H});
    for (std::int64_t l = 0; l < config.layers; ++l) {
      const auto p = fmt::format("gpt_neox.layers.{}.", l);
      Layer layer;
      layer.norm1_weight = get_float(p + "input_layernorm.weight", H);
      layer.norm1_bias = get_float(p + "input_layernorm.bias", H);
      layer.norm2_weight = get_float(p + "post_attention_layernorm.weight", H);
      layer.norm2_bias = get_float(p + "post_attention_layernorm.bias", H);
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
    final_norm_weight_ = get_float("gpt_neox.final_layer_norm.weight", H);
    final_norm_bias_ = get_float("gpt_neox.final_layer_norm.bias", H);
    lm_head_ = config.tied_embeddings ? embedding_ : get("embed_out.weight", {V, H});
  }

  if (config.rotary_dim > 0) {
    const auto device = at::TensorOptions().dtype(at::kFloat).device(options.device());
    if (!depends_on_length(config.rope)) inv_freq_ = rope_inverse_frequencies(config.rope, config.rotary_dim, 0).to(device);
    if (config.has_local_rope) local_inv_freq_ = rope_inverse_frequencies(config.local_rope, config.rotary_dim, 0).to(device);
  }
}

KVCache Transformer::make_cache(std::int64_t batch, std::int64_t capacity) const {
  KVCache cache;
  // Keys and values are activations: float32 whatever the weights' dtype.
  const auto options = options_.dtype(at::kFloat);
  for (std::int64_t l = 0; l < config_.layers; ++l) {
    cache.keys.push_back(at::empty({batch, config_.kv_heads, capacity, config_.head_dim}, options));
    cache.values.push_back(at::empty({batch, config_.kv_heads, capacity, config_.head_dim}, options));
  }
  cache.positions = at::zeros({batch, capacity}, at::TensorOptions().dtype(at::kLong).device(options_.device()));
  return cache;
}

at::Tensor Transformer::norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::ScalarType out) const {
  const auto xf = x.to(at::kFloat);
  if (config_.norm == NormKind::layer) return at::layer_norm(xf, {x.size(-1)}, weight, bias, config_.norm_eps).to(out);
  // RMSNorm in float32 (weights are float32 too), rounded once to what the next step takes.
  auto scaled = xf * at::rsqrt(xf.pow(2).mean(-1, true).add_(config_.norm_eps));
  return scaled.mul_(weight).to(out);
}

Transformer::Rotary Transformer::rotary(const at::Tensor& positions, const RopeSettings& rope, const at::Tensor& fixed_inv_freq) const {
  auto inv_freq = fixed_inv_freq;  // [rotary_dim / 2], or [B, 1, rotary_dim / 2] per row
  if (!inv_freq.defined() && rope.type == "longrope") {
    // LongRoPE switches divisors at original_max_position_embeddings. transformers switches by the longest row of
    // the batch; mill switches by each row's own longest position, so numbers do not depend on batching (keys
    // already cached keep the rotation they were computed with, as in transformers' generation).
    const auto device = positions.device();
    const auto short_freq = rope_inverse_frequencies(rope, config_.rotary_dim, 0).to(device);
    const auto long_freq = rope_inverse_frequencies(rope, config_.rotary_dim, static_cast<std::int64_t>(rope.original_max_positions) + 1).to(device);
    const auto is_long = (std::get<0>(positions.max(1, true)) + 1 > static_cast<std::int64_t>(rope.original_max_positions)).unsqueeze(-1);
    inv_freq = at::where(is_long, long_freq, short_freq);
  } else if (!inv_freq.defined()) {
    // dynamic: by the longest position of this forward, as transformers does. mill never scores past
    // max_position_embeddings, where dynamic equals the plain rope.
    const auto length = positions.max().item<std::int64_t>() + 1;
    inv_freq = rope_inverse_frequencies(rope, config_.rotary_dim, length).to(positions.device());
  }
  const auto angles = (positions.to(at::kFloat).unsqueeze(-1) * inv_freq).unsqueeze(2);  // [B, T, 1, rotary_dim / 2]
  auto cos = angles.cos(), sin = angles.sin();
  if (rope.attention_factor != 1) {
    cos.mul_(rope.attention_factor);
    sin.mul_(rope.attention_factor);
  }
  return {cos, sin};
}

at::Tensor Transformer::attention(const Layer& layer, const at::Tensor& x, const Rotary& rotary, const at::Tensor& blocked,
                                  KVCache* cache, std::size_t index) const {
  const auto B = x.size(0), T = x.size(1), D = config_.head_dim;
  const auto Hq = config_.heads, Hkv = config_.kv_heads, G = Hq / Hkv;
  // Queries, keys and values in float32 (a copy only when the projection ran in 16 bits), rotated in place.
  const auto qkv = linear(x, layer.qkv_weight, layer.qkv_bias).to(at::kFloat);
  auto q = qkv.narrow(-1, 0, Hq * D);
  auto k = qkv.narrow(-1, Hq * D, Hkv * D);
  if (config_.qk_norm == QKNorm::whole) {
    q = norm(q, layer.q_norm, {}, at::kFloat);
    k = norm(k, layer.k_norm, {}, at::kFloat);
  }
  q = q.view({B, T, Hq, D});
  k = k.view({B, T, Hkv, D});
  if (config_.qk_norm == QKNorm::per_head) {
    q = norm(q, layer.q_norm, {}, at::kFloat);
    k = norm(k, layer.k_norm, {}, at::kFloat);
  }
  if (config_.rotary_dim > 0) {
    rotate_in_place(q, rotary.cos, rotary.sin, config_.rotary_dim);
    rotate_in_place(k, rotary.cos, rotary.sin, config_.rotary_dim);
  }
  auto v = qkv.narrow(-1, (Hq + Hkv) * D, Hkv * D).view({B, T, Hkv, D}).transpose(1, 2);
  k = k.transpose(1, 2);
  if (cache) {
    const auto start = cache->length;
    cache->keys[index].narrow(2, start, T).copy_(k);
    cache->values[index].narrow(2, start, T).copy_(v);
    k = cache->keys[index].narrow(2, 0, start + T);
    v = cache->values[index].narrow(2, 0, start + T);
  } else {
    k = k.contiguous();
    v = v.contiguous();
  }
  const auto S = k.size(2);
  const double scale = config_.attention_scale > 0 ? config_.attention_scale : 1.0 / std::sqrt(static_cast<double>(D));
  const double cap = config_.attention_softcap;
  const auto kt = k.transpose(-1, -2);
  // Query t never sees a key past S - T + t (runtime.hpp), so a block of queries needs only the keys up to its last
  // one. Without a mask the structure is plain causal: only the block's own square needs its upper triangle blocked.
  const auto block = std::max<std::int64_t>(1, std::min({T, kQueryBlock, kMaxBlockScores / std::max<std::int64_t>(1, B * Hq * S)}));
  auto out = at::empty({B, T, Hq, D}, qkv.options());
  for (std::int64_t t0 = 0; t0 < T; t0 += block) {
    const auto Tc = std::min(block, T - t0);
    const auto keys = S - T + t0 + Tc;
    // The G query heads of one key head share one matrix product (grouped-query attention without copying keys).
    const auto qc = q.narrow(1, t0, Tc).permute({0, 2, 1, 3}).reshape({B, Hkv, G * Tc, D});
    auto scores = at::matmul(qc, kt.narrow(-1, 0, keys)).mul_(scale).view({B, Hq, Tc, keys});
    if (cap > 0) scores.div_(cap).tanh_().mul_(cap);  // Gemma 2's soft-capping, before the mask
    if (blocked.defined()) {
      scores.masked_fill_(blocked.narrow(2, t0, Tc).narrow(3, 0, keys), -std::numeric_limits<float>::infinity());
    } else if (Tc > 1) {
      const auto above = at::ones({Tc, Tc}, scores.options().dtype(at::kBool)).triu_(1);
      scores.narrow(-1, keys - Tc, Tc).masked_fill_(above, -std::numeric_limits<float>::infinity());
    }
    const auto probs = at::softmax(scores, -1);
    const auto values = at::matmul(probs.view({B, Hkv, G * Tc, keys}), v.narrow(2, 0, keys));
    out.narrow(1, t0, Tc).copy_(values.view({B, Hq, Tc, D}).transpose(1, 2));
  }
  return linear(out.view({B, T, Hq * D}).to(options_.dtype().toScalarType()), layer.out_weight, layer.out_bias);
}

at::Tensor Transformer::gated(const at::Tensor& gate_up, std::int64_t width) const {
  const auto gate = gate_up.narrow(-1, 0, width), up = gate_up.narrow(-1, width, width);
  if (config_.activation == Activation::gelu_tanh_gated) return at::gelu(gate, "tanh") * up;
  return at::silu(gate) * up;
}

at::Tensor Transformer::mlp(const Layer& layer, const at::Tensor& x) const {
  if (layer.router.defined()) return mixture_of_experts(layer, x);
  auto h = linear(x, layer.up_weight, layer.up_bias);
  if (config_.activation == Activation::silu_gated || config_.activation == Activation::gelu_tanh_gated) {
    h = gated(h, config_.intermediate_size);
  } else {
    h = at::gelu(h, config_.activation == Activation::gelu_tanh ? "tanh" : "none");
  }
  return linear(h, layer.down_weight, layer.down_bias);
}

// Mixtral / Qwen3-MoE: softmax over the router's logits in float32, the top experts_per_token kept (and, where the
// model says so, renormalised to sum to one), each token's output the weighted sum of its experts' SwiGLU MLPs.
at::Tensor Transformer::mixture_of_experts(const Layer& layer, const at::Tensor& x) const {
  const auto H = config_.hidden_size, K = config_.experts_per_token;
  const auto flat = x.reshape({-1, H});
  const auto probs = at::softmax(at::linear(flat, layer.router), -1, at::kFloat);
  auto top = at::topk(probs, K, -1);
  auto weights = std::get<0>(top);
  const auto chosen = std::get<1>(top);
  if (config_.normalize_top_k) weights = weights / weights.sum(-1, true);
  weights = weights.to(x.scalar_type()).reshape({-1});
  auto out = at::zeros_like(flat);
  for (std::size_t e = 0; e < layer.expert_up.size(); ++e) {
    const auto hits = (chosen == static_cast<std::int64_t>(e)).nonzero();  // [M, 2]: token, rank
    if (hits.size(0) == 0) continue;
    const auto tokens = hits.select(1, 0), ranks = hits.select(1, 1);
    const auto h = gated(at::linear(flat.index_select(0, tokens), layer.expert_up[e]), config_.expert_intermediate_size);
    const auto y = at::linear(h, layer.expert_down[e]) * weights.index_select(0, tokens * K + ranks).unsqueeze(-1);
    out.index_add_(0, tokens, y);
  }
  return out.view(x.sizes());
}

at::Tensor Transformer::forward(const at::Tensor& tokens, const at::Tensor& positions, const at::Tensor& mask,
                                KVCache* cache) const {
  const auto B = tokens.size(0), T = tokens.size(1);
  if (cache && cache->length + T > cache->capacity()) {
    throw Error(fmt::format("internal: KV cache overflow ({} + {} > {})", cache->length, T, cache->capacity()),
                ExitCode::internal);
  }
  const auto compute = options_.dtype().toScalarType();
  // The residual stream is float32 whatever the weights' dtype (as llama.cpp keeps it): 16-bit runs round only
  // what goes into matrix products, not the sum that every layer adds to.
  auto x = at::embedding(embedding_, tokens).to(at::kFloat);
  // Gemma multiplies by sqrt(hidden_size) rounded to the compute dtype, as the reference does.
  if (config_.embedding_scale > 0) x.mul_(at::scalar_tensor(config_.embedding_scale, options_).item<double>());
  if (config_.learned_positions) x.add_(at::embedding(position_embedding_, positions));
  Rotary global, local;
  if (config_.rotary_dim > 0) {
    global = rotary(positions, config_.rope, inv_freq_);
    local = config_.has_local_rope ? rotary(positions, config_.local_rope, local_inv_freq_) : global;
  }
  at::Tensor blocked = mask.defined() ? mask.logical_not() : at::Tensor();
  at::Tensor blocked_local;
  if (config_.local_window > 0) {
    const auto past = cache ? cache->length : 0;
    if (!blocked.defined()) {  // causal: query t sees keys up to past + t
      const auto S = past + T;
      blocked = at::ones({T, S}, tokens.options().dtype(at::kBool)).triu_(past + 1).view({1, 1, T, S}).expand({B, 1, T, S});
    }
    // Sliding-window layers also block keys local_window or more positions back (by position, so prefixes,
    // branches and left padding stay right).
    at::Tensor key_positions = positions;
    if (cache) {
      cache->positions.narrow(1, cache->length, T).copy_(positions);
      key_positions = cache->positions.narrow(1, 0, cache->length + T);
    }
    const auto distance = positions.unsqueeze(-1) - key_positions.unsqueeze(1);  // [B, T, S]
    blocked_local = blocked.logical_or((distance >= config_.local_window).unsqueeze(1));
  } else if (cache) {
    cache->positions.narrow(1, cache->length, T).copy_(positions);
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    const auto& layer_blocked = layer.local ? blocked_local : blocked;
    const auto& layer_rotary = layer.local ? local : global;
    // What a matrix product takes: the normed stream (or the stream itself) in the compute dtype.
    auto pre = [&](const at::Tensor& weight, const at::Tensor& bias) { return weight.defined() ? norm(x, weight, bias, compute) : x.to(compute); };
    auto attended = attention(layer, pre(layer.norm1_weight, layer.norm1_bias), layer_rotary, layer_blocked, cache, i);
    if (config_.parallel_residual) {
      auto transformed = mlp(layer, pre(layer.norm2_weight, layer.norm2_bias));
      x.add_(attended).add_(transformed);
    } else {
      x.add_(layer.post1_weight.defined() ? norm(attended, layer.post1_weight, {}, at::kFloat) : attended);
      auto transformed = mlp(layer, pre(layer.norm2_weight, layer.norm2_bias));
      x.add_(layer.post2_weight.defined() ? norm(transformed, layer.post2_weight, {}, at::kFloat) : transformed);
    }
  }
  if (cache) cache->length += T;
  return norm(x, final_norm_weight_, final_norm_bias_, at::kFloat);
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  auto logits = at::linear(hidden.to(options_.dtype().toScalarType()), lm_head_).to(at::kFloat);
  if (config_.final_softcap > 0) logits.div_(config_.final_softcap).tanh_().mul_(config_.final_softcap);
  return logits;
}

at::Tensor Transformer::log_probs(const at::Tensor& hidden) const { return at::log_softmax(logits(hidden), -1); }

at::Tensor Transformer::token_logits(const at::Tensor& hidden, const at::Tensor& tokens) const {
  // One dot product per row with the token's LM-head row, both in float32: in 16-bit runs this logit is not
  // rounded to 16 bits as the full matrix product's outputs are.
  auto logits = (lm_head_.index_select(0, tokens).to(at::kFloat) * hidden.to(at::kFloat)).sum(-1);
  if (config_.final_softcap > 0) logits.div_(config_.final_softcap).tanh_().mul_(config_.final_softcap);
  return logits;
}

std::int64_t Transformer::parameter_count() const {
  std::int64_t total = embedding_.numel() + (lm_head_.is_same(embedding_) ? 0 : lm_head_.numel());
  if (position_embedding_.defined()) total += position_embedding_.numel();
  for (const auto* t : {&final_norm_weight_, &final_norm_bias_}) {
    if (t->defined()) total += t->numel();
  }
  for (const auto& layer : layers_) {
    for (const auto* t : {&layer.norm1_weight, &layer.norm1_bias, &layer.norm2_weight, &layer.norm2_bias, &layer.post1_weight,
                          &layer.post2_weight, &layer.q_norm, &layer.k_norm, &layer.qkv_weight, &layer.qkv_bias,
                          &layer.out_weight, &layer.out_bias, &layer.up_weight, &layer.up_bias, &layer.down_weight,
                          &layer.down_bias, &layer.router}) {
      if (t->defined()) total += t->numel();
    }
    for (const auto& t : layer.expert_up) total += t.numel();
    for (const auto& t : layer.expert_down) total += t.numel();
  }
  return total;
}

}  // namespace mill::runtime
