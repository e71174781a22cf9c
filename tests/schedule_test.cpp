// `mill schedule` through the real binary: the job matrix, the result cache and the dry-run report.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>

#include "mill/sweep/cluster.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/job_lock.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/eval/results.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

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
                             Contains("#SBATCH --partition=p\n") && Contains("--time=00:"));
  env["MILL_HOSTNAME"] = "compute99";
  result = test::run_mill(box.args({"schedule", "org/m", "mmlu_anatomy", "--dry_run", "--skip_model_check"}), env);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Contains("compute99") && Contains("site (login*)"));
}

TEST_CASE("bad input is one line on stderr with exit code 2 and writes nothing") {
  // (A value the preflight refuses stops a real submission with one line; a dry run also shows its plan.)
  Sandbox box;
  // Not a first run: that one adds a line saying where the profiles were copied to.
  test::write_text(box.root / "cache" / "clusters.yaml", std::string(bundled_cluster_config()));
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

namespace {
// DESIGN.md's clusters.yaml, verbatim.
const std::string kDesignSeed = test::design_seed_clusters_yaml();

// Stand-ins for sbatch (keeps its argv, answers job id 4242) and squeue (an empty queue) in `bin`.
std::map<std::string, std::string> fake_slurm(const std::filesystem::path& bin, const std::filesystem::path& argv_file) {
  test::write_text(bin / "sbatch", "#!/bin/bash\nprintf '%s\\0' \"$@\" > '" + argv_file.string() + "'\necho 4242\n");
  test::write_text(bin / "squeue", "#!/bin/sh\nexit 0\n");
  std::filesystem::permissions(bin / "sbatch", std::filesystem::perms::owner_all);
  std::filesystem::permissions(bin / "squeue", std::filesystem::perms::owner_all);
  return {{"PATH", bin.string() + ":/usr/bin:/bin"}};
}

std::vector<std::string> split_nul(const std::string& text) {
  std::vector<std::string> parts;
  for (std::size_t start = 0; start < text.size();) {
    const auto end = text.find('\0', start);
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}
}  // namespace

TEST_CASE("the documented clusters.yaml, as written, plans a dry run on a host its pattern matches") {
  Sandbox box;
  test::write_text(box.root / "cache" / "clusters.yaml", kDesignSeed);
  auto env = box.env;
  env["MILL_HOSTNAME"] = "login01";
  const auto result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run"}), env);
  INFO(result.err);
  CHECK(result.exit_code == 0);
  CHECK(result.err.empty());
  CHECK_THAT(result.out, Contains("cluster profile: my-cluster (hostname \"login01\" matches hostname_pattern \"login*\")") &&
                             Contains("#SBATCH --partition=gpu\n") && Contains("#SBATCH --account=my_project\n") &&
                             Contains("#SBATCH --gres=gpu:A100:1\n") && Contains("#SBATCH --mem=64G\n") &&
                             Contains("#SBATCH --array=0-0%100\n") && Contains("dry run: nothing submitted"));
  CHECK(test::read_text(box.root / "cache" / "clusters.yaml") == kDesignSeed);
}

TEST_CASE("on a fresh install the bundled generic profile plans a dry run on any host, and the copy is announced once") {
  Sandbox box;
  auto env = box.env;
  env["MILL_HOSTNAME"] = "some-unmatched-host";
  const auto cache = box.root / "cache";
  REQUIRE_FALSE(std::filesystem::exists(cache));
  auto result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run"}), env);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("cluster profile: generic (hostname \"some-unmatched-host\" matches hostname_pattern \"*\")") &&
                             Contains("#SBATCH --gres=gpu:1\n") && Contains("dry run: nothing submitted"));
  CHECK(result.out.find("--partition") == std::string::npos);  // SLURM's default partition
  CHECK(result.err == "mill: created " + (cache / "clusters.yaml").string() +
                          " from the bundled cluster profiles; edit it for your cluster (docs/clusters.md)\n");
  CHECK(test::read_text(cache / "clusters.yaml") == std::string(bundled_cluster_config()));
  CHECK_FALSE(std::filesystem::exists(box.root / "out"));
  // The second run uses the copy and says nothing about it.
  result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run"}), env);
  CHECK(result.exit_code == 0);
  CHECK(result.err.empty());
  // A failing first run still says where the copy went, then the error.
  Sandbox other;
  result = test::run_mill(other.args({"schedule", "mill-demo", "no_such_task", "--dry_run"}), other.env);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, StartsWith("mill: created ") && Contains("\nmill: error: unknown task"));
}

