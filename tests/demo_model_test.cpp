#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <set>

#include "mill/model/demo_model.hpp"
#include "mill/base/error.hpp"
#include "mill/model/safetensors.hpp"
#include "mill/tokenizers/tokenizer.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::read_text;
using mill::test::run_mill;
using mill::test::TempDir;

TEST_CASE("mill demo-model writes the same checkpoint every time, in real formats") {
  TempDir dir;
  const auto first = run_mill({"demo-model", (dir / "a").string()});
  REQUIRE(first.exit_code == 0);
  REQUIRE(run_mill({"demo-model", (dir / "b").string()}).exit_code == 0);
  for (const auto* file : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    CHECK(read_text(dir / "a" / file) == read_text(dir / "b" / file));
  }
  const auto config = nlohmann::json::parse(read_text(dir / "a" / "config.json"));
  CHECK(config["architectures"][0] == "LlamaForCausalLM");
  const auto weights = read_text(dir / "a" / "model.safetensors");
  const auto header = safetensors::parse_header(reinterpret_cast<const std::byte*>(weights.data()), weights.size(), "model");
  const auto* embedding = header.find("model.embed_tokens.weight");
  REQUIRE(embedding);
  CHECK(embedding->shape == std::vector<std::int64_t>{config["vocab_size"].get<std::int64_t>(), 64});

  // Another seed gives other weights; the tokenizer does not depend on it.
  REQUIRE(run_mill({"demo-model", (dir / "c").string(), "--seed", "7"}).exit_code == 0);
  CHECK(read_text(dir / "c" / "model.safetensors") != weights);
  CHECK(read_text(dir / "c" / "tokenizer.json") == read_text(dir / "a" / "tokenizer.json"));

  const auto bad = run_mill({"demo-model", (dir / "d").string(), "--architecture", "bert"});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("llama, qwen2, qwen3, qwen3_moe, mixtral, gemma2, gemma3, phi3, olmo2, gpt2, gpt_neox"));
}

TEST_CASE("the demo tokenizer is a byte-level BPE that mill's tokenizer reads back exactly") {
  TempDir dir;
  write_demo_model(dir.path(), {});
  const auto tokenizer = Tokenizer::load(dir.path());
  const std::string text = "Question: Which option is best?\nAnswer: A. The mill turns 42 stones — ünïcode too.";
  const auto ids = tokenizer->encode(text, false);
  CHECK(tokenizer->decode(ids) == text);
  // Merges were learned: common words take fewer tokens than bytes.
  CHECK(ids.size() < text.size() / 2);
  CHECK(tokenizer->eos_id().has_value());
  const auto config = nlohmann::json::parse(read_text(dir / "config.json"));
  CHECK(tokenizer->vocab_size() == config["vocab_size"].get<std::size_t>());
  CHECK(tokenizer->vocab_size() > 256 + 100);
}

TEST_CASE("demo checkpoints can be sharded and stored in half precision") {
  TempDir dir;
  DemoModelOptions options;
  options.architecture = "gpt_neox";
  options.dtype = "bfloat16";
  options.shards = 3;
  write_demo_model(dir.path(), options);
  const auto index = nlohmann::json::parse(read_text(dir / "model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items()) files.insert(file.get<std::string>());
  CHECK(files.size() == 3);
  for (const auto& file : files) {
    const auto bytes = read_text(dir / file);
    const auto header = safetensors::parse_header(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), file);
    for (const auto& tensor : header.tensors) CHECK(tensor.dtype == safetensors::DType::BF16);
  }
  options.hidden_size = 10;
  options.heads = 4;
  CHECK_THROWS_AS(write_demo_model(dir / "bad", options), Error);
}

TEST_CASE("mill demo-model --llamacpp_compatible changes only what llama.cpp cannot represent") {
  TempDir dir;
  const auto write = [&](const std::string& architecture, bool compatible) {
    const auto folder = dir / (architecture + (compatible ? "-llamacpp" : ""));
    if (!std::filesystem::exists(folder)) {
      DemoModelOptions options;
      options.architecture = architecture;
      options.llamacpp_compatible = compatible;
      write_demo_model(folder, options);
    }
    return folder;
  };
  const auto config_of = [](const std::filesystem::path& folder) { return nlohmann::json::parse(read_text(folder / "config.json")); };
  // Qwen3-MoE: renormalised top-k and every layer sparse (llama.cpp's qwen3moe), where the plain demo has neither.
  const auto plain_moe = config_of(write("qwen3_moe", false));
  const auto moe_folder = dir / "cli-qwen3_moe";
  const auto run = run_mill({"demo-model", moe_folder.string(), "--architecture", "qwen3_moe", "--llamacpp_compatible"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const auto moe = config_of(moe_folder);
  CHECK(plain_moe["norm_topk_prob"] == false);
  CHECK(plain_moe["mlp_only_layers"] == nlohmann::json::array({1}));
  CHECK(moe["norm_topk_prob"] == true);
  CHECK(moe["mlp_only_layers"].empty());
  const auto weights = read_text(moe_folder / "model.safetensors");
  const auto header = safetensors::parse_header(reinterpret_cast<const std::byte*>(weights.data()), weights.size(), "model");
  CHECK(header.find("model.layers.1.mlp.experts.0.gate_proj.weight"));
  CHECK_FALSE(header.find("model.layers.1.mlp.gate_proj.weight"));
  // Gemma: scores scaled by 1/sqrt(head_dim); Phi-3: a window as wide as the positions.
  for (const std::string gemma : {"gemma2", "gemma3"}) {
    CHECK(config_of(write(gemma, false))["query_pre_attn_scalar"] != config_of(write(gemma, false))["head_dim"]);
    const auto config = config_of(write(gemma, true));
    CHECK(config["query_pre_attn_scalar"] == config["head_dim"]);
  }
  const auto phi3 = config_of(write("phi3", true));
  CHECK(phi3["sliding_window"] == phi3["max_position_embeddings"]);
  CHECK(config_of(write("phi3", false))["sliding_window"] == 24);
  // The families llama.cpp runs as they are: the same bytes either way.
  for (const std::string same : {"llama", "mixtral"}) {
    CHECK(read_text(write(same, false) / "model.safetensors") == read_text(write(same, true) / "model.safetensors"));
    CHECK(read_text(write(same, false) / "config.json") == read_text(write(same, true) / "config.json"));
  }
}
