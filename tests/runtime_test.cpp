// The in-process runtime (libmill_runtime.so) on real checkpoint files written by `mill demo-model`: the
// invariants that batching, prefix sharing and caching must not change the numbers, and a direct computation of
// a tiny Llama's log-probabilities. Skipped when the plugin was not built (no libtorch).
#include <sched.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

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
using mill::test::runtime_test_device;

namespace {

std::unique_ptr<ModelBackend> load(const std::filesystem::path& folder, const std::string& args) {
  return load_runtime_backend(ModelSpec::parse(folder.string() + "[dtype=float32,device=" + runtime_test_device() +
                                               (args.empty() ? "" : "," + args) + "]"));
}

// A few-shot prompt in MMLU's shape: a shared header and examples, then one question.
std::string mmlu_prompt(int question) {
  std::string prompt = "The following are multiple choice questions (with answers) about the mill.\n\n";
  for (int shot = 0; shot < 3; ++shot) {
    prompt += "Question: Which stone turns when the wheel turns in example " + std::to_string(shot) +
              "?\nA. the first\nB. the second\nC. the third\nD. the fourth\nAnswer: B\n\n";
  }
  return prompt + "Question: What does the miller carry on day " + std::to_string(question * 7 + 3) +
         "?\nA. grain\nB. water\nC. stones\nD. flour\nAnswer:";
}

std::vector<LoglikelihoodRequest> mmlu_requests(int questions) {
  std::vector<LoglikelihoodRequest> requests;
  for (int q = 0; q < questions; ++q) {
    for (const char* letter : {" A", " B", " C", " D"}) requests.push_back({mmlu_prompt(q), letter});
  }
  return requests;
}

void check_same(const std::vector<LoglikelihoodResult>& a, const std::vector<LoglikelihoodResult>& b, double tolerance = 1e-4) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("request " << i);
    CHECK(a[i].logprob == Approx(b[i].logprob).margin(tolerance));
    CHECK(a[i].greedy == b[i].greedy);
    CHECK(a[i].n_tokens == b[i].n_tokens);
  }
}

}  // namespace

TEST_CASE("runtime: batch size does not change log-likelihoods", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  std::vector<LoglikelihoodRequest> requests = {
      {"The mill stands by the river", " and the wheel turns"},
      {"Question: What is the capital?", " Answer: B"},
      {"", "A model reads a context."},
      {"Numbers such as 1, 2, 3", " and 42"},
      {"x", " y"},
      {"The miller carries the grain to the stones, and the stones grind it into flour for the town.", " Water flows."},
  };
  const auto one = load(dir.path(), "batch_size=1")->loglikelihood(requests);
  const auto many = load(dir.path(), "batch_size=4")->loglikelihood(requests);
  const auto automatic = load(dir.path(), "")->loglikelihood(requests);
  check_same(one, many);
  check_same(one, automatic);
  for (const auto& result : one) {
    CHECK(result.logprob < 0);
    CHECK(result.n_tokens > 0);
  }
  // Scored alone, each request gives the same number as inside a batch.
  auto backend = load(dir.path(), "batch_size=8");
  for (std::size_t i = 0; i < requests.size(); ++i) check_same({one[i]}, backend->loglikelihood({requests[i]}));
}

TEST_CASE("runtime: requests sharing a context score as if sent separately, with far fewer tokens", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  auto requests = mmlu_requests(6);
  requests.push_back({mmlu_prompt(0), " grain and water"});  // a longer continuation on a shared context
  requests.push_back({mmlu_prompt(1), " flour"});
  requests.push_back({mmlu_prompt(1), " A"});  // a duplicate request
  auto shared = load(dir.path(), "batch_size=4");
  auto separate = load(dir.path(), "batch_size=4,share_prefixes=false");
  const auto with_sharing = shared->loglikelihood(requests);
  const auto without = separate->loglikelihood(requests);
  check_same(with_sharing, without);
  auto one_at_a_time = load(dir.path(), "batch_size=1,share_prefixes=false");
  for (std::size_t i = 0; i < requests.size(); i += 5) check_same({with_sharing[i]}, one_at_a_time->loglikelihood({requests[i]}));

  const auto shared_tokens = shared->provenance()["forward_tokens"].get<double>();
  const auto separate_tokens = separate->provenance()["forward_tokens"].get<double>();
  INFO("forward tokens with sharing " << shared_tokens << ", one request per option " << separate_tokens);
  CHECK(shared_tokens < 0.3 * separate_tokens);
  // A second call with the same few-shot prefix reuses its KV cache.
  shared->loglikelihood(mmlu_requests(2));
  CHECK(shared->provenance()["prefix_tokens_reused"].get<int>() > 0);
}

