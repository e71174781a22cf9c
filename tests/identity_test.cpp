// A result's identity (issue 13): canonical model specs, `mill migrate` for results under earlier spellings,
// content fingerprints of local checkpoints, and Hugging Face revisions that planner and workers agree on. Run
// through the real mill binary wherever a user would.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/base/text.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {

std::string identity_of(const std::string& spec) { return ModelSpec::parse(spec).identity(); }

// A results tree with the demo task; every command runs the real binary.
struct Tree {
  test::TempDir root;
  std::map<std::string, std::string> env{{"HF_HUB_CACHE", (root / "hub").string()}, {"MILL_HOSTNAME", "testhost"}};
  std::filesystem::path out() const { return root / "out"; }
  test::RunResult mill(std::vector<std::string> args) const {
    std::vector<std::string> all = {"--output_dir", out().string(), "--cache_dir", (root / "cache").string()};
    all.insert(all.end(), args.begin(), args.end());
    return test::run_mill(all, env);
  }
  nlohmann::json plan(const std::string& models, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"schedule", models, "demo", "--dry_run", "--json", "--cluster", "local"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto run = mill(args);
    INFO(run.err);
    REQUIRE(run.exit_code == 0);
    return nlohmann::json::parse(run.out);
  }
  std::filesystem::path model_dir(const std::string& spec) const {
    return out() / "results" / path_component(identity_of(spec));
  }
};

}  // namespace

TEST_CASE("identity: arguments at the backend's default, boolean and number spellings and order do not matter") {
  CHECK(identity_of("org/m[dtype=bfloat16]") == "org/m");
  CHECK(identity_of("org/m[dtype=bf16,use_chat_template=false]") == "org/m");
  CHECK(identity_of("org/m[dtype=half]") == identity_of("org/m[dtype=float16]"));
  for (const auto* spelling : {"True", "true", "1", "yes"}) {
    CHECK(identity_of(std::string("org/m[use_chat_template=") + spelling + "]") == "org/m[use_chat_template=true]");
  }
  CHECK(identity_of("org/m[max_context_length=2048.0,dtype=float32]") ==
        identity_of("org/m[dtype=float32,max_context_length=02048]"));
  CHECK(identity_of("org/m[share_prefixes=false,generation_cache=true]") == "org/m");  // execution-only
  CHECK(identity_of("mill-demo[seed=01]") == identity_of("mill-demo[seed=1]"));
  CHECK(identity_of("mill-demo[seed=0]") == "mill-demo");
  CHECK(identity_of("vllm[path=org/m,dtype=auto,endpoint=completions,trust_remote_code=False]") == "vllm[path=org/m]");
  CHECK(identity_of("litellm[model=gpt-x]") == identity_of("api[model=gpt-x]"));

  // What changes the numbers still tells models apart.
  CHECK(identity_of("org/m[dtype=float16]") != identity_of("org/m"));
  CHECK(identity_of("org/m[use_chat_template=yes]") != identity_of("org/m"));
  CHECK(identity_of("mill-demo[seed=1]") != identity_of("mill-demo[seed=2]"));
  CHECK(identity_of("mill-demo[seed=9007199254740993]") != identity_of("mill-demo[seed=9007199254740992]"));
  CHECK(identity_of("org/m[revision=v1]") != identity_of("org/m[revision=v2]"));
  // An unknown argument is kept as typed (the preflight rejects it, naming the valid ones).
  CHECK(identity_of("org/m[colour=Blue]") == "org/m[colour=Blue]");
}

