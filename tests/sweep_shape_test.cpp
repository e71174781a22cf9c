// Issue 14 through the real binary: resources per model (one array per shape), memory fit as a preflight problem,
// --minutes_per_eval as a budget per task or benchmark, and time limits that come from the results' measured cost.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

#include "mill/sweep/resources.hpp"
#include "mill/model/checkpoint_files.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {

// A profile with 8 A100s per node, one per element by default.
constexpr const char* kEightGpuProfile = R"(clusters:
  big:
    hostname_pattern: "testhost"
    partition: gpu
    gpu_type: a100
    gpus_per_node: 8
    gpus_per_task: 1
    cpus_per_task: 8
    mem: "64G"
    queue_limit: 500
    max_array_len: 50
    max_time: "2-00:00:00"
)";

struct LlamaSize {
  const char* id;
  long long hidden, layers, intermediate, vocab, heads, kv_heads;
};
constexpr LlamaSize kLlama70B{"meta-llama/Meta-Llama-3-70B-Instruct", 8192, 80, 28672, 128256, 64, 8};
constexpr LlamaSize kLlama8B{"meta-llama/Meta-Llama-3-8B-Instruct", 4096, 32, 14336, 128256, 32, 8};

// A hub-cache entry whose safetensors file holds only its header: the tensors' shapes (what the parameter count
// is read from) without gigabytes of weights.
void write_hub_llama(const std::filesystem::path& hub, const LlamaSize& size) {
  std::string id = size.id;
  const auto repo = hub / ("models--" + id.replace(id.find('/'), 1, "--"));
  const auto snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567";
  test::write_text(repo / "refs" / "main", "0123456789abcdef0123456789abcdef01234567");
  const auto head_dim = size.hidden / size.heads;
  test::write_text(snapshot / "config.json",
                   nlohmann::json{{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", size.hidden},
                                  {"num_hidden_layers", size.layers}, {"intermediate_size", size.intermediate},
                                  {"vocab_size", size.vocab}, {"num_attention_heads", size.heads},
                                  {"num_key_value_heads", size.kv_heads}, {"max_position_embeddings", 8192},
                                  {"torch_dtype", "bfloat16"}}
                       .dump());
  test::write_text(snapshot / "tokenizer.json", "{}");
  nlohmann::json header = nlohmann::json::object();
  long long offset = 0;
  auto tensor = [&](const std::string& name, std::vector<long long> shape) {
    long long count = 2;
    for (auto extent : shape) count *= extent;
    header[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {offset, offset + count}}};
    offset += count;
  };
  tensor("model.embed_tokens.weight", {size.vocab, size.hidden});
  tensor("lm_head.weight", {size.vocab, size.hidden});
  // Every layer's projections, stacked: the count is what matters here.
  tensor("model.layers.attention", {size.layers, size.hidden, 2 * size.hidden + 2 * size.kv_heads * head_dim});
  tensor("model.layers.mlp", {size.layers, 3 * size.hidden, size.intermediate});
  const auto text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  test::write_text(snapshot / "model.safetensors", bytes + text);
}

struct Cluster {
  test::TempDir root;
  std::map<std::string, std::string> env{{"HF_HUB_CACHE", (root / "hub").string()},
                                         {"MILL_HOSTNAME", "testhost"},
                                         {"MILL_DATA_DIR", (root / "data").string()}};
  Cluster() {
    test::write_task_data(root / "data", {"mmlu", "mmlu_pro"});
    test::write_text(root / "cache" / "clusters.yaml", kEightGpuProfile);
    write_hub_llama(root / "hub", kLlama70B);
    write_hub_llama(root / "hub", kLlama8B);
  }
  test::RunResult schedule(std::vector<std::string> rest) const {
    std::vector<std::string> all = {"--output_dir", (root / "out").string(), "--cache_dir", (root / "cache").string(),
                                    "schedule"};
    all.insert(all.end(), rest.begin(), rest.end());
    return test::run_mill(all, env);
  }
  nlohmann::json plan(std::vector<std::string> rest) const {
    rest.insert(rest.end(), {"--dry_run", "--json"});
    const auto result = schedule(rest);
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    return nlohmann::json::parse(result.out);
  }
};

}  // namespace

TEST_CASE("a 70B on four GPUs and an 8B on one are two arrays of one sweep, each with its own gres, CPUs and memory") {
  Cluster cluster;
  const auto plan = cluster.plan({std::string("vllm[path=") + kLlama70B.id + ",tensor_parallel_size=4]," + kLlama8B.id,
                                  "mmlu_anatomy,mmlu_astronomy"});
  const auto& arrays = plan["arrays"];
  REQUIRE(arrays.size() == 2);
  CHECK(arrays[0]["gpus"] == 4);
  CHECK(arrays[1]["gpus"] == 1);
  CHECK(arrays[0]["first_element"] == 0);
  CHECK(arrays[1]["first_element"] == arrays[0]["elements"]);
  const auto first = arrays[0]["script"].get<std::string>();
  const auto second = arrays[1]["script"].get<std::string>();
  CHECK_THAT(first, Contains("#SBATCH --gres=gpu:a100:4\n") && Contains("#SBATCH --cpus-per-task=32\n") &&
                        Contains("#SBATCH --mem=262144M\n") && Contains("#SBATCH --array=0-"));
  const auto second_start = arrays[1]["first_element"].get<int>();
  CHECK_THAT(second, Contains("#SBATCH --gres=gpu:a100:1\n") && Contains("#SBATCH --cpus-per-task=8\n") &&
                         Contains("#SBATCH --mem=64G\n") &&
                         Contains("#SBATCH --array=" + std::to_string(second_start) + "-"));
  // Each array's elements hold one model only, and the sweep totals add the arrays.
  CHECK(plan["gpu_hours"]["requested"].get<double>() ==
        Approx(arrays[0]["requested_gpu_hours"].get<double>() + arrays[1]["requested_gpu_hours"].get<double>()));
  CHECK(arrays[0]["requested_gpu_hours"].get<double>() >= arrays[0]["predicted_gpu_hours"].get<double>());
}

