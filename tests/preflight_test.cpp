// The plan-time preflight of `mill schedule` through the real binary: every problem a worker would hit that the
// login node can see stops schedule, its dry run (text and JSON) and --local with exit 2, names the problem, and
// writes nothing. (tests/slurm_test.cpp checks that a real submission leaves the SLURM queue empty.)
#include <sys/mount.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "mill/base/text.hpp"
#include "support.hpp"

using namespace mill;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// A task that reads `path` (relative to the data directory, or absolute) as JSON Lines, with `extra` YAML lines.
std::string jsonl_task(const std::string& name, const std::string& path, const std::string& extra = "") {
  return "task: " + name +
         "\noutput_type: logprobs\neval_split: test\nfewshot_split: train\nanswer_field: answer\n"
         "prompt:\n  template: \"Q: {question}\\nA:\"\n  options_field: choices\n  continuation: option\n"
         "dataset:\n  format: jsonl\n  path: \"" +
         path + "\"\n" + extra;
}

const std::string kDocuments =
    "{\"question\": \"1 + 1?\", \"choices\": [\"2\", \"3\"], \"answer\": 0}\n"
    "{\"question\": \"2 + 2?\", \"choices\": [\"5\", \"4\"], \"answer\": 1}\n";

struct Sweep {
  test::TempDir root;
  fs::path out = root / "out";
  std::map<std::string, std::string> env{{"HF_HUB_CACHE", (root / "hub").string()}, {"MILL_HOSTNAME", "testhost"}};

  Sweep() {
    const auto tasks = root / "tasks";
    test::write_text(tasks / "typo.yaml", jsonl_task("typo_task", "docs/{split}.jsonl", "promt: oops\n"));
    auto parquet = jsonl_task("parquet_task", "docs/{split}.jsonl");  // a format mill does not read
    parquet.replace(parquet.find("format: jsonl"), 13, "format: parquet");
    test::write_text(tasks / "parquet.yaml", parquet);
    test::write_text(tasks / "missing.yaml", jsonl_task("missing_data", "nowhere/{split}.jsonl"));
    test::write_text(tasks / "absolute.yaml", jsonl_task("absolute_data", (root / "elsewhere" / "{split}.jsonl").string()));
    test::write_text(root / "elsewhere" / "test.jsonl", kDocuments);
    test::write_text(root / "elsewhere" / "train.jsonl", kDocuments);
    test::write_text(root / "data" / "docs" / "test.jsonl", kDocuments);
    test::write_task_data(root / "data", {"mmlu_anatomy"});

    // A checkpoint whose index names a shard that is not there, and one of an architecture the runtime lacks.
    const auto sharded = root / "ckpt-missing-shard";
    test::write_text(sharded / "config.json", R"({"architectures": ["LlamaForCausalLM"]})");
    test::write_text(sharded / "model.safetensors.index.json",
                     R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})");
    test::write_text(sharded / "model-00001-of-00002.safetensors", "");
    test::write_text(sharded / "tokenizer.json", "{}");
    const auto foreign = root / "ckpt-arch";
    test::write_text(foreign / "config.json", R"({"architectures": ["FooForCausalLM"]})");
    test::write_text(foreign / "model.safetensors", "");
    test::write_text(foreign / "tokenizer.json", "{}");

    // The first schedule copies the bundled cluster profiles (and says so): done here, so the checks see only theirs.
    REQUIRE(test::run_mill(args({"schedule", "mill-demo", "demo", "--dry_run", "--cluster", "local"}), env).exit_code == 0);
    fs::remove_all(out);
  }

  std::vector<std::string> args(std::vector<std::string> rest) const {
    std::vector<std::string> all = {"--output_dir", out.string(), "--cache_dir", (root / "cache").string()};
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
  }

  std::vector<std::string> schedule(const std::string& models, const std::string& tasks,
                                    const std::vector<std::string>& extra) const {
    std::vector<std::string> command = {"schedule", models, tasks, "--cluster", "local",
                                        "--extra_task_paths", (root / "tasks").string()};
    command.insert(command.end(), extra.begin(), extra.end());
    return args(command);
  }
};

struct Case {
  std::string models;
  std::string tasks;
  std::vector<std::string> extra;
  std::string expected;  // part of the problem's message
};

}  // namespace