TEST_CASE("identity: m[dtype=bfloat16] and m are one job, and the worker writes where the planner looks") {
  Tree tree;
  const auto plan = tree.plan("org/m[dtype=bfloat16],org/m[batch_size=4],org/m", {"--skip_model_check"});
  REQUIRE(plan["jobs"].size() == 1);

  // mill-demo runs for real: planned under one spelling, evaluated under another, planned again under a third.
  const auto first = tree.plan("mill-demo[seed=01]");
  REQUIRE(first["jobs"].size() == 1);
  CHECK(first["jobs"][0]["status"] == "missing");
  const auto eval = tree.mill({"eval", "mill-demo[seed=001,delay_ms=0]", "demo"});
  INFO(eval.err);
  REQUIRE(eval.exit_code == 0);
  CHECK(first["jobs"][0]["result"] == (tree.model_dir("mill-demo[seed=1]") / "demo" / "0shot.json").string());
  const auto again = tree.plan("mill-demo[seed=1]");
  CHECK(again["jobs"][0]["status"] == "done");
  CHECK(again["jobs"][0]["key"] == first["jobs"][0]["key"]);
  const auto rerun = tree.mill({"eval", "mill-demo[seed=+1]", "demo"});
  CHECK(rerun.exit_code == 0);
  CHECK_THAT(rerun.out, Contains("done (already)"));
}

TEST_CASE("identity: mill migrate moves results written under an earlier spelling, and they count as done") {
  Tree tree;
  REQUIRE(tree.mill({"eval", "mill-demo[seed=1]", "demo"}).exit_code == 0);
  // What an earlier mill wrote for `mill-demo[seed=01]`: its own directory, and the spelling in the key.
  const auto canonical = tree.model_dir("mill-demo[seed=1]");
  const auto legacy = tree.out() / "results" / path_component("mill-demo[seed=01]");
  std::filesystem::rename(canonical, legacy);
  auto document = nlohmann::json::parse(test::read_text(legacy / "demo" / "0shot.json"));
  document["key_inputs"]["model"] = "mill-demo[seed=01]";
  document["key"] = content_hash(document["key_inputs"].dump());
  document["model"] = document["model_identity"] = "mill-demo[seed=01]";
  const auto legacy_bytes = document.dump(2) + "\n";
  test::write_text(legacy / "demo" / "0shot.json", legacy_bytes);

  // Before the migration: planned again, and schedule says why and what to run.
  auto plan = tree.plan("mill-demo[seed=01]");
  CHECK(plan["jobs"][0]["status"] == "missing");
  CHECK_THAT(plan["messages"].dump(), Contains("mill migrate") && Contains(path_component("mill-demo[seed=01]")));

  const auto dry = tree.mill({"migrate", "--dry_run"});
  REQUIRE(dry.exit_code == 0);
  CHECK_THAT(dry.out, Contains("would move 3 file(s)"));
  CHECK(std::filesystem::exists(legacy / "demo" / "0shot.json"));

  const auto migrated = tree.mill({"migrate"});
  INFO(migrated.out << migrated.err);
  REQUIRE(migrated.exit_code == 0);
  CHECK_THAT(migrated.out, Contains("moved 3 file(s) from 1 model directory"));
  CHECK_FALSE(std::filesystem::exists(legacy));
  // Renamed, not rewritten.
  CHECK(test::read_text(canonical / "demo" / "0shot.json") == legacy_bytes);
  CHECK(std::filesystem::exists(canonical / "demo" / "0shot.journal.jsonl"));

  plan = tree.plan("mill-demo[seed=01]");
  CHECK(plan["jobs"][0]["status"] == "done");
  CHECK(plan["messages"].dump().find("mill migrate") == std::string::npos);
  const auto collect = tree.mill({"collect", "--check"});
  INFO(collect.out << collect.err);
  CHECK(collect.exit_code == 0);
  const auto csv = test::read_text(tree.out() / "aggregate.csv");
  CHECK_THAT(csv, Contains("mill-demo[seed=1],demo,"));
  CHECK(csv.find("seed=01") == std::string::npos);
  CHECK_THAT(tree.mill({"migrate"}).out, Contains("already has its canonical name"));
}