TEST_CASE("runtime: log-likelihood of context + continuation equals the rolling sum", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  auto backend = load(dir.path(), "");
  const std::string context = "Every evaluation writes its results to a file,";
  const std::string continuation = " and the collector reads all of the files into one table.";
  const auto rolling = backend->loglikelihood_rolling({{context}, {context + continuation}});
  const auto whole = backend->loglikelihood({{"", context + continuation}});
  // Rolling scores condition the first token on EOS (this tokenizer adds no BOS), so the split request's
  // context starts with it too.
  const auto split = backend->loglikelihood({{"<|endoftext|>" + context, continuation}});
  CHECK(rolling[1].logprob == Approx(whole[0].logprob).margin(1e-4));
  CHECK(rolling[1].n_tokens == whole[0].n_tokens);
  CHECK(rolling[0].logprob + split[0].logprob == Approx(rolling[1].logprob).margin(1e-4));
  CHECK(rolling[0].n_tokens + split[0].n_tokens == rolling[1].n_tokens);

  // Windows: with a 16-token context the text is scored in windows, every token exactly once.
  auto windowed = load(dir.path(), "max_context_length=16");
  const auto long_text = context + continuation + continuation + continuation;
  const auto full = backend->loglikelihood_rolling({{long_text}});
  const auto windows = windowed->loglikelihood_rolling({{long_text}});
  CHECK(windows[0].n_tokens == full[0].n_tokens);
  CHECK(windows[0].n_tokens > 32);
  CHECK(std::isfinite(windows[0].logprob));
  CHECK(windows[0].logprob != Approx(full[0].logprob).margin(1e-3));  // less context, other numbers
}

TEST_CASE("runtime: cached generation equals recomputing every step, stop sequences and limits", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  std::vector<GenerationRequest> requests = {
      {"The mill stands by the river", {}, 24},
      {"Question: Which of the following is the best answer?\nAnswer:", {}, 12},
      {"A", {}, 30},
  };
  auto cached = load(dir.path(), "batch_size=3");
  auto uncached = load(dir.path(), "batch_size=3,generation_cache=false");
  const auto fast = cached->generate(requests);
  const auto slow = uncached->generate(requests);
  REQUIRE(fast.size() == 3);
  for (std::size_t i = 0; i < fast.size(); ++i) {
    INFO("request " << i << ": " << fast[i].text);
    CHECK(fast[i].text == slow[i].text);
    CHECK(fast[i].n_tokens == slow[i].n_tokens);
    CHECK(fast[i].n_tokens > 0);
    CHECK(fast[i].n_tokens <= requests[i].max_new_tokens);
  }
  // Batched generation equals generating alone.
  auto single = load(dir.path(), "batch_size=1");
  for (std::size_t i = 0; i < requests.size(); ++i) CHECK(single->generate({requests[i]})[0].text == fast[i].text);

  // A stop sequence taken from the middle of the free text cuts it there.
  const auto& text = fast[0].text;
  if (text.size() > 6) {
    const auto stop = text.substr(text.size() / 2, 3);
    auto stopped = cached->generate({{requests[0].context, {stop}, 24}});
    CHECK(stopped[0].text == text.substr(0, text.find(stop)));
    CHECK_FALSE(stopped[0].hit_token_limit);
  }
}

