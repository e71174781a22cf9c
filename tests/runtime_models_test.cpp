// The in-process runtime against references it did not produce: Karpathy's trained stories260K with log-probabilities
// from an independent float64 implementation (../shared/models/stories260k-hf), and every architecture's demo
// checkpoint against a float64 forward written out here from the published model definitions. Also the device
// line and the CPU-fallback warning of a model load. Skipped when the plugin was not built (no libtorch).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mill/model/checkpoint_files.hpp"
#include "mill/model/demo_model.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/model/safetensors.hpp"
#include "mill/tokenizers/tokenizer.hpp"
#include "runtime_support.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::read_text;
using mill::test::TempDir;
using mill::test::write_text;

using mill::test::runtime_test_device;

namespace {

std::unique_ptr<ModelBackend> load_float32(const std::filesystem::path& folder, const std::string& args = "") {
  return load_runtime_backend(ModelSpec::parse(folder.string() + "[dtype=float32,device=" + runtime_test_device() +
                                               (args.empty() ? "" : "," + args) + "]"));
}

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(read_text(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

// GELU (tanh form) as llama.cpp's CPU build computes it (ggml-cpu's vec.h with GGML_GELU_FP16, facts from its
// source): inputs of magnitude under 10 are rounded to half precision and looked up in a table of the float32
// function evaluated at every half value, rounded to half precision; -10 and below give 0, 10 and above x.
double ggml_cpu_gelu(float x) {
  if (x <= -10.0f) return 0.0;
  if (x >= 10.0f) return x;
  const float h = safetensors::f16_to_float(safetensors::float_to_f16(x));
  const float y = 0.5f * h * (1.0f + std::tanh(0.79788456080286535587989211986876f * h * (1.0f + 0.044715f * h * h)));
  return safetensors::f16_to_float(safetensors::float_to_f16(y));
}

// ---------------------------------------------------------------------------------------------------------------
// A float64 forward of the decoder families mill runs, token by token, from config.json and model.safetensors
// (F32). Written from the model definitions (transformers' modeling_<name>.py) as plain loops, sharing no code with
// the runtime's tensor implementation.
class ReferenceModel {
 public:
  // half_precision_gelu: Gemma's GELU as llama.cpp's CPU build computes it (see ggml_cpu_gelu) instead of the exact
  // function, to show what llama.cpp's difference from the definition is made of.
  explicit ReferenceModel(const std::filesystem::path& folder, bool half_precision_gelu = false)
      : config_(nlohmann::json::parse(read_text(folder / "config.json"))), bytes_(read_text(folder / "model.safetensors")),
        header_(safetensors::parse_header(reinterpret_cast<const std::byte*>(bytes_.data()), bytes_.size(), "model")),
        half_precision_gelu_(half_precision_gelu) {
    arch_ = config_["architectures"][0];
    gemma_ = arch_ == "Gemma2ForCausalLM" || arch_ == "Gemma3ForCausalLM";
    H_ = config_["hidden_size"];
    Hq_ = config_["num_attention_heads"];
    Hkv_ = config_.value("num_key_value_heads", Hq_);
    D_ = config_.value("head_dim", H_ / Hq_);
    I_ = config_["intermediate_size"];
    L_ = config_["num_hidden_layers"];
    V_ = config_["vocab_size"];
    eps_ = config_.value("rms_norm_eps", 1e-6);
    rotary_ = static_cast<int>(D_ * config_.value("partial_rotary_factor", 1.0));
  }

  // log P(ids[t+1] | ids[..t]) for every t.
  std::vector<double> logprobs(const std::vector<int>& ids) const {
    const int T = static_cast<int>(ids.size());
    const auto embedding = weight("model.embed_tokens.weight");
    std::vector<std::vector<double>> x;
    for (int t : ids) {
      x.emplace_back(embedding.begin() + static_cast<std::ptrdiff_t>(t) * H_, embedding.begin() + static_cast<std::ptrdiff_t>(t + 1) * H_);
      if (gemma_) {
        for (auto& v : x.back()) v *= static_cast<float>(std::sqrt(static_cast<double>(H_)));  // rounded like the reference
      }
    }
    for (int l = 0; l < L_; ++l) layer(l, x, T);
    const auto final_norm = weight("model.norm.weight");
    const auto head = config_.value("tie_word_embeddings", gemma_) ? embedding : weight("lm_head.weight");
    const double final_cap = number_or("final_logit_softcapping", arch_ == "Gemma2ForCausalLM" ? 30.0 : 0.0);
    std::vector<double> out;
    for (int t = 0; t + 1 < T; ++t) {
      auto logits = matvec(head, rms_norm(x[t], final_norm), V_);
      if (final_cap > 0) {
        for (auto& z : logits) z = final_cap * std::tanh(z / final_cap);
      }
      const double top = *std::max_element(logits.begin(), logits.end());
      double total = 0;
      for (double z : logits) total += std::exp(z - top);
      out.push_back(logits[ids[t + 1]] - top - std::log(total));
    }
    return out;
  }

 private:
  double number_or(const char* name, double fallback) const {
    return config_.contains(name) && config_[name].is_number() ? config_[name].get<double>() : fallback;
  }
  bool has(const std::string& name) const { return header_.find(name) != nullptr; }
  std::vector<double> weight(const std::string& name) const {
    const auto* info = header_.find(name);
    if (!info) throw std::runtime_error("reference: no tensor " + name);
    std::vector<double> values(info->numel());
    for (std::size_t i = 0; i < values.size(); ++i) {
      float v;
      std::memcpy(&v, bytes_.data() + header_.data_offset + info->begin + 4 * i, 4);
      values[i] = v;
    }
    return values;
  }
  static std::vector<double> matvec(const std::vector<double>& w, const std::vector<double>& x, std::int64_t rows,
                                    std::size_t row_offset = 0) {
    std::vector<double> out(static_cast<std::size_t>(rows), 0.0);
    const std::size_t cols = x.size();
    for (std::size_t r = 0; r < out.size(); ++r) {
      for (std::size_t c = 0; c < cols; ++c) out[r] += w[(row_offset + r) * cols + c] * x[c];
    }
    return out;
  }
  // RMSNorm; Gemma scales by (1 + w).
  std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<double>& w) const {
    double mean = 0;
    for (double v : x) mean += v * v / static_cast<double>(x.size());
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] / std::sqrt(mean + eps_) * (gemma_ ? 1 + w[i] : w[i]);
    return out;
  }
  // Per-head norm of a [heads * D] vector.
  void norm_heads(std::vector<double>& v, const std::vector<double>& w) const {
    for (std::size_t h = 0; h * D_ < v.size(); ++h) {
      std::vector<double> head(v.begin() + static_cast<std::ptrdiff_t>(h * D_), v.begin() + static_cast<std::ptrdiff_t>((h + 1) * D_));
      head = rms_norm(head, w);
      std::copy(head.begin(), head.end(), v.begin() + static_cast<std::ptrdiff_t>(h * D_));
    }
  }

  // Inverse frequencies and the cos/sin factor of one layer kind, for a sequence of `length` tokens.
  std::pair<std::vector<double>, double> rope(bool local, int length) const {
    double theta = number_or("rope_theta", 10000);
    nlohmann::json scaling = config_.contains("rope_scaling") ? config_["rope_scaling"] : nlohmann::json();
    if (local && arch_ == "Gemma3ForCausalLM") {
      theta = number_or("rope_local_base_freq", 10000);
      scaling = nullptr;  // the local rope is unscaled
    }
    const std::string type = scaling.is_object() ? scaling.value("rope_type", scaling.value("type", std::string("default"))) : "default";
    const int half = rotary_ / 2;
    std::vector<double> inv(static_cast<std::size_t>(half));
    double attention_factor = 1;
    for (int i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(theta, 2.0 * i / rotary_);
    if (type == "linear") {
      for (auto& f : inv) f /= scaling["factor"].get<double>();
    } else if (type == "yarn") {
      const double factor = scaling["factor"], original = scaling["original_max_position_embeddings"];
      const auto dim_for = [&](double rotations) { return rotary_ * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(theta)); };
      const double low = std::max(0.0, std::floor(dim_for(32))), high = std::min(rotary_ - 1.0, std::ceil(dim_for(1)));
      for (int i = 0; i < half; ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);  // 0: keep the frequency, 1: divide it
        inv[i] = inv[i] / factor * ramp + inv[i] * (1 - ramp);
      }
      attention_factor = 0.1 * std::log(factor) + 1;
    } else if (type == "longrope") {
      const double original = number_or("original_max_position_embeddings", 0);
      const auto& divisors = length > original ? scaling["long_factor"] : scaling["short_factor"];
      for (int i = 0; i < half; ++i) inv[i] /= divisors[static_cast<std::size_t>(i)].get<double>();
      const double factor = number_or("max_position_embeddings", 0) / original;
      attention_factor = std::sqrt(1 + std::log(factor) / std::log(original));
    } else if (type != "default") {
      throw std::runtime_error("reference: rope type " + type);
    }
    return {inv, attention_factor};
  }
  void rotate(std::vector<double>& v, int heads, int position, const std::pair<std::vector<double>, double>& rope) const {
    const int half = rotary_ / 2;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < half; ++i) {
        const double angle = position * rope.first[i];
        const double c = std::cos(angle) * rope.second, s = std::sin(angle) * rope.second;
        const double a = v[h * D_ + i], b = v[h * D_ + i + half];
        v[h * D_ + i] = a * c - b * s;
        v[h * D_ + i + half] = b * c + a * s;
      }
    }
  }
  bool is_local(int l) const {
    if (config_.contains("layer_types")) return config_["layer_types"][static_cast<std::size_t>(l)] == "sliding_attention";
    return arch_ == "Phi3ForCausalLM" && config_.contains("sliding_window") && config_["sliding_window"].is_number();
  }
  // gate/up of a SwiGLU or GeGLU MLP from the normed input.
  std::vector<double> gated_mlp(const std::vector<double>& gate, const std::vector<double>& up) const {
    std::vector<double> act(gate.size());
    for (std::size_t i = 0; i < gate.size(); ++i) {
      const double g = gate[i];
      if (gemma_ && half_precision_gelu_) {
        act[i] = ggml_cpu_gelu(static_cast<float>(g)) * up[i];
      } else {
        act[i] = (gemma_ ? 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g))) : g / (1 + std::exp(-g))) * up[i];
      }
    }
    return act;
  }
  std::vector<double> feed_forward(int l, const std::vector<double>& h) const {
    const auto p = "model.layers." + std::to_string(l) + ".";
    if (arch_ == "Phi3ForCausalLM") {
      const auto w = weight(p + "mlp.gate_up_proj.weight");
      return matvec(weight(p + "mlp.down_proj.weight"), gated_mlp(matvec(w, h, I_), matvec(w, h, I_, I_)), H_);
    }
    const bool mixtral = arch_ == "MixtralForCausalLM";
    const std::string router = p + (mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
    if (!has(router)) {
      return matvec(weight(p + "mlp.down_proj.weight"),
                    gated_mlp(matvec(weight(p + "mlp.gate_proj.weight"), h, I_), matvec(weight(p + "mlp.up_proj.weight"), h, I_)), H_);
    }
    // Mixture of experts: softmax over all experts, the top k kept (renormalised for Mixtral and norm_topk_prob).
    const int E = config_.value(mixtral ? "num_local_experts" : "num_experts", 0), K = config_["num_experts_per_tok"];
    const std::int64_t J = mixtral ? I_ : config_["moe_intermediate_size"].get<std::int64_t>();
    auto logits = matvec(weight(router), h, E);
    const double top = *std::max_element(logits.begin(), logits.end());
    double total = 0;
    for (auto& z : logits) total += (z = std::exp(z - top));
    std::vector<int> order(static_cast<std::size_t>(E));
    for (int e = 0; e < E; ++e) order[e] = e;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    double kept = 0;
    for (int k = 0; k < K; ++k) kept += logits[order[k]] / total;
    const bool renormalise = mixtral || config_.value("norm_topk_prob", false);
    std::vector<double> out(static_cast<std::size_t>(H_), 0.0);
    for (int k = 0; k < K; ++k) {
      const int e = order[k];
      const double share = logits[e] / total / (renormalise ? kept : 1.0);
      const auto x = p + (mixtral ? "block_sparse_moe." : "mlp.") + "experts." + std::to_string(e) + ".";
      const auto y = matvec(weight(x + (mixtral ? "w2.weight" : "down_proj.weight")),
                            gated_mlp(matvec(weight(x + (mixtral ? "w1.weight" : "gate_proj.weight")), h, J),
                                      matvec(weight(x + (mixtral ? "w3.weight" : "up_proj.weight")), h, J)),
                            H_);
      for (std::int64_t i = 0; i < H_; ++i) out[i] += share * y[i];
    }
    return out;
  }

  void layer(int l, std::vector<std::vector<double>>& x, int T) const {
    const auto p = "model.layers." + std::to_string(l) + ".";
    const bool olmo2 = arch_ == "Olmo2ForCausalLM", phi3 = arch_ == "Phi3ForCausalLM";
    const bool local = is_local(l);
    const int window = local ? config_["sliding_window"].get<int>() : 0;
    const auto rope_values = rope(local, T - 1);  // the forward runs ids[..T-2] (the last id is only predicted)
    const double scale = gemma_ ? 1 / std::sqrt(number_or("query_pre_attn_scalar", static_cast<double>(D_))) : 1 / std::sqrt(static_cast<double>(D_));
    const double cap = number_or("attn_logit_softcapping", arch_ == "Gemma2ForCausalLM" ? 50.0 : 0.0);
    std::vector<double> wq, wk, wv, wqkv;
    if (phi3) {
      wqkv = weight(p + "self_attn.qkv_proj.weight");
    } else {
      wq = weight(p + "self_attn.q_proj.weight");
      wk = weight(p + "self_attn.k_proj.weight");
      wv = weight(p + "self_attn.v_proj.weight");
    }
    const auto wo = weight(p + "self_attn.o_proj.weight");
    std::vector<std::vector<double>> q, k, v;
    for (int t = 0; t < T; ++t) {
      const auto h = olmo2 ? x[t] : rms_norm(x[t], weight(p + "input_layernorm.weight"));
      if (phi3) {
        q.push_back(matvec(wqkv, h, Hq_ * D_));
        k.push_back(matvec(wqkv, h, Hkv_ * D_, Hq_ * D_));
        v.push_back(matvec(wqkv, h, Hkv_ * D_, (Hq_ + Hkv_) * D_));
      } else {
        q.push_back(matvec(wq, h, Hq_ * D_));
        k.push_back(matvec(wk, h, Hkv_ * D_));
        v.push_back(matvec(wv, h, Hkv_ * D_));
      }
      if (olmo2) {  // over the whole projection
        q.back() = rms_norm(q.back(), weight(p + "self_attn.q_norm.weight"));
        k.back() = rms_norm(k.back(), weight(p + "self_attn.k_norm.weight"));
      } else if (has(p + "self_attn.q_norm.weight")) {  // per head
        norm_heads(q.back(), weight(p + "self_attn.q_norm.weight"));
        norm_heads(k.back(), weight(p + "self_attn.k_norm.weight"));
      }
      rotate(q.back(), static_cast<int>(Hq_), t, rope_values);
      rotate(k.back(), static_cast<int>(Hkv_), t, rope_values);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<double> attended(static_cast<std::size_t>(Hq_ * D_), 0.0);
      for (int h = 0; h < Hq_; ++h) {
        const auto g = h / (Hq_ / Hkv_);
        std::vector<double> scores;
        const int first = window > 0 ? std::max(0, t - window + 1) : 0;
        for (int s = first; s <= t; ++s) {
          double dot = 0;
          for (int d = 0; d < D_; ++d) dot += q[t][h * D_ + d] * k[s][g * D_ + d];
          dot *= scale;
          if (cap > 0) dot = cap * std::tanh(dot / cap);
          scores.push_back(dot);
        }
        const double top = *std::max_element(scores.begin(), scores.end());
        double total = 0;
        for (auto& s : scores) total += (s = std::exp(s - top));
        for (int s = first; s <= t; ++s) {
          for (int d = 0; d < D_; ++d) attended[h * D_ + d] += scores[s - first] / total * v[s][g * D_ + d];
        }
      }
      auto out = matvec(wo, attended, H_);
      if (olmo2 || gemma_) out = rms_norm(out, weight(p + "post_attention_layernorm.weight"));
      for (int i = 0; i < H_; ++i) x[t][i] += out[i];
      const auto norm2 = olmo2 ? x[t] : rms_norm(x[t], weight(p + (gemma_ ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")));
      auto ff = feed_forward(l, norm2);
      if (olmo2 || gemma_) ff = rms_norm(ff, weight(p + "post_feedforward_layernorm.weight"));
      for (int i = 0; i < H_; ++i) x[t][i] += ff[i];
    }
  }

  nlohmann::json config_;
  std::string bytes_;
  safetensors::Header header_;
  std::string arch_;
  bool half_precision_gelu_ = false;
  bool gemma_ = false;
  std::int64_t H_ = 0, Hq_ = 0, Hkv_ = 0, D_ = 0, I_ = 0, L_ = 0, V_ = 0;
  int rotary_ = 0;
  double eps_ = 1e-6;
};

std::vector<int> ids_of(const Tokenizer& tokenizer, const std::string& text) {
  const auto ids = tokenizer.encode(text, true);
  std::vector<int> out(ids.begin(), ids.end());
  if (out.empty() || (tokenizer.bos_id() && out.front() != *tokenizer.bos_id())) {
    out.insert(out.begin(), tokenizer.bos_id().value_or(tokenizer.eos_id().value_or(0)));
  }
  return out;
}

}  // namespace

TEST_CASE("runtime: trained stories260K matches the float64 reference per token, with the same ids from both tokenizer "
          "files",
          "[runtime][real]") {
  REQUIRE_PLUGIN();
  const auto folder = mill::test::shared_path("models/stories260k-hf");
  if (folder.empty()) {
    WARN("../shared/models/stories260k-hf is absent; skipped");
    return;
  }
  const auto lines = read_jsonl(folder / "reference-logprobs.jsonl");
  REQUIRE(lines.size() == 26);
  const auto from_model = Tokenizer::load(folder / "tokenizer.model");
  const auto from_json = Tokenizer::load(folder / "tokenizer.json");
  std::vector<std::vector<std::int32_t>> sequences;
  for (const auto& line : lines) {
    INFO(line["name"].get<std::string>());
    const auto expected = line["ids"].get<std::vector<std::int32_t>>();
    const auto text = line["text"].get<std::string>();
    CHECK(from_model->encode(text, true) == expected);
    CHECK(from_json->encode(text, true) == expected);
    sequences.push_back(expected);
  }
  auto backend = load_float32(folder);
  const auto scored = backend->token_logprobs(sequences);
  REQUIRE(scored.size() == lines.size());
  double worst = 0, total = 0, reference_total = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto reference = lines[i]["logprobs"].get<std::vector<double>>();
    INFO(lines[i]["name"].get<std::string>());
    REQUIRE(scored[i].size() == reference.size());
    for (std::size_t t = 0; t < reference.size(); ++t) {
      worst = std::max(worst, std::abs(scored[i][t] - reference[t]));
      CHECK(scored[i][t] == Approx(reference[t]).margin(1e-4));
      total += scored[i][t];
    }
    reference_total += lines[i]["total"].get<double>();
  }
  INFO("largest per-token difference " << worst);
  CHECK(worst < 1e-4);
  CHECK(total == Approx(reference_total).margin(1e-3));
  CHECK(reference_total < -100);  // 1,369 real predictions, not an empty file
}

TEST_CASE("runtime: mill eval of a perplexity task on stories260K gives the reference log-likelihoods", "[runtime][real]") {
  REQUIRE_PLUGIN();
  const auto folder = mill::test::shared_path("models/stories260k-hf");
  if (folder.empty()) {
    WARN("../shared/models/stories260k-hf is absent; skipped");
    return;
  }
  const auto lines = read_jsonl(folder / "reference-logprobs.jsonl");
  TempDir tasks, out;
  write_text(tasks / "stories.yaml", "task: stories_reference\noutput_type: perplexity\neval_split: test\ntext_field: text\n"
                                     "dataset:\n  format: jsonl\n  path: " +
                                         (folder / "reference-logprobs.jsonl").string() + "\n");
  const auto run = mill::test::run_mill({"--output_dir", out.path().string(), "eval", folder.string() + "[dtype=float32,device=cpu]",
                                         "stories_reference", "--extra_task_paths", tasks.path().string()});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  // The load line is printed at the default log level.
  CHECK_THAT(run.err, Catch::Contains("LlamaForCausalLM, 260032 parameters, F32 weights) on cpu as float32"));
  std::filesystem::path journal;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(out.path())) {
    if (entry.path().string().find(".journal.jsonl") != std::string::npos) journal = entry.path();
  }
  REQUIRE(!journal.empty());
  const auto samples = read_jsonl(journal);
  REQUIRE(samples.size() == lines.size());
  double total = 0, reference_total = 0;
  int tokens = 0, reference_tokens = 0;
  for (const auto& sample : samples) {
    const auto& line = lines.at(sample["doc_id"].get<std::size_t>());
    INFO(line["name"].get<std::string>());
    CHECK(sample["response"]["n_tokens"].get<int>() == line["n_predicted"].get<int>());
    CHECK(sample["response"]["logprob"].get<double>() == Approx(line["total"].get<double>()).margin(1e-3));
    total += sample["response"]["logprob"].get<double>();
    tokens += sample["response"]["n_tokens"].get<int>();
    reference_total += line["total"].get<double>();
    reference_tokens += line["n_predicted"].get<int>();
  }
  CHECK(tokens == reference_tokens);
  CHECK(total == Approx(reference_total).margin(2e-3));
}