TEST_CASE("identity: mill migrate leaves a file in place when the canonical directory has its own") {
  Tree tree;
  REQUIRE(tree.mill({"eval", "mill-demo[seed=1]", "demo"}).exit_code == 0);
  const auto legacy = tree.out() / "results" / path_component("mill-demo[seed=01]");
  std::filesystem::create_directories(legacy / "demo");
  std::filesystem::copy_file(tree.model_dir("mill-demo[seed=1]") / "demo" / "0shot.json", legacy / "demo" / "0shot.json");
  const auto canonical_bytes = test::read_text(tree.model_dir("mill-demo[seed=1]") / "demo" / "0shot.json");
  const auto migrated = tree.mill({"migrate"});
  REQUIRE(migrated.exit_code == 0);
  CHECK_THAT(migrated.out, Contains("1 left in place") && Contains("kept: " + (legacy / "demo" / "0shot.json").string()));
  CHECK(std::filesystem::exists(legacy / "demo" / "0shot.json"));
  CHECK(test::read_text(tree.model_dir("mill-demo[seed=1]") / "demo" / "0shot.json") == canonical_bytes);
}

// ---- content identity of checkpoint folders ----

namespace {

bool runtime_plugin_built() {
  const auto plugin = test::runtime_plugin_path();
  return !plugin.empty() && std::filesystem::exists(plugin);
}

#define REQUIRE_RUNTIME_PLUGIN()                                               \
  if (!runtime_plugin_built()) {                                               \
    WARN("the model runtime plugin was not built (no libtorch); skipped");     \
    return;                                                                    \
  }

void write_checkpoint(const std::filesystem::path& folder, std::vector<std::string> options = {}) {
  std::vector<std::string> args = {"demo-model", folder.string()};
  args.insert(args.end(), options.begin(), options.end());
  const auto run = test::run_mill(args);
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
}

}  // namespace

TEST_CASE("identity: a checkpoint's fingerprint follows its content, not its path") {
  test::TempDir dir;
  write_checkpoint(dir / "a");
  write_checkpoint(dir / "b");
  write_checkpoint(dir / "c", {"--seed", "7"});  // same shapes and sizes, other weights
  write_checkpoint(dir / "sharded", {"--shards", "3"});
  const auto a = checkpoint_fingerprint(dir / "a");
  CHECK(a.size() == 32);
  CHECK(checkpoint_fingerprint(dir / "b") == a);
  CHECK(checkpoint_fingerprint(dir / "c") != a);
  CHECK(checkpoint_fingerprint(dir / "sharded") != a);
  CHECK(checkpoint_fingerprint(dir / "sharded") == checkpoint_fingerprint(dir / "sharded"));

  // A generation config or a tokenizer change is a content change too.
  test::write_text(dir / "b" / "generation_config.json", "{\"max_new_tokens\": 8}");
  CHECK(checkpoint_fingerprint(dir / "b") != a);

  // A damaged header is one line naming the file.
  test::write_text(dir / "a" / "model.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}");
  try {
    checkpoint_fingerprint(dir / "a");
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Contains((dir / "a" / "model.safetensors").string()) && Contains("header length"));
  }
}