TEST_CASE("runtime: GPT-2, GPT-NeoX and Qwen2 checkpoints load, sharded and in half precision", "[runtime]") {
  REQUIRE_PLUGIN();
  for (const std::string architecture : {"gpt2", "gpt_neox", "qwen2"}) {
    INFO(architecture);
    TempDir dir;
    DemoModelOptions options;
    options.architecture = architecture;
    options.shards = 2;
    options.dtype = architecture == "gpt2" ? "float16" : "bfloat16";
    write_demo_model(dir.path(), options);
    const auto requests = mmlu_requests(2);
    const auto one = load(dir.path(), "batch_size=1,share_prefixes=false")->loglikelihood(requests);
    const auto shared = load(dir.path(), "batch_size=8")->loglikelihood(requests);
    check_same(one, shared);
    auto backend = load(dir.path(), "");
    const auto generated = backend->generate({{"The mill", {}, 8}});
    CHECK(generated[0].n_tokens > 0);
    const auto provenance = backend->provenance();
    CHECK(provenance["dtype"] == "float32");
    CHECK(provenance["weights_dtype"] == (architecture == "gpt2" ? "F16" : "BF16"));
  }
  // bfloat16 compute works on the CPU too, close to float32.
  TempDir dir;
  write_demo_model(dir.path(), {});
  const auto requests = mmlu_requests(1);
  const auto exact = load(dir.path(), "")->loglikelihood(requests);
  const auto bf16 = load_runtime_backend(ModelSpec::parse(dir.path().string() + "[dtype=bfloat16,device=" + runtime_test_device() + "]"))->loglikelihood(requests);
  for (std::size_t i = 0; i < requests.size(); ++i) CHECK(bf16[i].logprob == Approx(exact[i].logprob).margin(0.2));
}

