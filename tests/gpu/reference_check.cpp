// Writes the demo checkpoints (all four architectures), scores and generates with the runtime plugin, and dumps
// the token ids and numbers as JSON for compare_transformers.py, which recomputes them with Hugging Face
// transformers. Usage: reference_check OUT_DIR DEVICE
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mill/model/demo_model.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/tokenizers/tokenizer.hpp"

using namespace mill;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: reference_check OUT_DIR DEVICE\n";
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const std::string device = argv[2];
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"The mill stands by the river, and the wheel turns all day.", " The miller carries the grain."},
      {"Question: Which number is the largest of these numbers?\nA. 1\nB. 42\nC. 3\nD. 10\nAnswer:", " B"},
      {"Question: Which number is the largest of these numbers?\nA. 1\nB. 42\nC. 3\nD. 10\nAnswer:", " D"},
      {"", "Every evaluation writes its results to a file."},
      {"She said that the experiment was repeated three times,", " and the results were the same each time."},
  };
  const std::vector<std::string> prompts = {"The mill stands by the river", "Question: What is the capital?\nAnswer:",
                                            "A"};
  nlohmann::json report = nlohmann::json::array();
  try {
    for (const std::string architecture : {"llama", "qwen2", "gpt2", "gpt_neox"}) {
      DemoModelOptions options;
      options.architecture = architecture;
      options.hidden_size = 128;
      options.layers = 3;
      options.heads = 8;
      options.kv_heads = 2;
      options.intermediate_size = 256;
      const auto folder = out / ("demo-" + architecture);
      write_demo_model(folder, options);
      const auto tokenizer = Tokenizer::load(folder);
      for (const std::string dtype : {"float32", "bfloat16"}) {
        auto backend = load_runtime_backend(ModelSpec::parse(folder.string() + "[dtype=" + dtype + ",device=" + device + "]"));
        std::vector<LoglikelihoodRequest> requests;
        for (const auto& [context, continuation] : pairs) requests.push_back({context, continuation});
        const auto scores = backend->loglikelihood(requests);
        nlohmann::json record = {{"architecture", architecture}, {"dtype", dtype}, {"folder", folder.string()}};
        for (std::size_t i = 0; i < pairs.size(); ++i) {
          auto split = encode_pair(*tokenizer, pairs[i].first, pairs[i].second, true);
          if (split.context.empty()) split.context.push_back(*tokenizer->eos_id());
          record["scores"].push_back({{"context_ids", split.context},
                                      {"continuation_ids", split.continuation},
                                      {"logprob", scores[i].logprob},
                                      {"greedy", scores[i].greedy}});
        }
        std::vector<GenerationRequest> generation_requests;
        for (const auto& prompt : prompts) generation_requests.push_back({prompt, {}, 16});
        const auto generations = backend->generate(generation_requests);
        for (std::size_t i = 0; i < prompts.size(); ++i) {
          record["generations"].push_back({{"prompt_ids", tokenizer->encode(prompts[i], true)},
                                           {"text", generations[i].text},
                                           {"n_tokens", generations[i].n_tokens}});
        }
        for (const auto& [context, continuation] : pairs) {
          record["tokenization"].push_back({{"text", context + continuation}, {"ids", tokenizer->encode(context + continuation, false)}});
        }
        record["provenance"] = backend->provenance();
        report.push_back(record);
      }
    }
    // Prefill throughput of a larger Llama on this device (bf16): tokens per second and the implied FLOP rate.
    if (device == "cpu") {
      std::ofstream(out / "runtime.json") << report.dump(1) << "\n";
      return 0;
    }
    DemoModelOptions big;
    big.hidden_size = 2048;
    big.layers = 8;
    big.heads = 16;
    big.kv_heads = 4;
    big.intermediate_size = 5632;
    const auto folder = out / "demo-llama-big";
    write_demo_model(folder, big);
    auto backend = load_runtime_backend(ModelSpec::parse(folder.string() + "[dtype=bfloat16,device=" + device + ",max_context_length=1024]"));
    std::string text;
    for (int i = 0; i < 200; ++i) text += "The miller carries the grain to the stones, and the stones grind it. ";
    std::vector<RollingRequest> texts(32, {text});
    backend->loglikelihood_rolling({texts[0]});  // warm-up
    const auto before = backend->provenance()["forward_tokens"].get<double>();
    const auto start = std::chrono::steady_clock::now();
    backend->loglikelihood_rolling(texts);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto tokens = backend->provenance()["forward_tokens"].get<double>() - before;
    const double parameters = backend->provenance()["parameters"].get<double>();
    report.push_back({{"throughput",
                       {{"tokens", tokens},
                        {"seconds", seconds},
                        {"tokens_per_second", tokens / seconds},
                        {"parameters", parameters},
                        {"approx_tflops", 2 * parameters * tokens / seconds / 1e12}}}});
  } catch (const Error& e) {
    std::cerr << "mill error: " << e.what() << "\n";
    return 1;
  }
  std::ofstream(out / "runtime.json") << report.dump(1) << "\n";
  std::cout << "wrote " << (out / "runtime.json").string() << "\n";
  return 0;
}
