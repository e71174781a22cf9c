#include <catch2/catch.hpp>

#include "mill/base/error.hpp"
#include "mill/model/model_list.hpp"
#include "mill/model/model_spec.hpp"
#include "support.hpp"

using namespace mill;

TEST_CASE("model specs parse names and arguments") {
  const auto plain = ModelSpec::parse("meta-llama/Meta-Llama-3-8B-Instruct");
  CHECK(plain.name == "meta-llama/Meta-Llama-3-8B-Instruct");
  CHECK(plain.args.empty());
  CHECK(plain.backend() == "local");

  const auto spec = ModelSpec::parse("org/name[dtype=float16, batch_size=8,stop=\"a,]b\"]");
  CHECK(spec.name == "org/name");
  CHECK(spec.arg("dtype") == "float16");
  CHECK(spec.arg("batch_size") == "8");
  CHECK(spec.arg("stop") == "a,]b");
  CHECK_FALSE(spec.arg("device"));
  // Round trip through the normalised form, also for values with edge whitespace (found by fuzzing).
  CHECK(ModelSpec::parse(spec.to_string()).args == spec.args);
  const auto spaced = ModelSpec::parse("m[stop=\"\\n\n\",tab=\"\tx\"]");
  CHECK(ModelSpec::parse(spaced.to_string()).args == spaced.args);

  CHECK(ModelSpec::parse("vllm[path=/m/llama,tensor_parallel_size=2]").backend() == "vllm");
  CHECK(ModelSpec::parse("litellm[model=gpt-4o]").backend() == "api");
}

TEST_CASE("malformed model specs are one-line errors naming the spec") {
  for (const std::string bad : {"", "[dtype=x]", "org/name[dtype]", "org/name[dtype=x", "org/name[=x]",
                                "org/name[a=1,a=2]", "org/name[a=\"x]", "a\nb"}) {
    INFO(bad);
    try {
      ModelSpec::parse(bad);
      FAIL("accepted");
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(message.find("invalid model spec") != std::string::npos);
      CHECK(message.find('\n') == std::string::npos);
    }
  }
}

TEST_CASE("identity ignores execution-only arguments and argument order") {
  const auto a = ModelSpec::parse("m[dtype=float16,batch_size=8,device=cuda]");
  const auto b = ModelSpec::parse("m[device=cpu,dtype=float16]");
  const auto c = ModelSpec::parse("m[dtype=bfloat16]");
  CHECK(a.identity() == b.identity());
  CHECK(a.identity() != c.identity());
  CHECK(a.identity() == "m[dtype=float16]");
}

TEST_CASE("the model revision comes from the arg, the HF cache's refs/main, or is marked") {
  test::TempDir home;
  const auto hub = home / "hub";
  test::write_text(hub / "models--org--name" / "refs" / "main", "0123abcd\n");
  setenv("HF_HUB_CACHE", hub.c_str(), 1);
  CHECK(resolve_model_revision(ModelSpec::parse("org/name")) == "0123abcd");
  CHECK(resolve_model_revision(ModelSpec::parse("org/name[revision=v2]")) == "v2");
  CHECK(resolve_model_revision(ModelSpec::parse("org/other")) == "unresolved");
  CHECK(resolve_model_revision(ModelSpec::parse(home.path().string())) == "local");
  unsetenv("HF_HUB_CACHE");
}

TEST_CASE("local checkpoints given as relative paths become absolute, so workers elsewhere find them") {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "ckpt");
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  const auto spec = ModelSpec::parse("./ckpt/");
  const auto bare = ModelSpec::parse("ckpt[dtype=float32]");
  const auto served = ModelSpec::parse("vllm[path=../x]");
  const auto hub = ModelSpec::parse("org/not-a-folder");
  const auto spaced = ModelSpec::parse("./ckpt /");
  std::filesystem::current_path(previous);
  CHECK(spec.name == (dir / "ckpt").string());
  CHECK(bare.name == (dir / "ckpt").string());
  CHECK(served.arg("path") == (dir.path().parent_path() / "x").string());
  CHECK(hub.name == "org/not-a-folder");
  // Idempotent: the normalised spec parses to itself.
  CHECK(ModelSpec::parse(spec.to_string()).name == spec.name);
  // Found by fuzz_model_spec: "./ckpt /" became ".../ckpt " and printed that way parsed back as ".../ckpt".
  CHECK(spaced.name == (dir / "ckpt /").string());
  CHECK(ModelSpec::parse(spaced.to_string()).name == spaced.name);
}

TEST_CASE("model spec lists split on commas outside brackets and quotes") {
  CHECK(split_model_list("a[x=1,y=2], b ,c[s=\"p,q\"]") == std::vector<std::string>{"a[x=1,y=2]", "b", "c[s=\"p,q\"]"});
  CHECK(split_model_list("m[s=\"a\\\",b\"],n") == std::vector<std::string>{"m[s=\"a\\\",b\"]", "n"});
  CHECK(split_model_list("").empty());
}
