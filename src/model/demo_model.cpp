#include "mill/model/demo_model.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/model/safetensors.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

// Text the demo tokenizer's merges are learned from: plain English in the style of evaluation prompts, so
// common words and the answer letters get tokens of their own. Written for mill.
constexpr const char* kTrainingText = R"(The mill stands by the river, and the wheel turns all day.
Question: Which of the following is the best answer to the question? Answer: A
Question: What is the capital of the country in the north? Answer: B
Question: Which number is the largest of these numbers? Answer: C
Question: What does the model predict for the next word in the sentence? Answer: D
The following are multiple choice questions (with answers) about science, history and mathematics.
A. the first option B. the second option C. the third option D. the fourth option
The answer is (A). The answer is (B). The answer is (C). The answer is (D).
Let's think step by step. First we read the question, then we compare each option with the facts we know.
A model reads a context and scores each continuation by the probability of its tokens.
The miller carries the grain to the stones, and the stones grind it into flour for the town.
Water flows over the wheel, the wheel turns the shaft, and the shaft turns the stones.
In the morning the farmers bring their sacks; in the evening they take the flour home.
Every evaluation writes its results to a file, and the collector reads all of the files into one table.
The cluster runs many jobs at once, and each job evaluates one model on one task with a number of shots.
Numbers such as 1, 2, 3, 10, 42, 100 and 2024 appear in questions about counting and dates.
She said that the experiment was repeated three times, and the results were the same each time.
They asked whether the theory could explain the observation, and the answer was yes.
This is a small model with random weights; its text does not mean anything, but its numbers are exact.
)";

std::string byte_symbol(unsigned char byte) {
  // The GPT-2 byte-to-unicode table: printable bytes map to themselves, the others to code points from 256 up,
  // so that every byte has a visible, whitespace-free symbol.
  static const std::vector<std::string> table = [] {
    std::vector<std::string> symbols(256);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const int code = printable ? b : next++;  // below 0x800: one or two UTF-8 bytes
      if (code < 0x80) {
        symbols[b] += static_cast<char>(code);
      } else {
        symbols[b] += static_cast<char>(0xc0 | (code >> 6));
        symbols[b] += static_cast<char>(0x80 | (code & 0x3f));
      }
    }
    return symbols;
  }();
  return table[byte];
}

// Splits training text the way byte-level BPE pre-tokenizers do: a word keeps its leading space.
std::vector<std::string> pre_tokenize(std::string_view text) {
  auto kind = [](unsigned char c) {
    if (std::isalpha(c) || c >= 0x80) return 0;
    if (std::isdigit(c)) return 1;
    if (std::isspace(c)) return 2;
    return 3;
  };
  std::vector<std::string> pieces;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    if (text[i] == ' ' && i + 1 < text.size() && kind(text[i + 1]) != 2) ++i;
    const int k = kind(text[i]);
    while (i < text.size() && kind(text[i]) == k && (k != 2 || text[i] != ' ' || i == start)) ++i;
    if (i == start) ++i;
    pieces.emplace_back(text.substr(start, i - start));
  }
  return pieces;
}

struct Vocabulary {
  std::vector<std::string> tokens;  // id → symbol string
  std::vector<std::pair<std::string, std::string>> merges;
};

Vocabulary train_bpe_uncached(int merge_count) {
  Vocabulary vocabulary;
  for (int b = 0; b < 256; ++b) vocabulary.tokens.push_back(byte_symbol(static_cast<unsigned char>(b)));
  std::map<std::vector<std::string>, int> words;
  for (const auto& piece : pre_tokenize(kTrainingText)) {
    std::vector<std::string> symbols;
    for (unsigned char c : piece) symbols.push_back(byte_symbol(c));
    ++words[symbols];
  }
  for (int m = 0; m < merge_count; ++m) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const auto& [symbols, count] : words) {
      for (std::size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += count;
    }
    // Highest count wins; ties go to the first pair in byte order, so training is deterministic.
    const std::pair<std::string, std::string>* best = nullptr;
    int best_count = 1;
    for (const auto& [pair, count] : pairs) {
      if (count > best_count) {
        best = &pair;
        best_count = count;
      }
    }
    if (!best) break;
    const auto merged = best->first + best->second;
    vocabulary.merges.push_back(*best);
    vocabulary.tokens.push_back(merged);
    const auto [left, right] = *best;
    std::map<std::vector<std::string>, int> next;
    for (const auto& [symbols, count] : words) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(symbols[i]);
        }
      }
      next[out] += count;
    }
    words = std::move(next);
  }
  vocabulary.tokens.push_back("<|endoftext|>");
  return vocabulary;
}