TEST_CASE("runtime: a model load prints its device line, and device=auto on the CPU warns when the node has GPUs",
          "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir model, tasks, bin;
  DemoModelOptions options;
  options.hidden_size = 16;
  options.layers = 1;
  options.heads = 2;
  options.kv_heads = 1;
  options.intermediate_size = 16;
  options.bpe_merges = 0;
  write_demo_model(model.path(), options);
  write_text(tasks / "one.yaml", "task: one_text\noutput_type: perplexity\neval_split: test\ndataset:\n  format: inline\n"
                                 "  documents:\n    test:\n      - {text: \"The mill turns.\"}\n");
  // A stand-in nvidia-smi that lists two GPUs, as the real one does on a GPU node.
  write_text(bin / "nvidia-smi", "#!/bin/sh\n[ \"$1\" = -L ] || exit 1\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n"
                                 "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n");
  std::filesystem::permissions(bin / "nvidia-smi", std::filesystem::perms::owner_all);
  auto eval = [&](const std::string& device, std::map<std::string, std::string> env, const std::string& level = "") {
    TempDir out;
    std::vector<std::string> args = {"--output_dir", out.path().string()};
    if (!level.empty()) args.insert(args.end(), {"--log_level", level});
    args.insert(args.end(), {"eval", model.path().string() + "[dtype=float32,device=" + device + "]", "one_text",
                             "--extra_task_paths", tasks.path().string(), "--quiet"});
    const auto run = mill::test::run_mill(args, env);
    INFO(run.err);
    CHECK(run.exit_code == 0);
    return run.err;
  };
  if (runtime_test_device() != "cpu") {
    WARN("the CPU-fallback warning is checked on CPU runs only (MILL_TEST_DEVICE is set)");
    return;
  }
  const auto warning = std::string("device=auto runs the model on the CPU although this node has GPUs");
  // No GPUs: the device line only.
  const auto plain = eval("auto", {{"CUDA_VISIBLE_DEVICES", ""}, {"PATH", bin.path().string()}});
  CHECK_THAT(plain, Catch::Contains("parameters, F32 weights) on cpu as float32, loaded in"));
  CHECK_THAT(plain, !Catch::Contains(warning));
  // SLURM gave this job GPUs, but the runtime runs on the CPU: one warning line naming why and where to read on.
  const auto visible = eval("auto", {{"CUDA_VISIBLE_DEVICES", "0,1"}});
  CHECK_THAT(visible, Catch::Contains(warning + " (CUDA_VISIBLE_DEVICES=0,1)"));
  CHECK_THAT(visible, Catch::Contains("CPU-only libtorch"));
  CHECK_THAT(visible, Catch::Contains("docs/runtime.md"));
  // No CUDA_VISIBLE_DEVICES: nvidia-smi decides.
  ::unsetenv("CUDA_VISIBLE_DEVICES");
  const auto listed = eval("auto", {{"PATH", bin.path().string()}});
  CHECK_THAT(listed, Catch::Contains(warning + " (nvidia-smi lists 2 GPUs)"));
  // device=cpu is a choice: no warning. --log_level error silences the device line too.
  CHECK_THAT(eval("cpu", {{"CUDA_VISIBLE_DEVICES", "0"}}), !Catch::Contains(warning));
  const auto quiet = eval("auto", {{"CUDA_VISIBLE_DEVICES", ""}}, "error");
  CHECK_THAT(quiet, !Catch::Contains("on cpu as float32"));
}