TEST_CASE("each preflight problem stops schedule, its dry run (text and JSON) and --local, and nothing is written") {
  Sweep sweep;
  const auto data_dir = (sweep.root / "data").string();
  const std::vector<Case> cases = {
      {"mill-demo", "mmlu_anatomy", {}, "read data files but no data directory is set: pass --data_dir DIR or set MILL_DATA_DIR"},
      {"mill-demo", "missing_data", {"--data_dir", data_dir}, "data file for split \"test\" not found"},
      {"mill-demo", "typo_task", {"--data_dir", data_dir}, "unknown field `promt`; did you mean prompt?"},
      {"mill-demo", "parquet_task", {"--data_dir", data_dir}, "field `dataset.format`: \"parquet\" is not one of csv, tsv, json, jsonl, inline"},
      {"mill-demo", "demo", {"--n_shots", "25"}, "--n_shots 25 is more than the 5 few-shot example(s) in split \"train\""},
      {"mill-demo", "mmlu_anatomy", {"--n_shots", "6", "--data_dir", data_dir}, "--n_shots 6 is more than the 5 few-shot example(s) in split \"dev\""},
      {"mill-demo[SEED=1]", "demo", {}, "mill-demo has no argument \"SEED\"; did you mean seed?"},
      {"mill-demo[batch_size=0]", "demo", {}, "batch_size=\"0\" is not a whole number in 1.."},
      {"org/absent-model", "demo", {}, "is not in the Hugging Face cache"},
      {"org/absent-model[dtype=float64]", "demo", {"--skip_model_check"}, "dtype=\"float64\" is not bfloat16, float16 or float32"},
      {(sweep.root / "ckpt-missing-shard").string(), "demo", {}, "the shard model-00002-of-00002.safetensors named by model.safetensors.index.json is missing"},
      {(sweep.root / "ckpt-arch").string(), "demo", {}, "architecture \"FooForCausalLM\" is not supported by the in-process runtime"},
      {"vllm[path=org/absent-model,tensor_parallel_size=0]", "demo", {"--skip_model_check"}, "tensor_parallel_size=\"0\""},
      {"mill-demo", "demo", {"--venv_path", (sweep.root / "no-venv").string()}, "--venv_path"},
      {"mill-demo", "demo", {"--minutes_per_eval", "nan"}, "--minutes_per_eval: nan is not a number of minutes"},
      {"mill-demo", "demo", {"--minutes_per_eval", "1e308"}, "--minutes_per_eval: 1e+308 is not a number of minutes"},
      {"mill-demo", "demo", {"--limit", "0"}, "--limit: 0 is not a positive number of documents"},
      {"mill-demo", "mmlu_anatomyy", {}, "unknown task or benchmark \"mmlu_anatomyy\"; did you mean mmlu_anatomy"},
  };
  for (const auto& c : cases) {
    for (const std::vector<std::string>& mode :
         {std::vector<std::string>{}, {"--dry_run"}, {"--dry_run", "--json"}, {"--local"}}) {
      auto extra = c.extra;
      extra.insert(extra.end(), mode.begin(), mode.end());
      const auto run = test::run_mill(sweep.schedule(c.models, c.tasks, extra), sweep.env);
      INFO(c.models << " " << c.tasks << " " << join(extra, " ") << "\nstdout: " << run.out << "\nstderr: " << run.err);
      CHECK(run.exit_code == 2);
      if (mode.size() == 2) {  // --json: the problems are data
        const auto plan = nlohmann::json::parse(run.out);
        REQUIRE(plan["problems"].size() == 1);
        CHECK_THAT(plan["problems"][0]["message"].get<std::string>(), Contains(c.expected));
      } else if (mode.size() == 1) {  // a dry run shows them with its plan, or alone when nothing can be planned
        CHECK_THAT(run.out + run.err, Contains(c.expected));
      } else {
        CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);  // one problem: one line
        CHECK_THAT(run.err, Contains(c.expected));
      }
      CHECK_FALSE(fs::exists(sweep.out / "sweeps"));
      CHECK_FALSE(fs::exists(sweep.out / "results"));
    }
  }
}