TEST_CASE("a cache dir that cannot hold clusters.yaml: a dry run uses the bundled profiles, a submission stops in one line") {
  Sandbox box;
  test::write_text(box.root / "file", "not a directory");
  const auto bin = box.root / "bin";
  auto env = fake_slurm(bin, box.root / "sbatch-argv");
  env["MILL_HOSTNAME"] = "some-unmatched-host";
  for (const auto& cache : {box.root / "file" / "cache", std::filesystem::path("/proc/self")}) {
    INFO(cache);
    const std::vector<std::string> global = {"--output_dir", (box.root / "out").string(), "--cache_dir", cache.string()};
    auto args = global;
    args.insert(args.end(), {"schedule", "mill-demo", "demo", "--dry_run"});
    auto result = test::run_mill(args, env);
    CHECK(result.exit_code == 0);
    CHECK_THAT(result.out, Contains("cluster profile: generic"));
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK_THAT(result.err, StartsWith("mill: warning: cannot create " + (cache / "clusters.yaml").string()) &&
                               Contains("using the bundled cluster profiles for this dry run"));

    args = global;
    args.insert(args.end(), {"schedule", "mill-demo", "demo"});
    result = test::run_mill(args, env);
    CHECK(result.exit_code == 2);
    CHECK(result.out.empty());
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK_THAT(result.err, StartsWith("mill: error: cannot create " + (cache / "clusters.yaml").string()) &&
                               Contains("--cache_dir or MILL_CACHE_DIR"));
    CHECK(result.err.find("internal error") == std::string::npos);

    // --local needs no profile at all: it runs with the same warning.
    result = test::run_mill({"--output_dir", (box.root / "local-out").string(), "--cache_dir", cache.string(),
                             "schedule", "mill-demo", "demo", "--limit", "2", "--local"},
                            env);
    CHECK(result.exit_code == 0);
    CHECK_THAT(result.err, Contains("using the bundled cluster profiles for this --local run"));
  }
  CHECK_FALSE(std::filesystem::exists(box.root / "out"));
  CHECK_FALSE(std::filesystem::exists(box.root / "sbatch-argv"));
  CHECK(test::read_text(box.root / "file") == "not a directory");
}

TEST_CASE("a profile's venv_path is the workers' venv unless --venv_path is given, and must exist") {
  Sandbox box;
  const auto venv = box.root / "venv 'profile'";
  test::write_text(venv / "bin" / "activate", "");
  const auto other = box.root / "other";
  test::write_text(other / "bin" / "activate", "");
  const auto profiles = [&](const std::filesystem::path& path) {
    return "clusters:\n  site:\n    hostname_pattern: '*'\n    gpus_per_node: 1\n    mem: 8G\n    queue_limit: 9\n"
           "    max_array_len: 2\n    venv_path: \"" + path.string() + "\"\n";
  };
  test::write_text(box.root / "cache" / "clusters.yaml", profiles(venv));
  auto result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run"}), box.env);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("source '" + box.root.path().string() + "/venv '\\''profile'\\''/bin/activate'\n"));
  result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run", "--venv_path", other.string()}), box.env);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.out, Contains("source '" + other.string() + "/bin/activate'\n"));
  CHECK(result.out.find("profile'") == std::string::npos);

  test::write_text(box.root / "cache" / "clusters.yaml", profiles(box.root / "missing"));
  result = test::run_mill(box.args({"schedule", "mill-demo", "demo", "--dry_run"}), box.env);
  CHECK(result.exit_code == 2);  // a preflight problem: the dry run shows it, a submission stops with it
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK_THAT(result.out, Contains("clusters.yaml: profile site, field `venv_path`") && Contains("has no bin/activate"));
  result = test::run_mill(box.args({"schedule", "mill-demo", "demo"}), box.env);
  CHECK(result.exit_code == 2);
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK_THAT(result.err, Contains("clusters.yaml: profile site, field `venv_path`") && Contains("has no bin/activate"));
}