TEST_CASE("a model that cannot fit the profile's GPUs is a preflight problem that says what would fit") {
  Cluster cluster;
  auto result = cluster.schedule({std::string("vllm[path=") + kLlama70B.id + "]", "mmlu_anatomy"});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("needs ≈") && Contains("in bfloat16") && Contains("1 × 80 GiB") &&
                             Contains("use tensor_parallel_size=4"));
  CHECK_FALSE(std::filesystem::exists(cluster.root / "out" / "sweeps"));

  result = cluster.schedule({kLlama70B.id, "mmlu_anatomy"});  // the in-process runtime: one GPU
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("run it as vllm[path=...,tensor_parallel_size=4]"));

  result = cluster.schedule({std::string("vllm[path=") + kLlama8B.id + ",tensor_parallel_size=4,data_parallel_size=4]",
                             "mmlu_anatomy"});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("asks for 16 GPUs") && Contains("has 8 per node"));

  // A site whose A100s are the 40 GB kind says so, and the 8B then needs… still one.
  auto yaml = std::string(kEightGpuProfile) + "    gpu_memory: 40G\n";
  test::write_text(cluster.root / "cache" / "clusters.yaml", yaml);
  result = cluster.schedule({std::string("vllm[path=") + kLlama70B.id + ",tensor_parallel_size=2]", "mmlu_anatomy"});
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("2 × 40 GiB") && Contains("use tensor_parallel_size=8"));
  const auto fits = cluster.plan({kLlama8B.id, "mmlu_anatomy"});
  CHECK(fits["arrays"][0]["gpus"] == 1);
}

TEST_CASE("model sizes are read from safetensors headers and GPU memory from the profile or its gres label") {
  test::TempDir hub;
  write_hub_llama(hub.path(), kLlama70B);
  const auto folder = hub / "models--meta-llama--Meta-Llama-3-70B-Instruct" / "snapshots" /
                      "0123456789abcdef0123456789abcdef01234567";
  CHECK(checkpoint_parameters(folder) == Approx(70.55e9).epsilon(0.01));
  ClusterProfile profile;
  profile.gpu_type = "A100";
  constexpr double kGiB = 1024.0 * 1024 * 1024;
  CHECK(profile_gpu_memory_bytes(profile) == Approx(80 * kGiB));
  profile.gpu_type = "a100_40g";
  CHECK(profile_gpu_memory_bytes(profile) == Approx(40 * kGiB));
  profile.gpu_type = "h200";
  CHECK(profile_gpu_memory_bytes(profile) == Approx(141 * kGiB));
  profile.gpu_type = "unknown_accelerator";
  CHECK(profile_gpu_memory_bytes(profile) == 0);
  profile.gpu_memory_bytes = 24e9;
  CHECK(profile_gpu_memory_bytes(profile) == Approx(24e9));
}

TEST_CASE("a --minutes_per_eval budget covers a whole benchmark: mmlu_pro at 240 asks for about 4 GPU-hours, not 14 × 4") {
  Cluster cluster;
  const auto plan = cluster.plan({kLlama8B.id, "mmlu_pro", "--n_shots", "0", "--minutes_per_eval", "240"});
  const double requested = plan["gpu_hours"]["requested"];
  CHECK(requested <= 5.0);
  CHECK(requested >= 4.0);
  CHECK_THAT(plan["arrays"][0]["explanation"].get<std::string>(), Contains("--minutes_per_eval 240 per task or benchmark"));
  // Two n_shots are two runs of the benchmark: each gets the budget.
  const auto twice = cluster.plan({kLlama8B.id, "mmlu_pro", "--n_shots", "0,5", "--minutes_per_eval", "240"});
  CHECK(twice["gpu_hours"]["requested"].get<double>() <= 10.0);
  CHECK(twice["gpu_hours"]["requested"].get<double>() >= 8.0);
}

TEST_CASE("time limits come from the cost of earlier results once there are some") {
  Cluster cluster;
  // No history: the default throughput, said so.
  auto plan = cluster.plan({"mill-demo", "demo", "--n_shots", "1"});
  CHECK_THAT(plan["arrays"][0]["explanation"].get<std::string>(), Contains("default"));
  CHECK(plan["arrays"][0]["from_history"] == false);
  // A local sweep writes results whose provenance records their work and seconds …
  const auto local = cluster.schedule({"mill-demo", "demo", "--n_shots", "0,2", "--local"});
  INFO(local.err);
  REQUIRE(local.exit_code == 0);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(cluster.root / "out" / "results")) {
    if (entry.path().extension() != ".json" || entry.path().string().find("journal") != std::string::npos) continue;
    const auto result = nlohmann::json::parse(test::read_text(entry.path()));
    if (!result.contains("provenance")) continue;
    CHECK(result["provenance"]["work"]["documents"].get<double>() > 0);
    CHECK(result["provenance"]["work"]["input_bytes"].get<double>() > 0);
    CHECK(result["provenance"].contains("load_seconds"));
  }
  // … and the next plan's limit is derived from them.
  plan = cluster.plan({"mill-demo", "demo", "--n_shots", "1"});
  CHECK(plan["arrays"][0]["from_history"] == true);
  CHECK_THAT(plan["arrays"][0]["explanation"].get<std::string>(), Contains("history"));
}