TEST_CASE("a sweep with many problems reports every one of them in one run") {
  Sweep sweep;
  const auto command = sweep.schedule("mill-demo[SEED=1],org/absent-model", "typo_task,missing_data,demo",
                                      {"--n_shots", "0,25", "--minutes_per_eval", "inf", "--data_dir",
                                       (sweep.root / "data").string()});
  const std::vector<std::string> expected = {"unknown field `promt`", "data file for split \"test\" not found",
                                             "--n_shots 25 is more than the 5", "has no argument \"SEED\"",
                                             "is not in the Hugging Face cache", "--minutes_per_eval: inf"};
  auto run = test::run_mill(command, sweep.env);
  INFO(run.err);
  CHECK(run.exit_code == 2);
  for (const auto& text : expected) CHECK_THAT(run.err, Contains(text));
  CHECK_THAT(run.err, Contains("mill: error: preflight found 6 problems"));
  // Every line a clean "mill: ..." line: one per problem, then the error.
  CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 7);

  auto dry = command;
  dry.push_back("--dry_run");
  dry.push_back("--json");
  run = test::run_mill(dry, sweep.env);
  CHECK(run.exit_code == 2);
  const auto plan = nlohmann::json::parse(run.out);
  REQUIRE(plan["problems"].size() == 6);
  std::string messages;
  for (const auto& problem : plan["problems"]) messages += problem["message"].get<std::string>() + "\n";
  for (const auto& text : expected) CHECK_THAT(messages, Contains(text));
  // Jobs are shown blocked by their model's or task's problem; demo × mill-demo[SEED=1] by the model's.
  for (const auto& job : plan["jobs"]) {
    CHECK(job["status"] == "blocked");
    CHECK(job.contains("problem"));
  }
  CHECK_FALSE(fs::exists(sweep.out / "sweeps"));
}

TEST_CASE("the preflight passes real checkpoints and data, and --skip_model_check skips only the checkpoint lookup") {
  Sweep sweep;
  REQUIRE(test::run_mill({"demo-model", (sweep.root / "ckpt").string()}).exit_code == 0);
  auto run = test::run_mill(sweep.schedule((sweep.root / "ckpt").string() + ",mill-demo", "demo,mmlu_anatomy",
                                           {"--n_shots", "0,5", "--data_dir", (sweep.root / "data").string(), "--dry_run"}),
                            sweep.env);
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.out.find("preflight") == std::string::npos);
  run = test::run_mill(sweep.schedule("org/absent-model", "demo", {"--dry_run", "--skip_model_check"}), sweep.env);
  CHECK(run.exit_code == 0);
}

TEST_CASE("a task whose dataset.path is absolute needs no data directory, in schedule and in eval") {
  Sweep sweep;
  auto run = test::run_mill(sweep.schedule("mill-demo", "absolute_data", {"--n_shots", "0,1", "--local"}), sweep.env);
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK(fs::exists(sweep.out / "results" / "mill-demo" / "absolute_data" / "1shot.json"));
  run = test::run_mill(sweep.args({"eval", "mill-demo[seed=3]", "absolute_data", "--extra_task_paths",
                                   (sweep.root / "tasks").string()}),
                       sweep.env);
  CHECK(run.exit_code == 0);
}

TEST_CASE("a user group named like a built-in benchmark is refused, not merged into it") {
  Sweep sweep;
  test::TempDir extra;
  test::write_text(extra / "group.yaml",
                   "group: mmlu\ntasks:\n  - {task: my_subject, output_type: logprobs, dataset: {format: jsonl, path: x.jsonl}}\n");
  const auto run = test::run_mill(sweep.args({"schedule", "mill-demo", "mmlu", "--dry_run", "--cluster", "local",
                                              "--extra_task_paths", extra.path().string()}),
                                  sweep.env);
  CHECK(run.exit_code == 2);
  CHECK_THAT(run.err, Contains("group mmlu is the name of a built-in benchmark"));
}

TEST_CASE("a results tree this user cannot write to is a preflight problem") {
  Sweep sweep;
  fs::create_directories(sweep.out);
  // Root writes anywhere, so a read-only file system stands in for a tree of another group; skipped where mounting
  // is not allowed.
  if (::mount("tmpfs", sweep.out.c_str(), "tmpfs", MS_RDONLY, "size=1m") != 0) {
    WARN("skipped: cannot mount a read-only tmpfs here");
    return;
  }
  struct Unmount {
    fs::path path;
    ~Unmount() { ::umount(path.c_str()); }
  } unmount{sweep.out};
  for (const std::vector<std::string>& mode : {std::vector<std::string>{}, {"--dry_run"}, {"--local"}}) {
    auto extra = mode;
    const auto run = test::run_mill(sweep.schedule("mill-demo", "demo", extra), sweep.env);
    INFO(run.out << run.err);
    CHECK(run.exit_code == 2);
    CHECK_THAT(run.out + run.err, Contains("is not writable by this user"));
  }
}