TEST_CASE("identity: a moved checkpoint folder keeps its results done, weights replaced in place make them stale") {
  REQUIRE_RUNTIME_PLUGIN();
  Tree tree;
  const auto first = tree.root / "runs" / "step-1000";
  write_checkpoint(first);
  const auto spec_at = [](const std::filesystem::path& folder) { return folder.string() + "[dtype=float32,device=cpu]"; };
  const std::vector<std::string> limit = {"--limit", "4"};

  auto eval = tree.mill({"eval", spec_at(first), "demo", "--limit", "4"});
  INFO(eval.err);
  REQUIRE(eval.exit_code == 0);
  auto plan = tree.plan(spec_at(first), limit);
  REQUIRE(plan["jobs"].size() == 1);
  CHECK(plan["jobs"][0]["status"] == "done");
  const auto result_file = plan["jobs"][0]["result"].get<std::string>();
  const auto result = nlohmann::json::parse(test::read_text(result_file));
  // The result records the fingerprint and the folder it was read from; the key holds the fingerprint, not the path.
  CHECK(result["model_checkpoint"]["folder"] == first.string());
  CHECK(result["model_checkpoint"]["fingerprint"] == checkpoint_fingerprint(first));
  CHECK(result["key_inputs"]["model_content"] == checkpoint_fingerprint(first));
  CHECK(result["key_inputs"]["model"].get<std::string>().find(first.string()) == std::string::npos);

  // Replaced in place by a later training step (same shapes and sizes): stale, and schedule says why.
  write_checkpoint(first, {"--seed", "7"});
  plan = tree.plan(spec_at(first), limit);
  CHECK(plan["jobs"][0]["status"] == "stale");
  CHECK(plan["jobs"][0]["reason"] == "model content changed");
  const auto table = tree.mill({"schedule", spec_at(first), "demo", "--limit", "4", "--dry_run", "--cluster", "local"});
  CHECK_THAT(table.out, Contains("stale    model content changed"));
  eval = tree.mill({"eval", spec_at(first), "demo", "--limit", "4"});
  INFO(eval.err);
  REQUIRE(eval.exit_code == 0);
  CHECK(tree.plan(spec_at(first), limit)["jobs"][0]["status"] == "done");

  // Moved: planned under its new path, it is done, and the worker agrees.
  const auto moved = tree.root / "archive" / "step-1000";
  std::filesystem::create_directories(moved.parent_path());
  std::filesystem::rename(first, moved);
  plan = tree.plan(spec_at(moved), limit);
  CHECK(plan["jobs"][0]["status"] == "done");
  CHECK(plan["jobs"][0]["result"] == result_file);
  eval = tree.mill({"eval", spec_at(moved), "demo", "--limit", "4"});
  CHECK(eval.exit_code == 0);
  CHECK_THAT(eval.out, Contains("done (already)"));
  const auto collect = tree.mill({"collect", "--check"});
  INFO(collect.out << collect.err);
  CHECK(collect.exit_code == 0);
  CHECK_THAT(test::read_text(tree.out() / "aggregate.csv"), Contains(first.string()));
}

// ---- Hugging Face revisions when the planner and the workers see different caches ----

namespace {
constexpr const char* kCommit = "0123456789abcdef0123456789abcdef01234567";
constexpr const char* kOtherCommit = "fedcba9876543210fedcba9876543210fedcba98";

// The values of aggregate.csv's `stale` column (no field of these rows is quoted).
std::set<std::string> stale_column(const std::string& csv) {
  std::set<std::string> values;
  std::istringstream lines(csv);
  std::string line;
  std::size_t column = 0;
  for (bool header = true; std::getline(lines, line); header = false) {
    std::vector<std::string> fields;
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) fields.push_back(cell);
    if (header) {
      column = static_cast<std::size_t>(std::find(fields.begin(), fields.end(), "stale") - fields.begin());
    } else if (column < fields.size()) {
      values.insert(fields[column]);
    }
  }
  return values;
}

// A hub cache holding org/tiny (a real tiny checkpoint) at `commit`, with refs/main pointing to `main`.
void write_hub_model(const std::filesystem::path& hub, const std::string& commit, const std::string& main) {
  write_checkpoint(hub / "models--org--tiny" / "snapshots" / commit);
  test::write_text(hub / "models--org--tiny" / "refs" / "main", main);
}
}  // namespace

