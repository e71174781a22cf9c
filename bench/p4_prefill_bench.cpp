// P4: the runtime's CPU prefill FLOP rate against this machine's own sgemm (at::mm), measured in the same run.
// Usage: p4_prefill_bench [MILL_BINARY] [PLUGIN]
// Writes a small Llama with `mill demo-model`, loads it through the plugin exactly as `mill eval` does, scores
// long texts (pure prefill: rolling log-likelihood), and counts the model's matrix FLOPs (projections, MLP,
// LM head and causal attention). The bar: model FLOP rate ≥ 50% of the best sgemm rate.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "mill/model/model.hpp"
#include "mill/model/runtime_plugin.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double sgemm_gflops(std::int64_t m, std::int64_t k, std::int64_t n) {
  auto a = at::randn({m, k});
  auto b = at::randn({k, n});
  auto c = at::mm(a, b);  // warm-up
  int reps = 0;
  const auto start = std::chrono::steady_clock::now();
  while (seconds_since(start) < 1.0) {
    c = at::mm(a, b);
    ++reps;
  }
  return 2.0 * m * k * n * reps / seconds_since(start) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  // This process links libtorch, so libgomp has read its settings before main: set the wait policy that the plugin
  // loader sets for `mill eval` (src/model/runtime_plugin.cpp) and start again, so both sides run as mill does.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);
  }
  const std::string mill = argc > 1 ? argv[1] : MILL_BINARY;
  const std::string plugin = argc > 2 ? argv[2] : MILL_RUNTIME_PLUGIN_PATH;
  const auto folder = std::filesystem::temp_directory_path() / "mill-p4-llama";
  const int hidden = 768, layers = 4, heads = 12, kv_heads = 4, inner = 2048;
  const std::string command = mill + " demo-model " + folder.string() + " --hidden_size " + std::to_string(hidden) +
                              " --layers " + std::to_string(layers) + " --heads " + std::to_string(heads) +
                              " --kv_heads " + std::to_string(kv_heads) + " --intermediate_size " + std::to_string(inner) +
                              " > /dev/null";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "p4: cannot write the demo model with " << mill << "\n";
    return 1;
  }
  // Loaded the way src/model/runtime_plugin.cpp does; this process links libtorch itself for the sgemm floor.
  void* handle = ::dlopen(plugin.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    std::cerr << "p4: cannot load " << plugin << ": " << ::dlerror() << "\n";
    return 1;
  }
  auto create = reinterpret_cast<mill::CreateRuntimeBackendFn>(::dlsym(handle, mill::kRuntimeBackendSymbol));
  const std::int64_t context = 512;
  mill::ModelSpec spec{folder.string(), {{"dtype", "float32"}, {"device", "cpu"}, {"max_context_length", std::to_string(context)}}};
  std::string error;
  std::unique_ptr<mill::ModelBackend> backend(create(&spec, &error));
  if (!backend) {
    std::cerr << "p4: " << error << "\n";
    return 1;
  }
  std::string text;
  while (text.size() < 2000) text += "The miller carries the grain to the stones, and the stones grind it into flour. ";
  const std::vector<mill::RollingRequest> texts(6, {text});
  backend->loglikelihood_rolling({texts[0]});  // warm-up

  const double head_dim = static_cast<double>(hidden) / heads;
  const double per_layer = hidden * (hidden + 2 * kv_heads * head_dim) + hidden * hidden + 3.0 * hidden * inner;
  std::ifstream config_file(folder / "config.json");
  const double vocab_size = nlohmann::json::parse(config_file)["vocab_size"].get<double>();
  const double matmul_parameters = layers * per_layer + vocab_size * hidden;

  double best_model = 0, best_sgemm = 0;
  for (int round = 0; round < 3; ++round) {
    best_sgemm = std::max({best_sgemm, sgemm_gflops(2048, hidden, inner), sgemm_gflops(1024, 1024, 1024)});
    const auto before = backend->provenance()["forward_tokens"].get<double>();
    const auto start = std::chrono::steady_clock::now();
    const auto results = backend->loglikelihood_rolling(texts);
    const double seconds = seconds_since(start);
    const double tokens = backend->provenance()["forward_tokens"].get<double>() - before;
    // Causal attention: QKᵀ and PV over the keys each token can see, per window of at most `context` tokens.
    double attention = 0;
    for (const auto& result : results) {
      double remaining = result.n_tokens;
      while (remaining > 0) {
        const double t = std::min<double>(remaining, static_cast<double>(context));
        attention += 2.0 * 2.0 * layers * hidden * t * (t + 1) / 2;
        remaining -= t;
      }
    }
    const double gflops = (2.0 * matmul_parameters * tokens + attention) / seconds / 1e9;
    best_model = std::max(best_model, gflops);
    std::cout << "round " << round + 1 << ": " << tokens << " tokens in " << seconds << " s, model " << gflops
              << " GFLOP/s" << std::endl;
  }
  const double ratio = best_model / best_sgemm;
  std::cout << "threads " << at::get_num_threads() << ", parameters in matrices " << matmul_parameters / 1e6 << " M\n"
            << "sgemm (at::mm) " << best_sgemm << " GFLOP/s, runtime prefill " << best_model << " GFLOP/s, ratio " << ratio
            << " (bar >= 0.5: " << (ratio >= 0.5 ? "met" : "NOT met") << ")\n";
  std::filesystem::remove_all(folder);
  return 0;
}