TEST_CASE("runtime: every architecture's demo checkpoint matches a float64 reference forward", "[runtime]") {
  REQUIRE_PLUGIN();
  // Long enough to cross the demo sliding windows (12, 24 tokens) and Phi-3's longrope switch (32).
  const std::string text =
      "The miller carries the grain to the stones, and the stones grind it into flour for the town. Water flows over "
      "the wheel, the wheel turns the shaft, and the shaft turns the stones.";
  for (const std::string architecture : {"qwen3", "olmo2", "gemma2", "gemma3", "phi3", "mixtral", "qwen3_moe"}) {
    INFO(architecture);
    TempDir dir;
    DemoModelOptions options;
    options.architecture = architecture;
    options.bpe_merges = 64;
    write_demo_model(dir.path(), options);
    const auto tokenizer = Tokenizer::load(dir.path());
    const auto ids = ids_of(*tokenizer, text);
    REQUIRE(ids.size() > 40);
    const ReferenceModel reference(dir.path());
    const auto expected = reference.logprobs(ids);
    auto backend = load_float32(dir.path());
    const auto got = backend->token_logprobs({std::vector<std::int32_t>(ids.begin(), ids.end())}).at(0);
    REQUIRE(got.size() == expected.size());
    double worst = 0, sum = 0;
    for (std::size_t t = 0; t < got.size(); ++t) {
      worst = std::max(worst, std::abs(got[t] - expected[t]));
      sum += expected[t];
    }
    INFO("largest per-token difference " << worst << " over " << got.size() << " tokens, total " << sum);
    CHECK(worst < 1e-4);
    CHECK(sum < -10.0);  // real, non-trivial numbers

    // The batched, prefix-sharing and cached paths give the numbers of one plain forward (sliding windows and
    // experts included).
    const std::vector<LoglikelihoodRequest> requests = {
        {text.substr(0, 120), text.substr(120, 20)}, {text.substr(0, 120), text.substr(120, 7)}, {text.substr(0, 60), " the wheel"}};
    const auto shared = backend->loglikelihood(requests);
    const auto separate = load_float32(dir.path(), "batch_size=1,share_prefixes=false")->loglikelihood(requests);
    for (std::size_t i = 0; i < requests.size(); ++i) CHECK(shared[i].logprob == Approx(separate[i].logprob).margin(1e-4));
    const std::vector<GenerationRequest> prompts = {{text.substr(0, 90), {}, 16}, {"The mill", {}, 20}};
    const auto cached = backend->generate(prompts);
    const auto recomputed = load_float32(dir.path(), "generation_cache=false")->generate(prompts);
    for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(cached[i].text == recomputed[i].text);
  }
}