TEST_CASE("identity: results written where the workers' cache resolves the revision are done for a planner without it") {
  REQUIRE_RUNTIME_PLUGIN();
  Tree tree;  // the planner's HF_HUB_CACHE (tree.root/hub) does not have the model
  const auto node_cache = tree.root / "node-hub";
  write_hub_model(node_cache, kCommit, kCommit);
  const std::string spec = "org/tiny[dtype=float32,device=cpu]";
  const std::vector<std::string> planning = {"--limit", "3", "--skip_model_check"};

  auto plan = tree.plan(spec, planning);
  REQUIRE(plan["jobs"].size() == 1);
  CHECK(plan["jobs"][0]["status"] == "missing");
  auto worker_env = tree.env;
  worker_env["HF_HUB_CACHE"] = node_cache.string();
  const auto eval = test::run_mill({"--output_dir", tree.out().string(), "eval", spec, "demo", "--limit", "3"}, worker_env);
  INFO(eval.err);
  REQUIRE(eval.exit_code == 0);
  const auto result = nlohmann::json::parse(test::read_text(plan["jobs"][0]["result"].get<std::string>()));
  CHECK(result["key_inputs"]["model_revision"] == kCommit);

  // The next schedule from the login node plans nothing, every time.
  for (int round = 0; round < 2; ++round) {
    plan = tree.plan(spec, planning);
    CHECK(plan["jobs"][0]["status"] == "done");
    CHECK(plan["counts"]["pending"] == 0);
  }
  // collect on the login node does not call it stale either.
  const auto collect = tree.mill({"collect", "--check"});
  CHECK(collect.exit_code == 0);
  CHECK(stale_column(test::read_text(tree.out() / "aggregate.csv")) == std::set<std::string>{"0"});

  // A planner that does see a revision judges by it: another commit is stale.
  write_hub_model(tree.root / "hub", kOtherCommit, kOtherCommit);
  plan = tree.plan(spec, planning);
  CHECK(plan["jobs"][0]["status"] == "stale");
  CHECK_THAT(plan["jobs"][0]["reason"].get<std::string>(), Contains("model_revision"));
}

TEST_CASE("identity: a worker evaluates the revision its manifest planned, or fails in one line when its cache lacks it") {
  REQUIRE_RUNTIME_PLUGIN();
  Tree tree;
  const auto node_cache = tree.root / "node-hub";
  write_hub_model(node_cache, kCommit, kOtherCommit);  // refs/main moved on, the planned snapshot is still there
  const auto manifest = tree.root / "sweep" / "manifest.json";
  const auto write_manifest = [&](const std::string& revision) {
    const nlohmann::json document = {
        {"schema", "mill.manifest/1"},
        {"settings", nlohmann::json::object()},
        {"elements",
         {{{"model", "org/tiny[dtype=float32,device=cpu]"},
           {"model_revision", revision},
           {"jobs", {{{"task", "demo"}, {"n_shot", 0}, {"limit", 2}, {"key", ""}}}}}}}};
    test::write_text(manifest, document.dump(2));
  };
  auto worker_env = tree.env;
  worker_env["HF_HUB_CACHE"] = node_cache.string();
  const auto run_element = [&] {
    return test::run_mill({"--output_dir", tree.out().string(), "eval", "--manifest", manifest.string(), "--element", "0"},
                          worker_env);
  };

  write_manifest(kCommit);
  auto run = run_element();
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const auto result_file = tree.out() / "results" / "org__tiny%5Bdtype%3Dfloat32%5D" / "demo" / "0shot-limit2.json";
  const auto result = nlohmann::json::parse(test::read_text(result_file));
  CHECK(result["key_inputs"]["model_revision"] == kCommit);
  CHECK(result["provenance"]["backend"]["revision"] == kCommit);

  // Planned at a commit this node's cache does not have: the job fails, saying which and what to do.
  std::filesystem::remove(result_file);
  write_manifest("1111111111111111111111111111111111111111");
  run = run_element();
  CHECK(run.exit_code == 4);
  CHECK_THAT(run.err, Contains("planned at revision 1111111111111111111111111111111111111111") &&
                          Contains(node_cache.string()) && Contains("huggingface-cli download org/tiny"));
  CHECK_FALSE(std::filesystem::exists(result_file));
}