// Training takes ~0.3 s for 256 merges and its result depends only on the merge count, so a process that writes
// several demo checkpoints (the tests) trains each size once.
const Vocabulary& train_bpe(int merge_count) {
  static std::mutex mutex;
  static std::map<int, Vocabulary> trained;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = trained.find(merge_count);
  if (found == trained.end()) found = trained.emplace(merge_count, train_bpe_uncached(merge_count)).first;
  return found->second;
}

nlohmann::ordered_json tokenizer_json(const Vocabulary& vocabulary) {
  const int eos = static_cast<int>(vocabulary.tokens.size()) - 1;
  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (std::size_t id = 0; id < vocabulary.tokens.size(); ++id) vocab[vocabulary.tokens[id]] = id;
  nlohmann::ordered_json merges = nlohmann::ordered_json::array();
  for (const auto& [left, right] : vocabulary.merges) merges.push_back(left + " " + right);
  nlohmann::ordered_json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", eos},
         {"content", "<|endoftext|>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
}

// Deterministic normal numbers (splitmix64 + Box-Muller) so the weights are the same on every platform.
class NormalGenerator {
 public:
  explicit NormalGenerator(std::uint64_t seed) : state_(seed) {}
  float next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(next_u64() >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = static_cast<double>(next_u64() >> 11) / 9007199254740992.0;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(radius * std::sin(2 * M_PI * u2));
    has_spare_ = true;
    return static_cast<float>(radius * std::cos(2 * M_PI * u2));
  }

 private:
  std::uint64_t next_u64() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t state_;
  bool has_spare_ = false;
  float spare_ = 0;
};

class WeightWriter {
 public:
  WeightWriter(std::uint64_t seed, safetensors::DType dtype) : random_(seed), dtype_(dtype) {}

  // mean + std * N(0, 1) for every element.
  void add(const std::string& name, std::vector<std::int64_t> shape, float std, float mean = 0) {
    std::int64_t numel = 1;
    for (auto d : shape) numel *= d;
    safetensors::TensorToWrite tensor{name, dtype_, std::move(shape), {}};
    tensor.bytes.reserve(static_cast<std::size_t>(numel) * safetensors::dtype_size(dtype_));
    for (std::int64_t i = 0; i < numel; ++i) {
      const float value = mean + std * random_.next();
      const std::uint32_t bits = dtype_ == safetensors::DType::F32    ? std::bit_cast<std::uint32_t>(value)
                                 : dtype_ == safetensors::DType::BF16 ? safetensors::float_to_bf16(value)
                                                                      : safetensors::float_to_f16(value);
      for (std::size_t b = 0; b < safetensors::dtype_size(dtype_); ++b)
        tensor.bytes += static_cast<char>((bits >> (8 * b)) & 0xff);
    }
    tensors_.push_back(std::move(tensor));
  }
  std::vector<safetensors::TensorToWrite>& tensors() { return tensors_; }

 private:
  NormalGenerator random_;
  safetensors::DType dtype_;
  std::vector<safetensors::TensorToWrite> tensors_;
};

// The 2024-26 families, each with the features that set it apart switched on at sizes where they matter in a
// tiny model (short sliding windows, low soft-caps, rope scaling whose bands fall inside its head dimension).
void write_modern_demo(WeightWriter& w, nlohmann::ordered_json& config, const DemoModelOptions& options, std::int64_t vocab,
                       int max_positions) {
  const auto& arch = options.architecture;
  const bool gemma = arch == "gemma2" || arch == "gemma3";
  const bool moe = arch == "mixtral" || arch == "qwen3_moe";
  const std::int64_t hidden = options.hidden_size, inner = options.intermediate_size;
  const std::int64_t head_dim = hidden / options.heads;
  const std::int64_t q_size = head_dim * options.heads, kv_size = head_dim * options.kv_heads;
  // Mixtral's experts are intermediate_size wide; Qwen3-MoE's have their own moe_intermediate_size.
  const std::int64_t experts = 4, expert_inner = arch == "mixtral" ? inner : std::max<std::int64_t>(8, inner / 2);
  const float in_std = 1.0f / std::sqrt(static_cast<float>(hidden));
  const float inner_std = 1.0f / std::sqrt(static_cast<float>(inner));
  // Gemma's norms scale by (1 + weight): weights around 0 there, around 1 elsewhere.
  const float norm_mean = gemma ? 0.0f : 1.0f;
  const bool tied = gemma || arch == "qwen3";
  // Tied embeddings are also the output projection: smaller, so the random logits stay in a realistic range.
  w.add("model.embed_tokens.weight", {vocab, hidden}, tied ? 0.2f : 1.0f);
  for (int l = 0; l < options.layers; ++l) {
    const auto p = fmt::format("model.layers.{}.", l);
    if (arch != "olmo2") w.add(p + "input_layernorm.weight", {hidden}, 0.1f, norm_mean);
    if (arch == "phi3") {
      w.add(p + "self_attn.qkv_proj.weight", {q_size + 2 * kv_size, hidden}, in_std);
    } else {
      w.add(p + "self_attn.q_proj.weight", {q_size, hidden}, in_std);
      w.add(p + "self_attn.k_proj.weight", {kv_size, hidden}, in_std);
      w.add(p + "self_attn.v_proj.weight", {kv_size, hidden}, in_std);
    }
    if (arch == "qwen3" || arch == "qwen3_moe" || arch == "gemma3") {
      w.add(p + "self_attn.q_norm.weight", {head_dim}, 0.1f, norm_mean);
      w.add(p + "self_attn.k_norm.weight", {head_dim}, 0.1f, norm_mean);
    } else if (arch == "olmo2") {
      w.add(p + "self_attn.q_norm.weight", {q_size}, 0.1f, 1.0f);
      w.add(p + "self_attn.k_norm.weight", {kv_size}, 0.1f, 1.0f);
    }
    w.add(p + "self_attn.o_proj.weight", {hidden, q_size}, in_std);
    w.add(p + "post_attention_layernorm.weight", {hidden}, 0.1f, norm_mean);
    if (gemma) w.add(p + "pre_feedforward_layernorm.weight", {hidden}, 0.1f, 0.0f);
    if (gemma || arch == "olmo2") w.add(p + "post_feedforward_layernorm.weight", {hidden}, 0.1f, norm_mean);
    // Qwen3-MoE's mlp_only_layers: [1] (none in the llama.cpp variant: llama.cpp's qwen3moe has no dense layers)
    const bool dense = !moe || (arch == "qwen3_moe" && l == 1 && !options.llamacpp_compatible);
    if (!dense) {
      const auto m = p + (arch == "mixtral" ? "block_sparse_moe." : "mlp.");
      w.add(m + "gate.weight", {experts, hidden}, 4 * in_std);
      for (int e = 0; e < experts; ++e) {
        const auto x = fmt::format("{}experts.{}.", m, e);
        const bool mixtral = arch == "mixtral";
        w.add(x + (mixtral ? "w1.weight" : "gate_proj.weight"), {expert_inner, hidden}, in_std);
        w.add(x + (mixtral ? "w3.weight" : "up_proj.weight"), {expert_inner, hidden}, in_std);
        w.add(x + (mixtral ? "w2.weight" : "down_proj.weight"), {hidden, expert_inner}, 1.0f / std::sqrt(static_cast<float>(expert_inner)));
      }
    } else if (arch == "phi3") {
      w.add(p + "mlp.gate_up_proj.weight", {2 * inner, hidden}, in_std);
      w.add(p + "mlp.down_proj.weight", {hidden, inner}, inner_std);
    } else {
      w.add(p + "mlp.gate_proj.weight", {inner, hidden}, in_std);
      w.add(p + "mlp.up_proj.weight", {inner, hidden}, in_std);
      w.add(p + "mlp.down_proj.weight", {hidden, inner}, inner_std);
    }
  }
  w.add("model.norm.weight", {hidden}, 0.1f, norm_mean);
  if (!tied) w.add("lm_head.weight", {vocab, hidden}, 2 * in_std);

  static const std::map<std::string, std::string> names = {
      {"qwen3", "Qwen3ForCausalLM"},   {"qwen3_moe", "Qwen3MoeForCausalLM"}, {"mixtral", "MixtralForCausalLM"},
      {"gemma2", "Gemma2ForCausalLM"}, {"gemma3", "Gemma3ForCausalLM"},      {"phi3", "Phi3ForCausalLM"},
      {"olmo2", "Olmo2ForCausalLM"}};
  const int eos = static_cast<int>(vocab) - 1;
  config = {{"architectures", {names.at(arch)}},
            {"model_type", arch == "gemma3" ? "gemma3_text" : arch},
            {"hidden_size", hidden},
            {"intermediate_size", inner},
            {"num_hidden_layers", options.layers},
            {"num_attention_heads", options.heads},
            {"num_key_value_heads", options.kv_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_positions},
            {"rms_norm_eps", 1e-6},
            {"vocab_size", vocab},
            {"bos_token_id", eos},
            {"eos_token_id", eos},
            {"tie_word_embeddings", tied},
            {"attention_bias", false}};
  if (gemma) {
    config["hidden_activation"] = "gelu_pytorch_tanh";
    // Not head_dim, so the scale is visibly its own; llama.cpp always scales by 1/sqrt(head_dim) (for all but the
    // 27B sizes), so its variant uses head_dim.
    config["query_pre_attn_scalar"] = options.llamacpp_compatible ? head_dim : head_dim + 8;
    config["sliding_window"] = 12;
    std::vector<std::string> types;
    for (int l = 0; l < options.layers; ++l) {
      const bool local = arch == "gemma2" ? l % 2 == 0 : (l + 1) % 2 != 0;
      types.push_back(local ? "sliding_attention" : "full_attention");
    }
    config["layer_types"] = types;
    if (arch == "gemma2") {
      config["attn_logit_softcapping"] = 4.0;
      config["final_logit_softcapping"] = 6.0;
      config["rope_theta"] = 10000.0;
    } else {
      config["sliding_window_pattern"] = 2;
      config["rope_theta"] = 1000000.0;
      config["rope_local_base_freq"] = 10000.0;
      config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
      config["attn_logit_softcapping"] = nullptr;
      config["final_logit_softcapping"] = nullptr;
    }
  } else {
    config["hidden_act"] = "silu";
  }
  if (arch == "qwen3" || arch == "qwen3_moe") {
    config["rope_theta"] = 1000000.0;
    // Qwen's long-context recipe (YaRN), scaled down so its ramp falls inside a 16-wide head.
    config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 64}};
    config["use_sliding_window"] = false;
  }
  if (moe) {
    config[arch == "mixtral" ? "num_local_experts" : "num_experts"] = experts;
    config["num_experts_per_tok"] = 2;
    if (arch == "mixtral") {
      config["rope_theta"] = 1000000.0;
      config["sliding_window"] = nullptr;
    } else {
      config["moe_intermediate_size"] = expert_inner;
      // Not renormalised (Qwen2-MoE's choice; Mixtral covers the renormalised routing), with one dense layer; the
      // llama.cpp variant renormalises and has none, as llama.cpp's qwen3moe always does.
      config["norm_topk_prob"] = options.llamacpp_compatible;
      config["decoder_sparse_step"] = 1;
      config["mlp_only_layers"] = options.llamacpp_compatible ? nlohmann::ordered_json::array() : nlohmann::ordered_json::array({1});
    }
  }
  if (arch == "phi3") {
    const std::int64_t rotary_dim = head_dim / 2;
    config["partial_rotary_factor"] = 0.5;
    config["rope_theta"] = 10000.0;
    // llama.cpp ignores Phi-3's sliding window (its phi3 loader switches it off), so its variant's window is as
    // wide as the positions: the same attention on both sides.
    config["sliding_window"] = options.llamacpp_compatible ? max_positions : 24;
    config["original_max_position_embeddings"] = 32;
    std::vector<double> short_factor, long_factor;
    for (std::int64_t i = 0; i < rotary_dim / 2; ++i) {
      short_factor.push_back(1.0 + 0.25 * static_cast<double>(i));
      long_factor.push_back(2.0 + 1.5 * static_cast<double>(i));
    }
    config["rope_scaling"] = {{"type", "longrope"}, {"short_factor", short_factor}, {"long_factor", long_factor}};
  }
  if (arch == "olmo2") config["rope_theta"] = 500000.0;
}