TEST_CASE("checkpoints: pytorch_model.bin is refused in one line with the command that converts it", "[runtime]") {
  TempDir dir;
  write_text(dir / "config.json", R"({"architectures": ["GPT2LMHeadModel"]})");
  write_text(dir / "pytorch_model.bin", "not read");
  try {
    weight_files(dir.path());
    FAIL("no error");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Catch::Contains("pytorch_model.bin"));
    CHECK_THAT(message, Catch::Contains("save_pretrained(dst, safe_serialization=True)"));
    CHECK_THAT(message, Catch::Contains(dir.path().string() + "-safetensors"));
  }
}

namespace {

// How close mill must be to llama.cpp per token. Both compute in float32 with different kernels and summation
// orders: ~1e-6 per token for log-probabilities of magnitude ~8, so 1e-4. Gemma's GeGLU is the exception:
// llama.cpp's CPU GELU goes through a half-precision table (ggml_cpu_gelu), which moves its log-probabilities by
// ~3e-4 per token on average and up to ~1e-3 on these checkpoints (~1e-2 over a 60-token text); see
// compare_with_llamacpp for how that is shown to be the table and nothing else.
bool is_gemma(const std::string& family) { return family == "gemma2" || family == "gemma3"; }
double llamacpp_tolerance(const std::string& family) { return is_gemma(family) ? 5e-3 : 1e-4; }

// Differences of two sets of log-probabilities: per token the largest and the mean, per sequence (sum) the largest.
struct Difference {
  double largest = 0, mean = 0, sequence = 0;
};
Difference difference(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& expected) {
  REQUIRE(got.size() == expected.size());
  Difference d;
  std::size_t count = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].size() == expected[i].size());
    double sum = 0;
    for (std::size_t t = 0; t < got[i].size(); ++t) {
      d.largest = std::max(d.largest, std::abs(got[i][t] - expected[i][t]));
      d.mean += std::abs(got[i][t] - expected[i][t]);
      sum += got[i][t] - expected[i][t];
      ++count;
    }
    d.sequence = std::max(d.sequence, std::abs(sum));
  }
  d.mean /= static_cast<double>(std::max<std::size_t>(count, 1));
  return d;
}