TEST_CASE("runtime: a tiny Llama's log-probabilities match a direct computation", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  DemoModelOptions options;
  options.hidden_size = 8;
  options.heads = 2;
  options.kv_heads = 1;
  options.layers = 2;
  options.intermediate_size = 12;
  options.bpe_merges = 0;  // plain bytes: token ids are byte values
  write_demo_model(dir.path(), options);
  const auto config = nlohmann::json::parse(read_text(dir / "config.json"));
  const auto bytes = read_text(dir / "model.safetensors");
  const auto header = safetensors::parse_header(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "model");
  auto weight = [&](const std::string& name) {
    const auto* info = header.find(name);
    REQUIRE(info);
    std::vector<double> values(info->numel());
    for (std::size_t i = 0; i < values.size(); ++i) {
      float v;
      std::memcpy(&v, bytes.data() + header.data_offset + info->begin + 4 * i, 4);
      values[i] = v;
    }
    return values;
  };
  const int H = 8, Hq = 2, Hkv = 1, D = 4, I = 12, L = 2;
  const int V = config["vocab_size"];
  const double eps = config["rms_norm_eps"], theta = config["rope_theta"];
  const auto& scaling = config["rope_scaling"];
  // Llama 3.1 rope frequencies, written out.
  std::vector<double> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) {
    const double base = 1.0 / std::pow(theta, 2.0 * i / D);
    const double factor = scaling["factor"], low = scaling["low_freq_factor"], high = scaling["high_freq_factor"];
    const double old_length = scaling["original_max_position_embeddings"];
    const double wavelength = 2 * M_PI / base;
    if (wavelength < old_length / high) {
      inv_freq[i] = base;
    } else if (wavelength > old_length / low) {
      inv_freq[i] = base / factor;
    } else {
      const double smooth = (old_length / wavelength - low) / (high - low);
      inv_freq[i] = (1 - smooth) * base / factor + smooth * base;
    }
  }
  auto matvec = [](const std::vector<double>& w, const std::vector<double>& x, int rows) {
    std::vector<double> out(rows, 0.0);
    const int cols = static_cast<int>(x.size());
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) out[r] += w[r * cols + c] * x[c];
    }
    return out;
  };
  auto rms_norm = [&](const std::vector<double>& x, const std::vector<double>& w) {
    double mean = 0;
    for (double v : x) mean += v * v / x.size();
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] / std::sqrt(mean + eps) * w[i];
    return out;
  };
  auto rotate = [&](std::vector<double>& v, int heads, int position) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < D / 2; ++i) {
        const double angle = position * inv_freq[i];
        const double a = v[h * D + i], b = v[h * D + i + D / 2];
        v[h * D + i] = a * std::cos(angle) - b * std::sin(angle);
        v[h * D + i + D / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  };
  // log P(tokens[1:] | tokens[0]) summed, computed token by token over the whole sequence.
  auto reference = [&](const std::vector<int>& tokens, std::size_t first_scored) {
    const auto embedding = weight("model.embed_tokens.weight");
    std::vector<std::vector<double>> x;
    for (int t : tokens) x.emplace_back(embedding.begin() + t * H, embedding.begin() + (t + 1) * H);
    for (int l = 0; l < L; ++l) {
      const auto p = "model.layers." + std::to_string(l) + ".";
      const auto wq = weight(p + "self_attn.q_proj.weight"), wk = weight(p + "self_attn.k_proj.weight"),
                 wv = weight(p + "self_attn.v_proj.weight"), wo = weight(p + "self_attn.o_proj.weight");
      const auto n1 = weight(p + "input_layernorm.weight"), n2 = weight(p + "post_attention_layernorm.weight");
      const auto wg = weight(p + "mlp.gate_proj.weight"), wu = weight(p + "mlp.up_proj.weight"), wd = weight(p + "mlp.down_proj.weight");
      std::vector<std::vector<double>> q, k, v;
      for (std::size_t t = 0; t < x.size(); ++t) {
        const auto h = rms_norm(x[t], n1);
        q.push_back(matvec(wq, h, Hq * D));
        k.push_back(matvec(wk, h, Hkv * D));
        v.push_back(matvec(wv, h, Hkv * D));
        rotate(q.back(), Hq, static_cast<int>(t));
        rotate(k.back(), Hkv, static_cast<int>(t));
      }
      for (std::size_t t = 0; t < x.size(); ++t) {
        std::vector<double> attended(Hq * D, 0.0);
        for (int h = 0; h < Hq; ++h) {
          const int g = h / (Hq / Hkv);
          std::vector<double> scores;
          double top = -1e300;
          for (std::size_t s = 0; s <= t; ++s) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += q[t][h * D + d] * k[s][g * D + d];
            scores.push_back(dot / std::sqrt(static_cast<double>(D)));
            top = std::max(top, scores.back());
          }
          double total = 0;
          for (auto& s : scores) total += (s = std::exp(s - top));
          for (std::size_t s = 0; s <= t; ++s) {
            for (int d = 0; d < D; ++d) attended[h * D + d] += scores[s] / total * v[s][g * D + d];
          }
        }
        const auto out = matvec(wo, attended, H);
        for (int i = 0; i < H; ++i) x[t][i] += out[i];
        const auto h2 = rms_norm(x[t], n2);
        const auto gate = matvec(wg, h2, I), up = matvec(wu, h2, I);
        std::vector<double> act(I);
        for (int i = 0; i < I; ++i) act[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
        const auto down = matvec(wd, act, H);
        for (int i = 0; i < H; ++i) x[t][i] += down[i];
      }
    }
    const auto final_norm = weight("model.norm.weight"), head = weight("lm_head.weight");
    double sum = 0;
    for (std::size_t t = first_scored; t < tokens.size(); ++t) {
      const auto logits = matvec(head, rms_norm(x[t - 1], final_norm), V);
      double top = *std::max_element(logits.begin(), logits.end()), total = 0;
      for (double z : logits) total += std::exp(z - top);
      sum += logits[tokens[t]] - top - std::log(total);
    }
    return sum;
  };

  const std::string context = "The mill, by the river.", continuation = " It turns!";
  const auto tokenizer = Tokenizer::load(dir.path());
  const auto pair = encode_pair(*tokenizer, context, continuation, true);
  std::vector<int> tokens(pair.context.begin(), pair.context.end());
  tokens.insert(tokens.end(), pair.continuation.begin(), pair.continuation.end());
  const double expected = reference(tokens, pair.context.size());
  const auto result = load(dir.path(), "")->loglikelihood({{context, continuation}});
  CHECK(result[0].n_tokens == static_cast<int>(pair.continuation.size()));
  CHECK(result[0].logprob == Approx(expected).margin(1e-4));
  CHECK(expected < -1.0);  // a real, non-trivial number
}