TEST_CASE("a container profile's script runs mill through apptainer exec with the bind paths, and mill completes the job") {
  test::TempDir root;
  const auto out = root / "out 'q' $(x)";
  const auto cache = root / "cache";
  const auto models = root / "models";
  std::filesystem::create_directories(models);
  test::write_text(cache / "clusters.yaml",
                   "clusters:\n  boxed:\n    hostname_pattern: 'login*'\n    partition: gpu\n    gpus_per_node: 1\n"
                   "    mem: 8G\n    queue_limit: 9\n    max_array_len: 2\n    container_image: /images/mill 'v1'.sif\n"
                   "    bind_paths: [\"" + models.string() + ":/models:ro\"]\n    venv_path: /opt/venv\n");
  const auto bin = root / "bin";
  auto env = fake_slurm(bin, root / "sbatch-argv");
  env["MILL_HOSTNAME"] = "login01";
  const auto run = test::run_mill({"--output_dir", out.string(), "--cache_dir", cache.string(), "schedule", "mill-demo",
                                   "demo", "--limit", "3", "--json"},
                                  env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const auto plan = nlohmann::json::parse(run.out);
  REQUIRE(plan["submitted"] == true);
  const std::filesystem::path sweep_dir = plan["submission"]["sweep_dir"].get<std::string>();
  const auto script = sweep_dir / "job.sbatch";

  // A stand-in apptainer: records its argv and the variables meant for the container, then runs the command
  // after the image, as `apptainer exec` does.
  const auto tools = root / "tools";
  const auto record = root / "apptainer-argv";
  test::write_text(tools / "apptainer",
                   "#!/bin/bash\nprintf '%s\\0' \"$@\" > '" + record.string() + "'\n"
                   "env | grep '^APPTAINERENV_' | sort > '" + record.string() + ".env'\n"
                   "[ \"$1\" = exec ] || exit 99\nshift\n"
                   "while [ $# -gt 0 ]; do case \"$1\" in --bind) shift 2 ;; --*) shift ;; *) break ;; esac; done\n"
                   "shift\nexec \"$@\"\n");
  std::filesystem::permissions(tools / "apptainer", std::filesystem::perms::owner_all);
  const auto worker = test::run_program({"bash", script.string()},
                                        {{"SLURM_ARRAY_TASK_ID", "0"}, {"SLURM_ARRAY_JOB_ID", "4242"},
                                         {"SLURM_JOB_ID", "4243"}, {"PATH", tools.string() + ":/usr/bin:/bin"}},
                                        sweep_dir);
  INFO(worker.out << worker.err);
  CHECK(worker.exit_code == 0);
  const std::vector<std::string> expected = {
      "exec", "--bind", models.string() + ":/models:ro," + out.string(), "/images/mill 'v1'.sif",
      std::filesystem::canonical(test::mill_binary()).string(), "--output_dir", out.string(), "--cache_dir", cache.string(),
      "eval", "--manifest", (sweep_dir / "manifest.json").string(), "--element", "0"};
  CHECK(split_nul(test::read_text(record)) == expected);
  CHECK(test::read_text(record.string() + ".env") ==
        "APPTAINERENV_PREPEND_PATH=/opt/venv/bin\nAPPTAINERENV_VIRTUAL_ENV=/opt/venv\n");
  // mill ran inside: the element completed and the job's result is in the output dir.
  const auto status = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(status["state"] == "completed");
  CHECK(std::filesystem::exists(plan["jobs"][0]["result"].get<std::string>()));
}

TEST_CASE("a schedule that finds another one submitting to the same output dir waits, then names the holder") {
  test::TempDir root;
  const auto out = root / "out";
  // This process holds the output dir's submit lock, as a running mill schedule would.
  JobLock held(submit_lock_path(out));
  REQUIRE(held.acquire(std::chrono::seconds(0)));
  const auto started = std::chrono::steady_clock::now();
  const auto run = test::run_mill({"--output_dir", out.string(), "--cache_dir", (root / "cache").string(), "schedule",
                                   "mill-demo", "demo", "--cluster", "local", "--lock_wait", "1"});
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::seconds(1));
  CHECK(run.exit_code == static_cast<int>(ExitCode::busy));
  CHECK_THAT(run.err, Contains("another mill schedule is submitting") && Contains(std::to_string(::getpid()) + "@") &&
                          Contains("nothing submitted"));
  // One error line (the other line is the first run's note about the cluster profiles it copied).
  const auto error_at = run.err.find("mill: error:");
  REQUIRE(error_at != std::string::npos);
  CHECK(run.err.find('\n', error_at) == run.err.size() - 1);
  CHECK(list_sweeps(out).empty());
}