// mill against llama.cpp's log-probabilities of `sequences` on the checkpoint in `folder`. For Gemma, where
// llama.cpp's GELU is not the exact function, two float64 forwards of the same ids take its place: the exact one
// (mill must match it within 1e-4, so the exact GeGLU is what mill computes) and one with llama.cpp's
// half-precision GELU (it must come at least 10 times closer to llama.cpp on average than the exact one, so the
// table accounts for the difference; not exactly, because a float32 rounding difference in a GELU input that sits
// next to a half-precision rounding boundary picks the neighbouring table entry).
Difference compare_with_llamacpp(const std::filesystem::path& folder, const std::string& family,
                                 const std::vector<std::vector<std::int32_t>>& sequences, const std::vector<std::vector<double>>& expected) {
  const auto got = load_float32(folder)->token_logprobs(sequences);
  const auto mill = difference(got, expected);
  INFO(family << ": mill vs llama.cpp per token: largest " << mill.largest << ", mean " << mill.mean);
  CHECK(mill.largest < llamacpp_tolerance(family));
  if (is_gemma(family)) {
    const ReferenceModel exact(folder), with_table(folder, true);
    std::vector<std::vector<double>> exact_logprobs, table_logprobs;
    for (const auto& ids : sequences) {
      exact_logprobs.push_back(exact.logprobs(std::vector<int>(ids.begin(), ids.end())));
      table_logprobs.push_back(with_table.logprobs(std::vector<int>(ids.begin(), ids.end())));
    }
    const auto mill_exact = difference(got, exact_logprobs), exact_llamacpp = difference(exact_logprobs, expected),
               table_llamacpp = difference(table_logprobs, expected);
    INFO("mill vs exact float64: largest " << mill_exact.largest << "; exact float64 vs llama.cpp: largest " << exact_llamacpp.largest
                                           << ", mean " << exact_llamacpp.mean << "; float64 with the half-precision GELU vs llama.cpp: largest "
                                           << table_llamacpp.largest << ", mean " << table_llamacpp.mean);
    CHECK(mill_exact.largest < 1e-4);
    CHECK(exact_llamacpp.mean > 1e-4);  // the table's effect is there to be explained
    CHECK(table_llamacpp.mean < exact_llamacpp.mean / 10);
    CHECK(table_llamacpp.largest < 1e-3);
  }
  return mill;
}

}  // namespace

