// `mill schedule` through the real binary: the job matrix, the result cache and the dry-run report.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "mill/results.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
// Plans of hub models that are not downloaded here (--skip_model_check), over a small stand-in for the MMLU and
// MMLU-Pro data ($MILL_DATA_DIR), so that the preflight passes.
struct Sandbox {
  test::TempDir root;
  std::map<std::string, std::string> env{{"HF_HUB_CACHE", (root / "hub").string()},
                                         {"MILL_HOSTNAME", "testhost"},
                                         {"MILL_DATA_DIR", (root / "data").string()}};
  Sandbox() { test::write_task_data(root / "data", {"mmlu", "mmlu_pro"}); }
  std::vector<std::string> args(std::vector<std::string> rest) const {
    std::vector<std::string> all = {"--output_dir", (root / "out").string(), "--cache_dir", (root / "cache").string()};
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
  }
  nlohmann::json plan(std::vector<std::string> rest) const {
    rest.push_back("--json");
    if (std::find(rest.begin(), rest.end(), "--skip_model_check") == rest.end()) rest.push_back("--skip_model_check");
    const auto result = test::run_mill(args(rest), env);
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    return nlohmann::json::parse(result.out);
  }
};

const std::vector<std::string> kLlamaMmlu = {"schedule",  "meta-llama/Meta-Llama-3-8B-Instruct", "mmlu", "--n_shots",
                                            "0,5",       "--dry_run", "--cluster", "local", "--skip_model_check"};
}  // namespace

TEST_CASE("a model × mmlu × two n_shots is 114 jobs, and valid results are skipped") {
  Sandbox box;
  auto plan = box.plan(kLlamaMmlu);
  REQUIRE(plan["jobs"].size() == 114);
  CHECK(plan["counts"]["pending"] == 114);
  CHECK(plan["profile"]["name"] == "local");
  CHECK(plan["submitted"] == false);

  // Place valid results for three jobs, a corrupt file for one and a stale one for another.
  std::vector<nlohmann::json> chosen;
  for (int i : {0, 7, 113, 20, 21}) chosen.push_back(plan["jobs"][i]);
  for (int i = 0; i < 3; ++i) {
    const auto& job = chosen[i];
    test::write_text(job["result"].get<std::string>(),
                     nlohmann::json{{"schema", kResultSchema}, {"key", job["key"]}, {"key_inputs", nlohmann::json::object()},
                                    {"model", job["model"]}, {"task", job["task"]}, {"n_shot", job["n_shot"]},
                                    {"n_samples", 3}, {"metrics", {{"acc", {{"value", 1.0}}}}}}
                         .dump());
  }
  test::write_text(chosen[3]["result"].get<std::string>(), "{\"schema\": \"mill.result/1\", \"key\": ");
  test::write_text(chosen[4]["result"].get<std::string>(),
                   nlohmann::json{{"schema", kResultSchema}, {"key", "0000"}, {"key_inputs", {{"scoring_version", 0}}},
                                  {"model", chosen[4]["model"]}, {"task", chosen[4]["task"]},
                                  {"n_shot", chosen[4]["n_shot"]}, {"n_samples", 3},
                                  {"metrics", {{"acc", {{"value", 1.0}}}}}}
                       .dump());

  plan = box.plan(kLlamaMmlu);
  CHECK(plan["counts"]["done"] == 3);
  CHECK(plan["counts"]["corrupt"] == 1);
  CHECK(plan["counts"]["stale"] == 1);
  CHECK(plan["counts"]["pending"] == 111);
  for (const auto& job : plan["jobs"]) {
    const bool placed = std::any_of(chosen.begin(), chosen.begin() + 3, [&](const nlohmann::json& c) { return c["key"] == job["key"]; });
    CHECK((job["status"] == "done") == placed);
  }
  CHECK(plan["jobs"][20]["status"] == "corrupt");
  CHECK(plan["jobs"][21]["status"] == "stale");
  CHECK_THAT(plan["jobs"][21]["reason"].get<std::string>(), Contains("scoring_version"));

  // The human report says the same.
  const auto text = test::run_mill(box.args(kLlamaMmlu), box.env);
  CHECK(text.exit_code == 0);
  CHECK_THAT(text.out, Contains("114 job(s)") && Contains("111 to run") && Contains("3 done (skipped)") &&
                           Contains("1 stale") && Contains("1 corrupt") && Contains("#SBATCH --array=0-") &&
                           Contains("cluster profile: local") && Contains("time limit:") && Contains("dry run: nothing submitted"));
  CHECK(text.out.find("\x1b[") == std::string::npos);  // no colour when piped
}