void check_option(bool ok, const std::string& message) {
  if (!ok) throw Error("demo-model: " + message);
}

}  // namespace

const std::vector<std::string>& demo_model_architectures() {
  static const std::vector<std::string> names = {"llama",  "qwen2",  "qwen3", "qwen3_moe", "mixtral", "gemma2",
                                                 "gemma3", "phi3",   "olmo2", "gpt2",      "gpt_neox"};
  return names;
}

void write_demo_model(const std::filesystem::path& folder, const DemoModelOptions& options) {
  const auto& architectures = demo_model_architectures();
  check_option(std::find(architectures.begin(), architectures.end(), options.architecture) != architectures.end(),
               fmt::format("architecture {} is not one of {}", quote_value(options.architecture), join(architectures, ", ")));
  static const std::map<std::string, safetensors::DType> dtypes = {{"float32", safetensors::DType::F32},
                                                                    {"bfloat16", safetensors::DType::BF16},
                                                                    {"float16", safetensors::DType::F16}};
  const auto dtype = dtypes.find(options.dtype);
  check_option(dtype != dtypes.end(),
               fmt::format("dtype {} is not one of float32, bfloat16, float16", quote_value(options.dtype)));
  check_option(options.hidden_size > 0 && options.heads > 0 && options.hidden_size % options.heads == 0 &&
                   (options.hidden_size / options.heads) % 2 == 0,
               fmt::format("hidden_size {} must be a positive multiple of 2 × heads ({})", options.hidden_size, options.heads));
  check_option(options.kv_heads > 0 && options.heads % options.kv_heads == 0,
               fmt::format("kv_heads {} must divide heads {}", options.kv_heads, options.heads));
  check_option(options.layers > 0 && options.layers <= 256, fmt::format("layers {} must be in 1..256", options.layers));
  check_option(options.intermediate_size > 0, "intermediate_size must be positive");
  check_option(options.shards >= 1 && options.shards <= 99, fmt::format("shards {} must be in 1..99", options.shards));
  check_option(options.bpe_merges >= 0 && options.bpe_merges <= 4096, "bpe_merges must be in 0..4096");

  const auto& vocabulary = train_bpe(options.bpe_merges);
  const std::int64_t vocab = static_cast<std::int64_t>(vocabulary.tokens.size());
  const int eos = static_cast<int>(vocab) - 1;
  const std::int64_t hidden = options.hidden_size;
  const std::int64_t head_dim = hidden / options.heads;
  const std::int64_t kv_hidden = head_dim * options.kv_heads;
  const std::int64_t inner = options.intermediate_size;
  const float in_std = 1.0f / std::sqrt(static_cast<float>(hidden));
  const float inner_std = 1.0f / std::sqrt(static_cast<float>(inner));
  const int max_positions = 2048;

  WeightWriter w(options.seed, dtype->second);
  nlohmann::ordered_json config;
  const auto& arch = options.architecture;
  if (arch == "llama" || arch == "qwen2") {
    const bool qwen = arch == "qwen2";
    w.add("model.embed_tokens.weight", {vocab, hidden}, 1.0f);
    for (int l = 0; l < options.layers; ++l) {
      const auto p = fmt::format("model.layers.{}.", l);
      w.add(p + "input_layernorm.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "self_attn.q_proj.weight", {hidden, hidden}, in_std);
      w.add(p + "self_attn.k_proj.weight", {kv_hidden, hidden}, in_std);
      w.add(p + "self_attn.v_proj.weight", {kv_hidden, hidden}, in_std);
      if (qwen) {
        w.add(p + "self_attn.q_proj.bias", {hidden}, 0.1f);
        w.add(p + "self_attn.k_proj.bias", {kv_hidden}, 0.1f);
        w.add(p + "self_attn.v_proj.bias", {kv_hidden}, 0.1f);
      }
      w.add(p + "self_attn.o_proj.weight", {hidden, hidden}, in_std);
      w.add(p + "post_attention_layernorm.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "mlp.gate_proj.weight", {inner, hidden}, in_std);
      w.add(p + "mlp.up_proj.weight", {inner, hidden}, in_std);
      w.add(p + "mlp.down_proj.weight", {hidden, inner}, inner_std);
    }
    w.add("model.norm.weight", {hidden}, 0.1f, 1.0f);
    if (!qwen) w.add("lm_head.weight", {vocab, hidden}, 2 * in_std);
    config = {{"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
              {"model_type", arch},
              {"hidden_size", hidden},
              {"intermediate_size", inner},
              {"num_hidden_layers", options.layers},
              {"num_attention_heads", options.heads},
              {"num_key_value_heads", options.kv_heads},
              {"hidden_act", "silu"},
              {"max_position_embeddings", max_positions},
              {"rms_norm_eps", 1e-5},
              {"vocab_size", vocab},
              {"bos_token_id", eos},
              {"eos_token_id", eos},
              {"tie_word_embeddings", qwen}};
    if (qwen) {
      config["rope_theta"] = 1000000.0;
    } else {
      // Llama 3.1's rope scaling, scaled down so that it changes this small model's low frequencies too.
      config["rope_theta"] = 500000.0;
      config["rope_scaling"] = {{"rope_type", "llama3"},
                                {"factor", 8.0},
                                {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0},
                                {"original_max_position_embeddings", 256}};
      config["attention_bias"] = false;
    }
  } else if (arch == "qwen3" || arch == "qwen3_moe" || arch == "mixtral" || arch == "gemma2" || arch == "gemma3" ||
             arch == "phi3" || arch == "olmo2") {
    write_modern_demo(w, config, options, vocab, max_positions);
  } else if (arch == "gpt2") {
    w.add("wte.weight", {vocab, hidden}, 0.5f);
    w.add("wpe.weight", {max_positions / 2, hidden}, 0.1f);
    for (int l = 0; l < options.layers; ++l) {
      const auto p = fmt::format("h.{}.", l);
      w.add(p + "ln_1.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "ln_1.bias", {hidden}, 0.1f);
      // GPT-2 stores its projections as Conv1D: [in, out].
      w.add(p + "attn.c_attn.weight", {hidden, 3 * hidden}, in_std);
      w.add(p + "attn.c_attn.bias", {3 * hidden}, 0.1f);
      w.add(p + "attn.c_proj.weight", {hidden, hidden}, in_std);
      w.add(p + "attn.c_proj.bias", {hidden}, 0.1f);
      w.add(p + "ln_2.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "ln_2.bias", {hidden}, 0.1f);
      w.add(p + "mlp.c_fc.weight", {hidden, inner}, in_std);
      w.add(p + "mlp.c_fc.bias", {inner}, 0.1f);
      w.add(p + "mlp.c_proj.weight", {inner, hidden}, inner_std);
      w.add(p + "mlp.c_proj.bias", {hidden}, 0.1f);
    }
    w.add("ln_f.weight", {hidden}, 0.1f, 1.0f);
    w.add("ln_f.bias", {hidden}, 0.1f);
    config = {{"architectures", {"GPT2LMHeadModel"}},
              {"model_type", "gpt2"},
              {"n_embd", hidden},
              {"n_head", options.heads},
              {"n_layer", options.layers},
              {"n_inner", inner},
              {"n_positions", max_positions / 2},
              {"n_ctx", max_positions / 2},
              {"activation_function", "gelu_new"},
              {"layer_norm_epsilon", 1e-5},
              {"vocab_size", vocab},
              {"bos_token_id", eos},
              {"eos_token_id", eos},
              {"tie_word_embeddings", true}};
  } else {  // gpt_neox
    w.add("gpt_neox.embed_in.weight", {vocab, hidden}, 1.0f);
    for (int l = 0; l < options.layers; ++l) {
      const auto p = fmt::format("gpt_neox.layers.{}.", l);
      w.add(p + "input_layernorm.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "input_layernorm.bias", {hidden}, 0.1f);
      w.add(p + "post_attention_layernorm.weight", {hidden}, 0.1f, 1.0f);
      w.add(p + "post_attention_layernorm.bias", {hidden}, 0.1f);
      w.add(p + "attention.query_key_value.weight", {3 * hidden, hidden}, in_std);
      w.add(p + "attention.query_key_value.bias", {3 * hidden}, 0.1f);
      w.add(p + "attention.dense.weight", {hidden, hidden}, in_std);
      w.add(p + "attention.dense.bias", {hidden}, 0.1f);
      w.add(p + "mlp.dense_h_to_4h.weight", {inner, hidden}, in_std);
      w.add(p + "mlp.dense_h_to_4h.bias", {inner}, 0.1f);
      w.add(p + "mlp.dense_4h_to_h.weight", {hidden, inner}, inner_std);
      w.add(p + "mlp.dense_4h_to_h.bias", {hidden}, 0.1f);
    }
    w.add("gpt_neox.final_layer_norm.weight", {hidden}, 0.1f, 1.0f);
    w.add("gpt_neox.final_layer_norm.bias", {hidden}, 0.1f);
    w.add("embed_out.weight", {vocab, hidden}, 2 * in_std);
    config = {{"architectures", {"GPTNeoXForCausalLM"}},
              {"model_type", "gpt_neox"},
              {"hidden_size", hidden},
              {"intermediate_size", inner},
              {"num_hidden_layers", options.layers},
              {"num_attention_heads", options.heads},
              {"hidden_act", "gelu"},
              {"rotary_pct", 0.25},
              {"rotary_emb_base", 10000},
              {"max_position_embeddings", max_positions},
              {"layer_norm_eps", 1e-5},
              {"use_parallel_residual", true},
              {"attention_bias", true},
              {"vocab_size", vocab},
              {"bos_token_id", eos},
              {"eos_token_id", eos},
              {"tie_word_embeddings", false}};
  }
  config["torch_dtype"] = options.dtype;

  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) throw Error(fmt::format("demo-model: cannot create {}: {}", folder.string(), ec.message()));
  write_file_atomically(folder / "config.json", config.dump(2) + "\n");

  auto& tensors = w.tensors();
  if (options.shards == 1) {
    write_file_atomically(folder / "model.safetensors", safetensors::serialize(tensors, {{"format", "pt"}}));
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::uint64_t total = 0;
    const std::size_t per_shard = (tensors.size() + options.shards - 1) / options.shards;
    for (int s = 0; s < options.shards; ++s) {
      const auto name = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, options.shards);
      std::vector<safetensors::TensorToWrite> shard;
      for (std::size_t i = s * per_shard; i < std::min(tensors.size(), (s + 1) * per_shard); ++i) {
        weight_map[tensors[i].name] = name;
        total += tensors[i].bytes.size();
        shard.push_back(std::move(tensors[i]));
      }
      write_file_atomically(folder / name, safetensors::serialize(shard, {{"format", "pt"}}));
    }
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomically(folder / "model.safetensors.index.json", index.dump(2) + "\n");
  }

  write_file_atomically(folder / "tokenizer.json", tokenizer_json(vocabulary).dump(2) + "\n");
  nlohmann::ordered_json tokenizer_config = {
      {"tokenizer_class", "GPT2Tokenizer"},
      {"bos_token", "<|endoftext|>"},
      {"eos_token", "<|endoftext|>"},
      {"unk_token", "<|endoftext|>"},
      {"add_bos_token", false},
      {"model_max_length", max_positions},
      {"chat_template",
       "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
       "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"},
  };
  write_file_atomically(folder / "tokenizer_config.json", tokenizer_config.dump(2) + "\n");
  write_file_atomically(folder / "generation_config.json",
                        nlohmann::ordered_json({{"bos_token_id", eos}, {"eos_token_id", eos}}).dump(2) + "\n");
}

}  // namespace mill