// Run by tests/llamacpp/run.sh (hidden from CI, which has no npm): the ids llama.cpp scored in each folder of
// $MILL_LLAMACPP_WORK, scored again by mill on the same weights.
TEST_CASE("runtime: demo checkpoints agree with llama.cpp on the same weights", "[.][llamacpp]") {
  REQUIRE_PLUGIN();
  const char* work = std::getenv("MILL_LLAMACPP_WORK");
  if (!work || !*work) {
    WARN("MILL_LLAMACPP_WORK is not set (run tests/llamacpp/run.sh); skipped");
    return;
  }
  int folders = 0;
  for (const auto& entry : std::filesystem::directory_iterator(work)) {
    const auto folder = entry.path();
    if (!std::filesystem::exists(folder / "llamacpp.json")) continue;
    ++folders;
    const auto ids = nlohmann::json::parse(read_text(folder / "ids.json"))["sequences"].get<std::vector<std::vector<std::int32_t>>>();
    const auto expected = nlohmann::json::parse(read_text(folder / "llamacpp.json"))["logprobs"].get<std::vector<std::vector<double>>>();
    double total = 0;
    for (const auto& sequence : expected) {
      for (double x : sequence) total += x;
    }
    const auto family = folder.filename().string();
    const auto d = compare_with_llamacpp(folder, family, ids, expected);
    WARN(family << ": per-token difference from llama.cpp: largest " << d.largest << ", mean " << d.mean << "; per sequence (sum) "
                << d.sequence << " (log-probabilities summing to " << total << ")");
  }
  CHECK(folders > 0);
}