TEST_CASE("runtime: bad checkpoints and arguments are one-line errors", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  auto message = [&](const std::string& spec) {
    try {
      load_runtime_backend(ModelSpec::parse(spec));
    } catch (const Error& e) {
      const std::string text = e.what();
      CHECK(text.find('\n') == std::string::npos);
      return text;
    }
    return std::string("no error");
  };
  const auto folder = dir.path().string();
  CHECK_THAT(message(folder + "[dtype=int8]"), Catch::Contains("bfloat16, float16 or float32"));
  CHECK_THAT(message(folder + "[dtpye=float32]"), Catch::Contains("has no argument \"dtpye\"; did you mean dtype?"));
  CHECK_THAT(message(folder + "[batch_size=0]"), Catch::Contains("whole number"));
  CHECK_THAT(message(dir.path().string() + "/missing"), Catch::Contains("no such folder"));
  CHECK_THAT(message("org/absent-model"), Catch::Contains("not in the Hugging Face cache"));

  // A truncated weights file.
  TempDir truncated;
  write_demo_model(truncated.path(), {});
  const auto weights = read_text(truncated / "model.safetensors");
  mill::test::write_text(truncated / "model.safetensors", weights.substr(0, weights.size() / 2));
  CHECK_THAT(message(truncated.path().string() + "[device=cpu]"), Catch::Contains("model.safetensors"));

  // An architecture mill does not run.
  auto config = nlohmann::json::parse(read_text(dir / "config.json"));
  config["architectures"] = {"BertForMaskedLM"};
  mill::test::write_text(dir / "config.json", config.dump());
  const auto unknown = message(folder);
  CHECK_THAT(unknown, Catch::Contains("BertForMaskedLM"));
  CHECK_THAT(unknown, Catch::Contains("LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"));
  CHECK_THAT(unknown, Catch::Contains("Gemma3ForCausalLM, Phi3ForCausalLM, Olmo2ForCausalLM, GPT2LMHeadModel, GPTNeoXForCausalLM"));
}

TEST_CASE("runtime: CPU threads come from the job's CPUs or the threads arg, and provenance reports them", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir.path(), {});
  cpu_set_t mask;
  CPU_ZERO(&mask);
  REQUIRE(::sched_getaffinity(0, sizeof mask, &mask) == 0);
  const int allowed = CPU_COUNT(&mask);
  const char* slurm = std::getenv("SLURM_CPUS_PER_TASK");
  const std::string saved = slurm ? slurm : "";
  ::unsetenv("SLURM_CPUS_PER_TASK");
  const auto provenance = load(dir.path(), "")->provenance();
  CHECK(provenance["threads"] == allowed);
  CHECK(provenance["peak_rss_mb"].get<double>() > 1);
  CHECK(load(dir.path(), "threads=1")->provenance()["threads"] == 1);
  ::setenv("SLURM_CPUS_PER_TASK", "1", 1);
  CHECK(load(dir.path(), "")->provenance()["threads"] == 1);
  ::setenv("SLURM_CPUS_PER_TASK", "4096", 1);  // never more than the CPUs this process may run on
  CHECK(load(dir.path(), "")->provenance()["threads"] == allowed);
  CHECK(load(dir.path(), "threads=auto")->provenance()["threads"] == allowed);
  if (slurm) {
    ::setenv("SLURM_CPUS_PER_TASK", saved.c_str(), 1);
  } else {
    ::unsetenv("SLURM_CPUS_PER_TASK");
  }
  try {
    load(dir.path(), "threads=0");
    FAIL("threads=0 was accepted");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("threads=") && Catch::Contains("is not a whole number in 1..4096"));
  }
}