TEST_CASE("default n_shots come from each task, several models multiply the matrix") {
  Sandbox box;
  auto plan = box.plan({"schedule", "a/one,b/two", "mmlu_anatomy,mmlu_pro_law", "--dry_run", "--cluster", "local"});
  REQUIRE(plan["jobs"].size() == 4);
  CHECK(plan["jobs"][0]["n_shot"] == 5);  // MMLU default
  CHECK(plan["jobs"][1]["n_shot"] == 0);  // MMLU-Pro default
  // Jobs of one model share array elements.
  CHECK(plan["array"]["elements"] == 2);
  // Commas inside a spec's brackets do not split the model list.
  plan = box.plan({"schedule", "org/m[dtype=float16,batch_size=4],b/two", "mmlu_anatomy", "--dry_run", "--cluster", "local"});
  REQUIRE(plan["jobs"].size() == 2);
  CHECK(plan["jobs"][0]["model"] == "org/m[dtype=float16,batch_size=4]");
}

TEST_CASE("schedule with cluster auto picks the profile by hostname, or names the hostname when nothing matches") {
  Sandbox box;
  test::write_text(box.root / "cache" / "clusters.yaml",
                   "profiles:\n  site:\n    hostname_pattern: 'login*'\n    partition: p\n    gpus_per_node: 4\n"
                   "    mem: 8G\n    queue_limit: 9\n    max_array_len: 2\n    max_time: '30'\n");
  auto env = box.env;
  env["MILL_HOSTNAME"] = "login07";
  auto result = test::run_mill(box.args({"schedule", "org/m", "mmlu_anatomy", "--dry_run", "--skip_model_check"}), env);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("cluster profile: site (hostname \"login07\" matches hostname_pattern \"login*\")") &&
                             Contains("#SBATCH --time=00:18:00"));
  env["MILL_HOSTNAME"] = "compute99";
  result = test::run_mill(box.args({"schedule", "org/m", "mmlu_anatomy", "--dry_run", "--skip_model_check"}), env);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("compute99") && Contains("site (login*)"));
}

TEST_CASE("bad input is one line on stderr with exit code 2 and writes nothing") {
  // (A value the preflight refuses stops a real submission with one line; a dry run also shows its plan.)
  Sandbox box;
  const std::vector<std::vector<std::string>> bad = {
      {"schedule", "mill-demo", "mmlu_anatomyy", "--dry_run", "--cluster", "local"},
      {"schedule", "m[dtype", "mmlu", "--dry_run", "--cluster", "local"},
      {"schedule", "mill-demo", "mmlu", "--n_shots", "five", "--dry_run", "--cluster", "local"},
      {"schedule", "mill-demo", "mmlu", "--cluster", "nosuch", "--dry_run"},
      {"schedule", "mill-demo", "mmlu", "--minutes_per_eval", "0", "--cluster", "local"},
      {"schedule", "mill-demo", "mmlu", "--limit", "-3", "--cluster", "local"},
      {"schedule", "mill-demo", "mmlu", "--venv_path", "/nonexistent", "--cluster", "local"},
      {"schedule", "mill-demo", "mmlu", "--no_such_flag"},
      {"--log_level", "loud", "tasks"},
      {"frobnicate"},
  };
  for (const auto& args : bad) {
    const auto result = test::run_mill(box.args(args), box.env);
    INFO(result.err);
    CHECK(result.exit_code == 2);
    CHECK(result.out.empty());
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK_THAT(result.err, Contains("mill: error: "));
  }
  CHECK_FALSE(std::filesystem::exists(box.root / "out"));
}

TEST_CASE("help and version") {
  auto result = test::run_mill({"--help"});
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("schedule") && Contains("--output_dir") && Contains("--cache_dir") && Contains("--log_level"));
  result = test::run_mill({"schedule", "--help"});
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("--n_shots") && Contains("--dry_run") && Contains("--minutes_per_eval"));
  result = test::run_mill({"--version"});
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("mill 0."));
}

TEST_CASE("mill tasks lists name, benchmark, output type, default n_shots and source") {
  auto result = test::run_mill({"tasks", "mmlu_pro"});
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("mmlu_pro_computer_science") && Contains("generative") &&
                             Contains("builtin:tasks/mmlu_pro.yaml") && Contains("14 task(s)"));
  result = test::run_mill({"tasks", "--json"});
  CHECK(result.exit_code == 0);
  const auto tasks = nlohmann::json::parse(result.out);
  CHECK(tasks.size() >= 71);
}