// llama.cpp's log-probabilities for the demo families (the --llamacpp_compatible variants), computed once by
// tests/llamacpp/run.sh (UPDATE=1) and stored, so CI holds mill to an outside implementation without npm. The demo
// checkpoints are the same bytes on every machine, so the stored numbers stay valid until the demo writer changes
// (then the script rewrites them).
TEST_CASE("runtime: demo checkpoints score as llama.cpp scored them (stored reference)", "[runtime]") {
  REQUIRE_PLUGIN();
  const auto stored = nlohmann::json::parse(read_text(std::filesystem::path(test::source_dir()) / "tests" / "data" / "llamacpp" / "demo-logprobs.json"));
  std::vector<std::string> families;
  for (const auto& item : stored["families"].items()) families.push_back(item.key());
  CHECK(families == std::vector<std::string>{"gemma2", "gemma3", "llama", "mixtral", "olmo2", "phi3", "qwen3", "qwen3_moe"});
  for (const auto& family : families) {
    INFO(family);
    const auto& reference = stored["families"][family];
    TempDir dir;
    DemoModelOptions options;
    options.architecture = family;
    options.llamacpp_compatible = true;
    write_demo_model(dir.path(), options);
    compare_with_llamacpp(dir.path(), family, reference["sequences"].get<std::vector<std::vector<std::int32_t>>>(),
                          reference["logprobs"].get<std::vector<std::vector<double>>>());
  }
}