TEST_CASE("runtime: models are found in the Hugging Face cache layout through refs/main", "[runtime]") {
  REQUIRE_PLUGIN();
  TempDir home;
  const auto repo = home / "hub" / "models--mill--demo";
  write_demo_model(repo / "snapshots" / "0123abcd", {});
  mill::test::write_text(repo / "refs" / "main", "0123abcd\n");
  write_demo_model(repo / "snapshots" / "older", {});
  const char* previous = std::getenv("HF_HOME");
  const std::string saved = previous ? previous : "";
  ::setenv("HF_HOME", home.path().c_str(), 1);
  ::unsetenv("HF_HUB_CACHE");
  auto backend = load_runtime_backend(ModelSpec::parse("mill/demo[dtype=float32]"));
  const auto provenance = backend->provenance();
  auto pinned = load_runtime_backend(ModelSpec::parse("mill/demo[dtype=float32,revision=older]"));
  if (previous) {
    ::setenv("HF_HOME", saved.c_str(), 1);
  } else {
    ::unsetenv("HF_HOME");
  }
  CHECK(provenance["revision"] == "0123abcd");
  CHECK_THAT(provenance["model_path"].get<std::string>(), Catch::Contains("snapshots/0123abcd"));
  CHECK(pinned->provenance()["revision"] == "older");
  CHECK(backend->loglikelihood({{"The mill", " turns"}})[0].logprob < 0);
}

namespace {
// A trained checkpoint to check real weights with: $MILL_TEST_REAL_MODEL, else the first folder under
// ../shared/models that holds config.json and safetensors weights. Empty when there is none.
std::filesystem::path trained_checkpoint() {
  if (const char* path = std::getenv("MILL_TEST_REAL_MODEL"); path && *path) return path;
  const auto models = mill::test::shared_path("models");
  if (models.empty()) return {};
  for (const auto& entry : std::filesystem::directory_iterator(models)) {
    const auto& folder = entry.path();
    if (std::filesystem::exists(folder / "config.json") &&
        (std::filesystem::exists(folder / "model.safetensors") ||
         std::filesystem::exists(folder / "model.safetensors.index.json"))) {
      return folder;
    }
  }
  return {};
}

double bits_per_byte(ModelBackend& backend, const std::vector<std::string>& texts) {
  std::vector<RollingRequest> requests;
  std::size_t bytes = 0;
  for (const auto& text : texts) {
    requests.push_back({text});
    bytes += text.size();
  }
  double logprob = 0;
  for (const auto& result : backend.loglikelihood_rolling(requests)) logprob += result.logprob;
  return -logprob / std::log(2.0) / static_cast<double>(bytes);
}
}  // namespace

TEST_CASE("real weights: a trained model predicts natural text far better than the random demo model",
          "[runtime]") {
  REQUIRE_PLUGIN();
  const auto checkpoint = trained_checkpoint();
  if (checkpoint.empty()) {
    WARN("no trained checkpoint in ../shared/models (or MILL_TEST_REAL_MODEL); skipped");
    return;
  }
  const std::vector<std::string> texts = {
      "The river flows through the old town, past the mill and the church, and on towards the sea.",
      "In 1969, astronauts landed on the Moon for the first time and returned safely to Earth.",
      "Water boils at one hundred degrees Celsius at sea level, and freezes at zero degrees.",
      "She opened the window, looked at the rain, and decided to stay at home with a good book."};
  TempDir demo;
  write_demo_model(demo.path(), {});
  auto trained = load(checkpoint, "");
  auto random = load(demo.path(), "");
  const double trained_bpb = bits_per_byte(*trained, texts);
  const double random_bpb = bits_per_byte(*random, texts);
  INFO("bits per byte: trained " << trained_bpb << ", random demo " << random_bpb);
  CHECK(trained_bpb < 0.6 * random_bpb);

  // Greedy text should read like its training data: mostly letters and spaces, several real-looking words.
  const auto generated = trained->generate({{"The capital of France is", {"\n\n"}, 24}}).at(0).text;
  INFO("generated: " << generated);
  std::size_t letters_or_spaces = 0, words = 0, run = 0;
  for (unsigned char c : generated + " ") {
    if (std::isalpha(c) || c == ' ' || c == ',' || c == '.') ++letters_or_spaces;
    run = std::isalpha(c) ? run + 1 : (run >= 3 ? (++words, 0) : 0);
  }
  CHECK(letters_or_spaces >= generated.size() * 8 / 10);
  CHECK(words >= 2);
}
