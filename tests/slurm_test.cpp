// Against a real single-node SLURM cluster (scripts/local-slurm.sh): hostile paths in a real array script, the
// %max_array_len throttle observed with squeue, and `mill schedule` end to end with the real worker (mill-demo ×
// demo): submit, no double submission, nothing missing afterwards, and a failed job resubmitted alone; signals and
// requeues; and an API key in the environment kept out of every file a real sweep writes.
// CTest starts the cluster once for all [slurm] tests (tests/CMakeLists.txt); run alone, the first test starts it
// and the process stops it at exit. Without the SLURM binaries these tests warn and pass.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <fmt/format.h>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "mill/sweep/cluster.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/base/text.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

bool installed(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin";
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && ::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

struct LocalCluster {
  std::string skip;   // why the tests cannot run here (binaries missing): they warn and pass
  std::string error;  // the cluster should run but does not: the tests fail
  std::map<std::string, std::string> env;  // SLURM_CONF for clients
  std::map<std::string, std::string> script_env;
  bool started_here = false;

  ~LocalCluster() {
    if (started_here) test::run_program({script(), "stop"}, script_env);
  }
  static std::string script() { return std::string(test::source_dir()) + "/scripts/local-slurm.sh"; }
};

LocalCluster& local_cluster() {
  static LocalCluster cluster = [] {
    LocalCluster c;
    for (const char* binary : {"sbatch", "squeue", "scontrol", "slurmctld", "slurmd", "munged"}) {
      if (!installed(binary)) {
        c.skip = std::string("SLURM test skipped: ") + binary + " is not installed (apt-get install slurm-wlm munge)";
        return c;
      }
    }
    if (::geteuid() != 0) {
      c.skip = "SLURM test skipped: the local test cluster needs root (SlurmUser=root)";
      return c;
    }
    if (const char* record = std::getenv("MILL_LOCAL_SLURM_RECORD"); record && *record) {
      c.script_env["MILL_LOCAL_SLURM_RECORD"] = record;
    }
    const bool was_running = test::run_program({LocalCluster::script(), "status"}, c.script_env).exit_code == 0;
    const auto started = test::run_program({LocalCluster::script(), "start"}, c.script_env);
    if (started.exit_code != 0) {
      c.error = "scripts/local-slurm.sh start failed: " + started.err;
      return c;
    }
    c.started_here = !was_running;
    const auto at = started.out.find("SLURM_CONF=");
    if (at == std::string::npos) {
      c.error = "scripts/local-slurm.sh start printed no SLURM_CONF: " + started.out;
      return c;
    }
    const auto value = started.out.substr(at + 11);
    c.env["SLURM_CONF"] = value.substr(0, value.find('\n'));
    return c;
  }();
  return cluster;
}

#define REQUIRE_LOCAL_CLUSTER()                       \
  auto& cluster = local_cluster();                    \
  if (!cluster.skip.empty()) {                        \
    WARN(cluster.skip);                               \
    return;                                           \
  }                                                   \
  INFO(cluster.error);                                \
  REQUIRE(cluster.error.empty())

std::vector<QueueEntry> queue_of(const std::string& array_job_id, const std::map<std::string, std::string>& env) {
  const auto result = test::run_program({"squeue", "-h", "-r", "-j", array_job_id, "-o", "%i|%F|%K|%T|%r"}, env);
  return parse_queue(result.out);
}

// Polls squeue until the array has left the queue; `observe` sees every poll. Fails after `timeout`.
void wait_for_array(const std::string& array_job_id, const std::map<std::string, std::string>& env,
                    const std::function<void(const std::vector<QueueEntry>&)>& observe = {},
                    std::chrono::seconds timeout = std::chrono::seconds(240)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto entries = queue_of(array_job_id, env);
    if (observe) observe(entries);
    if (entries.empty()) return;
    if (std::chrono::steady_clock::now() > deadline) {
      FAIL("array job " << array_job_id << " still in the queue after " << timeout.count() << " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

ClusterProfile local_profile() {
  const auto config = parse_cluster_config(bundled_cluster_config(), "clusters.yaml");
  for (const auto& profile : config.profiles) {
    if (profile.name == "local") return profile;
  }
  FAIL("the bundled clusters.yaml has no profile `local`");
  return {};
}

// Renders the array script for a stand-in worker and submits it with sbatch (no shell), as mill does.
std::string submit_stand_in(const SbatchRequest& request, const std::map<std::string, std::string>& env) {
  fs::create_directories(request.sweep_dir / "logs");
  const auto script = request.sweep_dir / "job.sbatch";
  test::write_text(script, render_sbatch_script(request));
  const auto submitted = test::run_program(sbatch_command(request, script), env);
  INFO(submitted.err);
  REQUIRE(submitted.exit_code == 0);
  const auto id = parse_sbatch_job_id(submitted.out);
  REQUIRE_FALSE(id.empty());
  return id;
}

std::vector<fs::path> canaries(const fs::path& root) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().filename().string().rfind("canary", 0) == 0) found.push_back(entry.path());
  }
  return found;
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

TEST_CASE("hostile paths in a real SLURM array reach the worker unchanged and never execute", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const std::string hostile = " 'q' \"d\" $(touch canary1) `touch canary2` ;touch canary3; $HOME *\nline2";
  const auto stand_in = root / ("bin" + hostile) / "mill";
  test::write_text(stand_in,
                   "#!/bin/bash\nprintf '%s\\0' \"$@\" > \"$MILL_TEST_ARGV_FILE.$SLURM_ARRAY_TASK_ID\"\n"
                   "printf '%s' \"${MILL_TEST_VENV:-none}\" > \"$MILL_TEST_ARGV_FILE.venv\"\n");
  fs::permissions(stand_in, fs::perms::owner_all);
  const auto venv = root / ("venv" + hostile);
  test::write_text(venv / "bin" / "activate", "export MILL_TEST_VENV=active\n");

  const auto profile = local_profile();
  SbatchRequest request;
  request.profile = &profile;
  request.array_size = 2;
  request.time_minutes = 5;
  request.mill_binary = stand_in;
  request.output_dir = root / ("out" + hostile);
  request.cache_dir = root / ("cache" + hostile);
  request.sweep_dir = request.output_dir / "sweeps" / ("s1" + hostile);
  request.manifest = request.sweep_dir / "manifest.json";
  request.venv_path = venv;
  auto env = cluster.env;
  env["MILL_TEST_ARGV_FILE"] = (root / "argv").string();
  const auto id = submit_stand_in(request, env);
  wait_for_array(id, env);

  for (const std::string element : {"0", "1"}) {
    INFO("element " << element);
    const std::vector<std::string> expected = {"--output_dir", request.output_dir.string(), "--cache_dir",
                                               request.cache_dir.string(), "eval", "--manifest",
                                               request.manifest.string(), "--element", element};
    CHECK(split_nul(test::read_text(root / ("argv." + element))) == expected);
    CHECK(fs::exists(request.sweep_dir / "logs" / (id + "_" + element + ".out")));
  }
  CHECK(test::read_text(root / "argv.venv") == "active");
  CHECK(canaries(root.path()).empty());
}

TEST_CASE("a sweep that can only fail is never submitted: the SLURM queue stays empty and no sweep is written", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  auto env = cluster.env;
  env["HF_HUB_CACHE"] = (root / "hub").string();
  const auto queue_before = test::run_program({"squeue", "-h", "-o", "%i"}, env);
  REQUIRE(queue_before.exit_code == 0);
  REQUIRE(queue_before.out.empty());
  // Each would be accepted by sbatch and fail on the node in seconds.
  const std::vector<std::vector<std::string>> doomed = {
      {"mill-demo", "mmlu_anatomy"},                              // no data directory
      {"mill-demo", "demo", "--n_shots", "25"},                  // more shots than the pool
      {"mill-demo[SEED=1]", "demo"},                             // a model arg the worker refuses
      {"org/not-downloaded", "demo"},                            // not in the Hugging Face cache
      {"mill-demo", "demo", "--data_dir", (root / "absent").string()},
  };
  for (const auto& arguments : doomed) {
    std::vector<std::string> command = {"--output_dir", (root / "out").string(), "--cache_dir", (root / "cache").string(),
                                        "schedule", "--cluster", "local"};
    command.insert(command.end(), arguments.begin(), arguments.end());
    const auto run = test::run_mill(command, env);
    INFO(join(arguments, " ") << ": " << run.err);
    CHECK(run.exit_code == 2);
    CHECK_THAT(run.err, Contains("nothing was submitted or run"));
    CHECK(test::run_program({"squeue", "-h", "-o", "%i"}, env).out.empty());
    CHECK_FALSE(fs::exists(root / "out" / "sweeps"));
  }
}

TEST_CASE("a throttled array never runs more than max_array_len elements at once", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const auto stand_in = root / "sleeper";
  test::write_text(stand_in, "#!/bin/bash\nsleep 2\n");
  fs::permissions(stand_in, fs::perms::owner_all);
  const auto profile = local_profile();
  REQUIRE(profile.max_array_len == 3);
  REQUIRE(profile.gpus_per_node > profile.max_array_len);  // so the throttle, not the GPUs, is what limits
  SbatchRequest request;
  request.profile = &profile;
  request.array_size = 8;
  request.time_minutes = 5;
  request.mill_binary = stand_in;
  request.output_dir = root / "out";
  request.cache_dir = root / "cache";
  request.sweep_dir = root / "out" / "sweeps" / "throttle";
  request.manifest = request.sweep_dir / "manifest.json";
  const auto id = submit_stand_in(request, cluster.env);
  REQUIRE_THAT(test::read_text(request.sweep_dir / "job.sbatch"), Contains("--array=0-7%3"));

  int most_running = 0, polls = 0;
  std::set<int> seen_running;
  wait_for_array(id, cluster.env, [&](const std::vector<QueueEntry>& entries) {
    ++polls;
    int running = 0;
    for (const auto& entry : entries) {
      if (entry.state == "RUNNING" || entry.state == "COMPLETING") {
        ++running;
        seen_running.insert(entry.array_task_id);
      }
    }
    most_running = std::max(most_running, running);
  });
  INFO("polls: " << polls);
  CHECK(most_running <= profile.max_array_len);
  CHECK(most_running >= 2);  // elements did run side by side: the observation means something
  CHECK(seen_running.size() >= 6);
  for (int element = 0; element < 8; ++element) {
    CHECK(fs::exists(request.sweep_dir / "logs" / (id + "_" + std::to_string(element) + ".out")));
  }
}

namespace {

struct Sweep {
  fs::path root;
  fs::path out;
  fs::path cache;
  fs::path tasks;
  std::map<std::string, std::string> env;

  test::RunResult mill(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--output_dir", out.string(), "--cache_dir", cache.string()});
    return test::run_mill(args, env);
  }
  std::vector<std::string> schedule_args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"schedule",  "mill-demo",          "demo,demo_extra", "--n_shots",
                                     "0,1",       "--cluster",          "local",           "--evals_per_element",
                                     "2",         "--extra_task_paths", tasks.string(),    "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  nlohmann::json schedule(std::vector<std::string> extra = {}) const {
    const auto run = mill(schedule_args(extra));
    INFO(run.err);
    REQUIRE(run.exit_code == 0);
    // The JSON document is the last thing on stdout.
    return nlohmann::json::parse(run.out.substr(run.out.find("{\n")));
  }
  nlohmann::json status() const {
    const auto run = mill({"status", "--json"});
    INFO(run.err);
    REQUIRE(run.exit_code == 0);
    return nlohmann::json::parse(run.out);
  }
};

nlohmann::json find_job(const nlohmann::json& plan, const std::string& task, int n_shot) {
  for (const auto& job : plan["jobs"]) {
    if (job["task"] == task && job["n_shot"] == n_shot) return job;
  }
  FAIL("no job " << task << " " << n_shot << "-shot in the plan");
  return {};
}

}  // namespace

TEST_CASE("mill schedule runs a sweep on SLURM, never submits twice, and resubmits exactly a failed job", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  Sweep sweep;
  sweep.root = root.path();
  // Output dir and task path with characters a shell would act on.
  sweep.out = root / "out dir 'q' $(touch canary1) `touch canary2`";
  sweep.cache = root / "cache";
  sweep.tasks = root / "tasks \"x\" $(touch canary3)";
  sweep.env = cluster.env;
  auto demo = test::read_text(fs::path(test::source_dir()) / "data" / "tasks" / "demo.yaml");
  const auto at = demo.find("\ntask: demo\n");
  REQUIRE(at != std::string::npos);
  demo.replace(at, 12, "\ntask: demo_extra\n");
  test::write_text(sweep.tasks / "demo_extra.yaml", demo);

  // 1. Submit: 4 jobs of one model in 2 elements, gres and partition from the profile.
  const auto first = sweep.schedule();
  INFO(first.dump(2));
  REQUIRE(first["submitted"] == true);
  const auto array_id = first["submission"]["array_job_id"].get<std::string>();
  CHECK(first["submission"]["elements"] == 2);
  CHECK(first["submission"]["jobs"] == 4);
  const fs::path sweep_dir = first["submission"]["sweep_dir"].get<std::string>();
  const auto script = test::read_text(sweep_dir / "job.sbatch");
  CHECK_THAT(script, Contains("#SBATCH --gres=gpu:1\n") && Contains("#SBATCH --partition=debug\n") &&
                         Contains("#SBATCH --array=0-1%3\n") && Contains("#SBATCH --mem=1G\n"));
  const auto manifest = nlohmann::json::parse(test::read_text(sweep_dir / "manifest.json"));
  CHECK(manifest["settings"]["extra_task_paths"][0] == sweep.tasks.string());

  // 2. While the array is in the queue, the same command submits nothing again.
  const auto again = sweep.schedule();
  CHECK(again["submitted"] == false);
  CHECK(again["counts"]["in_flight"].get<int>() + again["counts"]["done"].get<int>() == 4);

  wait_for_array(array_id, cluster.env);
  auto status = sweep.status();
  REQUIRE(status["sweeps"].size() == 1);
  CHECK(status["sweeps"][0]["counts"]["completed"] == 2);
  CHECK(status["sweeps"][0]["finished"] == true);

  // 3. Nothing is missing: collect --check agrees, and a plan has nothing pending; schedule submits nothing.
  const auto check = sweep.mill({"collect", "--check", "--models", "mill-demo", "--tasks", "demo,demo_extra", "--n_shots",
                                 "0,1", "--extra_task_paths", sweep.tasks.string()});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  const auto after = sweep.schedule();
  CHECK(after["counts"]["pending"] == 0);
  CHECK(after["submitted"] == false);
  CHECK(fs::exists(sweep_dir / "logs" / (array_id + "_0.out")));

  // 4. One job fails: its result is gone and its journal cannot be written (a directory is in the way).
  const auto victim = find_job(after, "demo", 1);
  const fs::path victim_result = victim["result"].get<std::string>();
  REQUIRE(fs::exists(victim_result));
  const auto journal = fs::path(victim_result.string().substr(0, victim_result.string().size() - 5) + ".journal.jsonl");
  REQUIRE(fs::exists(journal));
  fs::remove(victim_result);
  fs::remove(journal);
  fs::create_directories(journal);

  const auto retry = sweep.schedule();
  REQUIRE(retry["submitted"] == true);
  CHECK(retry["counts"]["pending"] == 1);
  CHECK(retry["submission"]["jobs"] == 1);
  const fs::path retry_dir = retry["submission"]["sweep_dir"].get<std::string>();
  const auto retry_manifest = nlohmann::json::parse(test::read_text(retry_dir / "manifest.json"));
  REQUIRE(retry_manifest["elements"].size() == 1);
  CHECK(retry_manifest["elements"][0]["jobs"][0]["key"] == victim["key"]);
  wait_for_array(retry["submission"]["array_job_id"].get<std::string>(), cluster.env);

  status = sweep.status();
  REQUIRE(status["sweeps"].size() == 2);
  CHECK(status["sweeps"][1]["counts"]["failed"] == 1);
  CHECK_FALSE(fs::exists(victim_result));
  const auto still = sweep.schedule({"--dry_run"});
  CHECK(still["counts"]["pending"] == 1);  // a failed job is not counted done
  CHECK(find_job(still, "demo", 1)["status"] == "missing");
  CHECK(sweep.mill({"collect", "--check", "--models", "mill-demo", "--tasks", "demo,demo_extra", "--n_shots", "0,1",
                    "--extra_task_paths", sweep.tasks.string()})
            .exit_code == 3);

  // 5. With the obstacle gone, the next schedule resubmits exactly that job, and then everything is done.
  fs::remove(journal);
  const auto last = sweep.schedule();
  REQUIRE(last["submitted"] == true);
  CHECK(last["submission"]["jobs"] == 1);
  const auto last_manifest =
      nlohmann::json::parse(test::read_text(fs::path(last["submission"]["sweep_dir"].get<std::string>()) / "manifest.json"));
  CHECK(last_manifest["elements"][0]["jobs"][0]["key"] == victim["key"]);
  wait_for_array(last["submission"]["array_job_id"].get<std::string>(), cluster.env);
  CHECK(sweep.schedule({"--dry_run"})["counts"]["pending"] == 0);
  status = sweep.status();
  REQUIRE(status["sweeps"].size() == 3);
  CHECK(status["sweeps"][2]["counts"]["completed"] == 1);
  CHECK(canaries(root.path()).empty());
}

namespace {

// The `mill ...` lines collect prints under "resubmit exactly these with:".
std::vector<std::string> printed_resubmit_lines(const std::string& out) {
  std::vector<std::string> lines;
  const auto begin = out.find("resubmit exactly these with:\n");
  if (begin == std::string::npos) return lines;
  std::istringstream printed(out.substr(begin));
  std::string line;
  std::getline(printed, line);
  while (std::getline(printed, line) && line.rfind("  mill ", 0) == 0) lines.push_back(line.substr(2));
  return lines;
}

// Runs a printed line through /bin/sh, `mill` standing for the built binary.
test::RunResult run_printed_line(const std::string& line, const std::string& extra,
                                 const std::map<std::string, std::string>& env) {
  return test::run_program({"/bin/sh", "-c", std::string("mill() { '") + test::mill_binary() + "' \"$@\"; }; " + line + " " + extra},
                           env);
}

void write_demo_extra_task(const fs::path& dir) {
  auto demo = test::read_text(fs::path(test::source_dir()) / "data" / "tasks" / "demo.yaml");
  const auto at = demo.find("\ntask: demo\n");
  REQUIRE(at != std::string::npos);
  demo.replace(at, 12, "\ntask: demo_extra\n");
  test::write_text(dir / "demo_extra.yaml", demo);
}

}  // namespace

TEST_CASE("collect's resubmit line, run verbatim, submits exactly the missing jobs with the sweep's settings", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  Sweep sweep;
  sweep.root = root.path();
  sweep.out = root / "out 'q' $(touch canary)";
  sweep.cache = root / "cache dir";
  sweep.tasks = root / "tasks";
  sweep.env = cluster.env;
  write_demo_extra_task(sweep.tasks);
  const auto venv = root / "venv";
  test::write_text(venv / "bin" / "activate", "");
  fs::create_directories(root / "data");

  const auto first = sweep.schedule({"--data_dir", (root / "data").string(), "--venv_path", venv.string(),
                                     "--minutes_per_eval", "3", "--max_requeues", "2"});
  REQUIRE(first["submitted"] == true);
  const fs::path first_dir = first["submission"]["sweep_dir"].get<std::string>();
  const auto planned_with = nlohmann::json::parse(test::read_text(first_dir / "manifest.json"))["settings"]["schedule"];
  CHECK(planned_with == first["settings"]);
  wait_for_array(first["submission"]["array_job_id"].get<std::string>(), cluster.env);

  // Two jobs lose their result (and journal): collect, reading the sweep, names them and how to resubmit them.
  std::set<std::string> lost;
  for (const auto& [task, n_shot] : std::vector<std::pair<std::string, int>>{{"demo", 1}, {"demo_extra", 0}}) {
    const auto job = find_job(first, task, n_shot);
    const fs::path result = job["result"].get<std::string>();
    REQUIRE(fs::remove(result));
    fs::remove(fs::path(result.string().substr(0, result.string().size() - 5) + ".journal.jsonl"));
    lost.insert(job["key"].get<std::string>());
  }
  const auto check = sweep.mill({"collect", "--extra_task_paths", sweep.tasks.string()});
  INFO(check.out << check.err);
  REQUIRE(check.exit_code == 3);
  const auto lines = printed_resubmit_lines(check.out);
  REQUIRE(lines.size() == 2);  // demo at 1 shot, demo_extra at 0 shots: not one product

  std::set<std::string> resubmitted;
  for (const auto& line : lines) {
    const auto run = run_printed_line(line, "--json", cluster.env);
    INFO(line << "\n" << run.err);
    REQUIRE(run.exit_code == 0);
    const auto plan = nlohmann::json::parse(run.out.substr(run.out.find("{\n")));
    REQUIRE(plan["submitted"] == true);
    const fs::path dir = plan["submission"]["sweep_dir"].get<std::string>();
    const auto manifest = nlohmann::json::parse(test::read_text(dir / "manifest.json"));
    CHECK(manifest["settings"]["schedule"] == planned_with);
    CHECK(manifest["settings"]["max_requeues"] == 2);
    CHECK_THAT(test::read_text(dir / "job.sbatch"),
               Contains("venv/bin/activate") && Contains("--time=" + plan["arrays"][0]["time_limit"].get<std::string>()));
    // --minutes_per_eval 3 was repeated: the limit is that budget's, not the cost model's.
    CHECK_THAT(plan["arrays"][0]["explanation"].get<std::string>(), Contains("--minutes_per_eval 3"));
    for (const auto& element : manifest["elements"]) {
      for (const auto& job : element["jobs"]) resubmitted.insert(job["key"].get<std::string>());
    }
    wait_for_array(plan["submission"]["array_job_id"].get<std::string>(), cluster.env);
  }
  CHECK(resubmitted == lost);
  const auto clean = sweep.mill({"collect", "--extra_task_paths", sweep.tasks.string()});
  INFO(clean.out << clean.err);
  CHECK(clean.exit_code == 0);
  CHECK(canaries(root.path()).empty());
}

TEST_CASE("two mill schedule started together against the same output dir submit one array", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  Sweep sweep;
  sweep.root = root.path();
  sweep.out = root / "out";
  sweep.cache = root / "cache";
  sweep.tasks = root / "tasks";
  sweep.env = cluster.env;
  write_demo_extra_task(sweep.tasks);
  // A slow model, so that the array is still in the queue when collect looks.
  const std::vector<std::string> args = {"schedule", "mill-demo[delay_ms=5000]", "demo", "--cluster", "local", "--json"};
  REQUIRE(sweep.mill({"schedule", "mill-demo", "demo", "--cluster", "local", "--dry_run"}).exit_code == 0);

  std::array<test::RunResult, 2> runs;
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();
      runs[i] = sweep.mill(args);
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> arrays;
  int submitted = 0;
  for (const auto& run : runs) {
    INFO(run.out << run.err);
    REQUIRE(run.exit_code == 0);
    const auto plan = nlohmann::json::parse(run.out.substr(run.out.find("{\n")));
    if (plan["submitted"] == true) {
      ++submitted;
      arrays.insert(plan["submission"]["array_job_id"].get<std::string>());
    } else {
      CHECK(plan["counts"]["in_flight"] == 1);  // it waited, then saw the first one's array in flight
    }
  }
  CHECK(submitted == 1);
  REQUIRE(arrays.size() == 1);
  CHECK(sweep.status()["sweeps"].size() == 1);

  // While it runs, collect --check shows the job in flight, not missing, and prints nothing to resubmit.
  const auto during = sweep.mill({"collect", "--check"});
  INFO(during.out << during.err);
  CHECK(during.exit_code == 3);
  CHECK_THAT(during.out, Contains("0 missing") && Contains("1 in flight") && !Contains("resubmit exactly"));
  wait_for_array(*arrays.begin(), cluster.env);
  CHECK(sweep.mill({"collect", "--check"}).exit_code == 0);
}

TEST_CASE("mill killed after sbatch accepted the array: the next schedule finds it and submits nothing again", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  Sweep sweep;
  sweep.root = root.path();
  sweep.out = root / "out";
  sweep.cache = root / "cache";
  sweep.tasks = root / "tasks";
  sweep.env = cluster.env;
  write_demo_extra_task(sweep.tasks);
  // An sbatch first in PATH that runs the real one, then kills the mill that started it: SLURM has the array, mill
  // never saw the answer. The array is held, so no element can finish (and stop being in flight) before the next
  // schedule looks; it is released at the end.
  const auto real = test::run_program({"/bin/sh", "-c", "command -v sbatch"}).out;
  REQUIRE_FALSE(trim(real).empty());
  const auto wrappers = root / "bin";
  test::write_text(wrappers / "sbatch", "#!/bin/sh\n'" + trim(real) + "' --hold \"$@\"\nstatus=$?\nkill -9 $PPID\nexit $status\n");
  fs::permissions(wrappers / "sbatch", fs::perms::owner_all);
  auto env = cluster.env;
  env["PATH"] = wrappers.string() + ":" + std::getenv("PATH");
  auto args = sweep.schedule_args();
  args.insert(args.begin(), {"--output_dir", sweep.out.string(), "--cache_dir", sweep.cache.string()});
  const auto killed = test::run_mill(args, env);
  REQUIRE(killed.exit_code != 0);
  const auto sweeps = sweep.status()["sweeps"];
  REQUIRE(sweeps.size() == 1);
  const fs::path sweep_dir = sweeps[0]["dir"].get<std::string>();
  const auto record = nlohmann::json::parse(test::read_text(sweep_dir / "submission.json"));
  CHECK(record["state"] == "submitting");
  CHECK(record["array_job_id"].is_null());
  const auto named = test::run_program({"squeue", "-h", "-r", "-n", record["job_name"].get<std::string>(), "-o", "%F"},
                                       cluster.env);
  REQUIRE_FALSE(trim(named.out).empty());  // SLURM did accept it
  const auto array_id = trim(named.out.substr(0, named.out.find('\n')));

  // The next schedule reconciles the record with the queue and submits no second array.
  const auto next = sweep.schedule();
  CHECK(next["submitted"] == false);
  CHECK(next["counts"]["in_flight"] == 4);
  CHECK_THAT(next["messages"].dump(), Contains("interrupted after SLURM accepted array " + array_id));
  const auto settled = nlohmann::json::parse(test::read_text(sweep_dir / "submission.json"));
  CHECK(settled["state"] == "submitted");
  CHECK(settled["array_job_id"] == array_id);
  CHECK(sweep.status()["sweeps"].size() == 1);
  CHECK(test::run_program({"scontrol", "release", array_id}, cluster.env).exit_code == 0);
  wait_for_array(array_id, cluster.env);
  CHECK(sweep.schedule({"--dry_run"})["counts"]["pending"] == 0);
}

TEST_CASE("schedule --local runs every element here with the same result and status files", "[local]") {
  test::TempDir root;
  const auto out = root / "out 'q' $(touch canary)";
  const std::vector<std::string> base = {"--output_dir", out.string(), "--cache_dir", (root / "cache").string(),
                                         "schedule",     "mill-demo",  "demo",        "--n_shots",
                                         "0,1",          "--evals_per_element", "1"};
  auto args = base;
  args.push_back("--local");
  const auto run = test::run_mill(args);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("--local: ran 2 of 2 element(s)"));
  auto dry = base;
  dry.insert(dry.end(), {"--dry_run", "--json", "--cluster", "local"});
  const auto plan = nlohmann::json::parse(test::run_mill(dry).out);
  CHECK(plan["counts"]["pending"] == 0);
  CHECK(plan["counts"]["done"] == 2);
  const auto status = nlohmann::json::parse(test::run_mill({"--output_dir", out.string(), "status", "--json"}).out);
  REQUIRE(status["sweeps"].size() == 1);
  CHECK(status["sweeps"][0]["mode"] == "local");
  CHECK(status["sweeps"][0]["counts"]["completed"] == 2);
  // Run again: nothing to do, and no new sweep.
  auto again = base;
  again.push_back("--local");
  const auto second = test::run_mill(again);
  CHECK(second.exit_code == 0);
  CHECK_THAT(second.out, Contains("nothing to do"));
  CHECK(nlohmann::json::parse(test::run_mill({"--output_dir", out.string(), "status", "--json"}).out)["sweeps"].size() == 1);
  CHECK(canaries(root.path()).empty());
}

TEST_CASE("a hostile model name reaches the SLURM worker unchanged through the manifest", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  // The spec passes the preflight (its checkpoint is not looked up from here), and the worker fails because vllm is
  // not installed, quoting the spec it received.
  const std::string hostile = "it's a 'model' $(touch canary1) `touch canary2` ;touch canary3;";
  const std::string spec = "vllm[path=\"" + hostile + "\"]";
  const auto run = test::run_mill({"--output_dir", root.path().string(), "--cache_dir", (root / "cache").string(),
                                   "schedule", spec, "demo", "--cluster", "local", "--json", "--skip_model_check"},
                                  cluster.env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const auto plan = nlohmann::json::parse(run.out);
  REQUIRE(plan["submitted"] == true);
  const fs::path sweep_dir = plan["submission"]["sweep_dir"].get<std::string>();
  CHECK(nlohmann::json::parse(test::read_text(sweep_dir / "manifest.json"))["elements"][0]["model"] == spec);
  wait_for_array(plan["submission"]["array_job_id"].get<std::string>(), cluster.env);
  const auto status = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(status["state"] == "failed");
  CHECK_THAT(status["message"].get<std::string>(), Contains(hostile) && Contains("is not on PATH"));
  CHECK(canaries(root.path()).empty());
}

namespace {

// Polls `done` every 200 ms until it holds or `timeout` passes (then fails the test).
void wait_until(const std::function<bool()>& done, std::chrono::seconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) FAIL(what << ": not reached after " << timeout.count() << " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

TEST_CASE("a sweep larger than queue_limit completes with one mill schedule: a continuation job submits the rest",
          "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  // A profile whose queue_limit (3) is smaller than the sweep (4 elements of one job each).
  test::write_text(root / "cache" / "clusters.yaml",
                   "profiles:\n  tiny:\n    hostname_pattern: \"no-such-host\"\n    partition: debug\n"
                   "    gpus_per_node: 4\n    gpus_per_task: 1\n    mem: 1G\n    queue_limit: 3\n    max_array_len: 3\n"
                   "    max_time: \"1:00:00\"\n    cpus_per_task: 1\n");
  const std::vector<std::string> args = {"--output_dir", root.path().string(), "--cache_dir", (root / "cache").string(),
                                         "schedule", "mill-demo[delay_ms=500]", "demo", "--n_shots", "0,1,2,3",
                                         "--cluster", "tiny", "--evals_per_element", "1", "--json"};
  auto schedule = [&](std::vector<std::string> extra = {}) {
    auto all = args;
    all.insert(all.end(), extra.begin(), extra.end());
    const auto run = test::run_mill(all, cluster.env);
    INFO(run.out << run.err);
    REQUIRE(run.exit_code == 0);
    return nlohmann::json::parse(run.out);
  };
  // The dry run shows what goes now and what the continuation submits later.
  const auto dry = schedule({"--dry_run"});
  CHECK(dry["continuation"]["elements_left"] == 2);
  CHECK(dry["arrays"][0]["elements_now"] == 2);

  const auto first = schedule();
  REQUIRE(first["submitted"] == true);
  CHECK(first["submission"]["elements"] == 2);  // three places in the queue: two elements and the continuation
  CHECK(first["submission"]["deferred_jobs"] == 2);
  REQUIRE(first["submission"]["continuation_job_id"].is_string());
  const auto continuation_id = first["submission"]["continuation_job_id"].get<std::string>();
  CHECK_THAT(first["messages"].dump(), Contains("continuation job " + continuation_id));
  const fs::path first_sweep = first["submission"]["sweep_dir"].get<std::string>();
  CHECK_THAT(test::read_text(first_sweep / "continue.sbatch"),
             Contains("--continues") && Contains("--models_file") && Contains("--cluster' 'tiny'"));

  // Nobody runs schedule again: the continuation does, once the first array has ended.
  wait_until(
      [&] {
        const auto plan = nlohmann::json::parse(test::run_mill(
            {"--output_dir", root.path().string(), "--cache_dir", (root / "cache").string(), "schedule",
             "mill-demo[delay_ms=500]", "demo", "--n_shots", "0,1,2,3", "--cluster", "tiny", "--dry_run", "--json"},
            cluster.env).out);
        return plan["counts"]["done"] == 4;
      },
      std::chrono::seconds(180), "all four jobs done");
  const auto sweeps = list_sweeps(root.path());
  REQUIRE(sweeps.size() == 2);
  const auto second = nlohmann::json::parse(test::read_text(sweeps[1].submission()));
  CHECK(second["continues"] == first_sweep.filename().string());
  CHECK(second["jobs"] == 2);
  CHECK_FALSE(second.contains("continuation"));  // the rest fitted: the chain ends
  const auto first_record = nlohmann::json::parse(test::read_text(first_sweep / "submission.json"));
  CHECK(first_record["continuation"]["job_id"] == continuation_id);
  // SLURM ran it: its log is the continuation's own `mill schedule` output.
  wait_until([&] { return fs::exists(first_sweep / "logs" / ("continue_" + continuation_id + ".out")); },
             std::chrono::seconds(30), "the continuation's log");
  const auto status = test::run_mill({"--output_dir", root.path().string(), "status"}, cluster.env);
  CHECK_THAT(status.out, Contains("continuation job " + continuation_id) && Contains("continues sweep"));
}

TEST_CASE("on a real cluster, a first sweep's results set the second sweep's time limit, which holds", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const std::vector<std::string> base = {"--output_dir", root.path().string(), "--cache_dir", (root / "cache").string(),
                                         "schedule", "mill-demo[delay_ms=200]", "demo", "--cluster", "local", "--json"};
  auto schedule = [&](const std::string& n_shots) {
    auto all = base;
    all.insert(all.end(), {"--n_shots", n_shots});
    const auto run = test::run_mill(all, cluster.env);
    INFO(run.out << run.err);
    REQUIRE(run.exit_code == 0);
    return nlohmann::json::parse(run.out);
  };
  const auto first = schedule("0,1");
  REQUIRE(first["submitted"] == true);
  CHECK(first["arrays"][0]["from_history"] == false);
  wait_for_array(first["submission"]["array_job_id"].get<std::string>(), cluster.env);

  const auto second = schedule("2,3");
  REQUIRE(second["submitted"] == true);
  CHECK(second["arrays"][0]["from_history"] == true);
  CHECK_THAT(second["arrays"][0]["explanation"].get<std::string>(), Contains("history: "));
  const fs::path sweep_dir = second["submission"]["sweep_dir"].get<std::string>();
  const auto limit = second["arrays"][0]["time_limit"].get<std::string>();
  CHECK_THAT(test::read_text(sweep_dir / "job.sbatch"), Contains("#SBATCH --time=" + limit + "\n"));
  wait_for_array(second["submission"]["array_job_id"].get<std::string>(), cluster.env);
  // No element was killed by its limit: every one ended completed, by its own status file.
  const auto manifest = nlohmann::json::parse(test::read_text(sweep_dir / "manifest.json"));
  for (std::size_t i = 0; i < manifest["elements"].size(); ++i) {
    const auto status = nlohmann::json::parse(test::read_text(sweep_dir / "status" / fmt::format("element-{}.json", i)));
    CHECK(status["state"] == "completed");
  }
}

namespace {

std::vector<nlohmann::json> journal_entries(const fs::path& journal) {
  std::vector<nlohmann::json> entries;
  std::istringstream lines(test::read_text(journal));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) entries.push_back(nlohmann::json::parse(line));
  }
  return entries;
}

fs::path journal_of(const std::string& result) {
  return result.substr(0, result.size() - 5) + ".journal.jsonl";
}

// "Nothing lost": every job of `plan` has a result in the disturbed run equal to the undisturbed run's (metrics, n,
// key), and its journal holds every document exactly once with the same record as the undisturbed journal.
void check_same_as_undisturbed(const nlohmann::json& plan, const fs::path& disturbed_out, const fs::path& clean_out) {
  for (const auto& job : plan["jobs"]) {
    const std::string result = job["result"].get<std::string>();
    INFO(result);
    REQUIRE(result.rfind(disturbed_out.string(), 0) == 0);
    const auto relative = fs::path(result).lexically_relative(disturbed_out);
    const auto clean_result = clean_out / relative;
    REQUIRE(fs::exists(result));
    REQUIRE(fs::exists(clean_result));
    const auto a = nlohmann::json::parse(test::read_text(result));
    const auto b = nlohmann::json::parse(test::read_text(clean_result));
    CHECK(a["metrics"] == b["metrics"]);
    CHECK(a["n_samples"] == b["n_samples"]);
    CHECK(a["key"] == b["key"]);
    std::map<long long, nlohmann::json> undisturbed;
    for (auto entry : journal_entries(journal_of(clean_result.string()))) {
      undisturbed[entry["doc_id"].get<long long>()] = entry;
    }
    std::map<long long, int> seen;
    for (const auto& entry : journal_entries(journal_of(result))) {
      const auto id = entry["doc_id"].get<long long>();
      ++seen[id];
      CHECK(entry == undisturbed[id]);
    }
    CHECK(seen.size() == undisturbed.size());
    CHECK(static_cast<long long>(seen.size()) == a["n_samples"].get<long long>());
    for (const auto& [id, count] : seen) {
      INFO("doc " << id);
      CHECK(count == 1);
    }
  }
}

// The same jobs evaluated here, undisturbed, into `clean_out`.
void run_undisturbed(const std::string& spec, const std::string& n_shots, const fs::path& clean_out) {
  const auto run = test::run_mill({"--output_dir", clean_out.string(), "eval", spec, "demo", "--n_shots", n_shots, "--quiet"});
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
}

std::string job_field(const std::string& job_id, const std::string& field, const std::map<std::string, std::string>& env) {
  const auto shown = test::run_program({"scontrol", "-o", "show", "job", job_id}, env);
  const auto at = shown.out.find(" " + field + "=");
  if (at == std::string::npos) return "";
  const auto start = at + field.size() + 2;
  return shown.out.substr(start, shown.out.find_first_of(" \n", start) - start);
}

void wait_until(const std::function<bool()>& condition, const std::string& what,
                std::chrono::seconds timeout = std::chrono::seconds(90)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) FAIL("timed out waiting for " << what);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// One element of mill-demo × demo at 0 and 1 shot submitted to the local cluster, running: its first batch is in
// the journal. mill-demo's documented delay_ms knob (a sleep per batch) keeps it busy for a few seconds.
struct RunningDemoSweep {
  std::string spec = "mill-demo[delay_ms=1500]";
  fs::path out;
  std::vector<std::string> schedule;  // the mill arguments that submitted it (run again to resubmit)
  nlohmann::json plan;
  std::string array_id, element;
  fs::path sweep_dir, first_journal;
};

RunningDemoSweep submit_running_demo_sweep(const test::TempDir& root) {
  RunningDemoSweep sweep;
  sweep.out = root / "out";
  sweep.schedule = {"--output_dir", sweep.out.string(), "--cache_dir", (root / "cache").string(), "schedule",
                    sweep.spec, "demo", "--n_shots", "0,1", "--cluster", "local", "--json"};
  const auto run = test::run_mill(sweep.schedule, local_cluster().env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  sweep.plan = nlohmann::json::parse(run.out);
  REQUIRE(sweep.plan["submitted"] == true);
  REQUIRE(sweep.plan["submission"]["elements"] == 1);
  sweep.array_id = sweep.plan["submission"]["array_job_id"].get<std::string>();
  sweep.element = sweep.array_id + "_0";
  sweep.sweep_dir = sweep.plan["submission"]["sweep_dir"].get<std::string>();
  sweep.first_journal = journal_of(find_job(sweep.plan, "demo", 0)["result"].get<std::string>());
  const auto& journal = sweep.first_journal;
  wait_until([&] { return fs::exists(journal) && fs::file_size(journal) > 0; }, "the first journaled batch");
  return sweep;
}

}  // namespace

TEST_CASE("the pre-walltime signal on a real SLURM element requeues it, and the finished results equal an undisturbed run", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const auto sweep = submit_running_demo_sweep(root);
  const auto& spec = sweep.spec;
  const auto& out = sweep.out;
  const auto& schedule = sweep.schedule;
  const auto& plan = sweep.plan;
  const auto& array_id = sweep.array_id;
  const auto& element = sweep.element;
  const auto& sweep_dir = sweep.sweep_dir;
  const auto& first_journal = sweep.first_journal;
  INFO(plan.dump(2));
  const auto last_result = find_job(plan, "demo", 1)["result"].get<std::string>();
  const auto signalled = test::run_program({"scancel", "--signal=USR1", "--batch", element}, cluster.env);
  INFO(signalled.err);
  REQUIRE(signalled.exit_code == 0);
  wait_until([&] { return job_field(element, "Restarts", cluster.env) == "1" &&
                          job_field(element, "JobState", cluster.env) == "PENDING"; },
             "the element to requeue itself");
  // It really stopped part-way: the last job has no result yet, and the status file says why.
  CHECK_FALSE(fs::exists(last_result));
  const auto stopped = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(stopped["state"] == "preempted");
  CHECK(stopped["exit_code"] == 75);
  const auto done_before = journal_entries(first_journal).size();
  CHECK(done_before > 0);
  // While requeued, mill status reports the element queued (and why), and schedule submits none of its jobs again.
  const auto status = nlohmann::json::parse(
      test::run_mill({"--output_dir", out.string(), "status", "--json"}, cluster.env).out);
  CHECK(status["sweeps"][0]["elements"][0]["state"] == "queued");
  CHECK_THAT(status["sweeps"][0]["elements"][0]["detail"].get<std::string>(), Contains("requeued"));
  const auto while_requeued = test::run_mill(schedule, cluster.env);
  INFO(while_requeued.out << while_requeued.err);
  REQUIRE(while_requeued.exit_code == 0);
  const auto second = nlohmann::json::parse(while_requeued.out);
  CHECK(second["submitted"] == false);
  CHECK(second["counts"]["in_flight"].get<int>() + second["counts"]["done"].get<int>() == 2);

  // SLURM holds a requeued job for its credential lifetime (cred_expire, 30 s on the local cluster), so that a
  // late kill meant for the old run cannot reach the new one; forcing StartTime=now raced with exactly that.
  wait_for_array(array_id, cluster.env);
  // What SLURM and the worker said, for a failure below.
  INFO("scontrol: " << test::run_program({"scontrol", "show", "job", element}, cluster.env).out);
  INFO("element stdout:\n" << test::read_text(sweep_dir / "logs" / (element + ".out")));
  INFO("element stderr:\n" << test::read_text(sweep_dir / "logs" / (element + ".err")));
  CHECK(job_field(element, "JobState", cluster.env) == "COMPLETED");
  const auto finished = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(finished["state"] == "completed");
  // The second run resumed from the journal rather than starting over.
  const auto first_result = nlohmann::json::parse(test::read_text(find_job(plan, "demo", 0)["result"].get<std::string>()));
  CHECK(first_result["counts"]["resumed"].get<std::size_t>() + first_result["counts"]["evaluated"].get<std::size_t>() ==
        first_result["n_samples"].get<std::size_t>());

  const auto clean = root / "clean";
  run_undisturbed(spec, "0,1", clean);
  check_same_as_undisturbed(plan, out, clean);
  const auto check = test::run_mill({"--output_dir", out.string(), "collect", "--check", "--models", spec, "--tasks",
                                     "demo", "--n_shots", "0,1"});
  CHECK(check.exit_code == 0);
}

TEST_CASE("a SLURM element ended with SIGTERM keeps its journal, is not done or requeued, and the next schedule completes it identically", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const auto sweep = submit_running_demo_sweep(root);
  const auto& spec = sweep.spec;
  const auto& out = sweep.out;
  const auto& schedule = sweep.schedule;
  const auto& plan = sweep.plan;
  const auto& array_id = sweep.array_id;
  const auto& element = sweep.element;
  const auto& sweep_dir = sweep.sweep_dir;
  const auto& first_journal = sweep.first_journal;
  INFO(plan.dump(2));
  const auto seen = journal_entries(first_journal).size();
  // What scancel and preemption do: SIGTERM to every process of the job (mill is the batch shell), SIGKILL later.
  const auto cancelled = test::run_program({"scancel", element}, cluster.env);
  INFO(cancelled.err);
  REQUIRE(cancelled.exit_code == 0);
  wait_for_array(array_id, cluster.env);
  CHECK(job_field(element, "JobState", cluster.env) == "CANCELLED");
  CHECK(job_field(element, "Restarts", cluster.env) == "0");  // a cancelled job stays cancelled

  // The worker stopped cleanly: the journal keeps every finished batch, the element is not done.
  const auto stopped = nlohmann::json::parse(test::read_text(sweep_dir / "status" / "element-0.json"));
  CHECK(stopped["state"] == "preempted");
  CHECK(stopped["exit_code"] == 75);
  CHECK_THAT(test::read_text(sweep_dir / "logs" / (element + ".err")), Contains("not requeued: stopped by SIGTERM"));
  CHECK(journal_entries(first_journal).size() >= seen);
  const auto status = nlohmann::json::parse(
      test::run_mill({"--output_dir", out.string(), "status", "--json"}, cluster.env).out);
  CHECK(status["sweeps"][0]["elements"][0]["state"] == "preempted");
  const auto dry = test::run_mill({"--output_dir", out.string(), "--cache_dir", (root / "cache").string(), "schedule",
                                   spec, "demo", "--n_shots", "0,1", "--cluster", "local", "--dry_run", "--json"});
  REQUIRE(dry.exit_code == 0);
  CHECK(nlohmann::json::parse(dry.out)["counts"]["pending"].get<int>() >= 1);
  CHECK(test::run_mill({"--output_dir", out.string(), "collect", "--check", "--models", spec, "--tasks", "demo",
                        "--n_shots", "0,1"})
            .exit_code == 3);

  // The next schedule resubmits what is missing; it resumes from the journal and ends identical to an undisturbed run.
  const auto rerun = test::run_mill(schedule, cluster.env);
  INFO(rerun.out << rerun.err);
  REQUIRE(rerun.exit_code == 0);
  const auto second = nlohmann::json::parse(rerun.out);
  REQUIRE(second["submitted"] == true);
  wait_for_array(second["submission"]["array_job_id"].get<std::string>(), cluster.env);
  const auto clean = root / "clean";
  run_undisturbed(spec, "0,1", clean);
  check_same_as_undisturbed(plan, out, clean);
  CHECK(test::run_mill({"--output_dir", out.string(), "collect", "--check", "--models", spec, "--tasks", "demo",
                        "--n_shots", "0,1"})
            .exit_code == 0);
}

TEST_CASE("hostile profile values and paths in a real SLURM sweep run only mill, and what sbatch cannot parse is refused whole", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const std::string hostile = " 'q' \"d\" $(touch canary1) `touch canary2` ;touch canary3; \nline2 " + std::string(100, 'L');
  const auto out = root / ("out" + hostile);
  const auto cache = root / ("cache" + hostile);  // the profile file's own path is hostile too
  const auto setup_marker = root / "setup-ran";
  const std::string profile_head =
      "profiles:\n  p:\n    hostname_pattern: \"no-such-host\"\n    partition: debug\n    gpus_per_node: 4\n"
      "    gpus_per_task: 1\n    mem: 1G\n    queue_limit: 50\n    max_array_len: 3\n    max_time: \"1:00:00\"\n"
      "    cpus_per_task: 1\n";
  // sbatch reads the #SBATCH lines itself (quotes included, no shell); setup lines are the user's shell code, run
  // exactly as written (quoted here, so they print the text).
  const std::string comment = "$(touch canary4) `touch canary5` 'q' \\\" x";
  auto yaml_single_quoted = [](std::string text) {  // inside '...' YAML doubles a quote
    for (std::size_t at = 0; (at = text.find('\'', at)) != std::string::npos; at += 2) text.insert(at, 1, '\'');
    return text;
  };
  test::write_text(cache / "clusters.yaml",
                   profile_head + "    extra_sbatch: ['--comment=\"" + yaml_single_quoted(comment) + "\"']\n"
                   "    setup_lines: [\"printf '%s' '$(touch canary6) `touch canary7`' > '" + setup_marker.string() + "'\"]\n");
  const std::vector<std::string> args = {"--output_dir", out.string(), "--cache_dir", cache.string(), "schedule",
                                         "mill-demo", "demo", "--cluster", "p", "--limit", "3", "--json"};
  const auto run = test::run_mill(args, cluster.env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const auto plan = nlohmann::json::parse(run.out);
  REQUIRE(plan["submitted"] == true);
  const auto array_id = plan["submission"]["array_job_id"].get<std::string>();
  // sbatch took the quoted comment literally (scontrol prints it unquoted, up to the next field).
  const auto shown = test::run_program({"scontrol", "-o", "show", "job", array_id + "_0"}, cluster.env).out;
  CHECK_THAT(shown, Contains("Comment=$(touch canary4) `touch canary5` 'q' \" x "));
  wait_for_array(array_id, cluster.env);
  CHECK(job_field(array_id + "_0", "JobState", cluster.env) == "COMPLETED");
  CHECK(fs::exists(find_job(plan, "demo", 0)["result"].get<std::string>()));
  CHECK(test::read_text(setup_marker) == "$(touch canary6) `touch canary7`");
  CHECK(canaries(root.path()).empty());

  // An option sbatch cannot parse (an unquoted space) and one it refuses (5000 characters): exit 5, one line,
  // nothing left behind, nothing queued.
  for (const auto& bad : {std::string("'--comment=two words'"), "'--comment=" + std::string(5000, 'c') + "'"}) {
    INFO(bad.substr(0, 40));
    test::write_text(cache / "clusters.yaml", profile_head + "    extra_sbatch: [" + bad + "]\n");
    auto refused_args = args;
    refused_args.insert(refused_args.end(), {"--n_shots", "1"});  // a job not done yet
    const auto refused = test::run_mill(refused_args, cluster.env);
    CHECK(refused.exit_code == 5);
    CHECK(std::count(refused.err.begin(), refused.err.end(), '\n') == 1);
    CHECK_THAT(refused.err, Contains("sbatch did not accept the array"));
    std::size_t sweeps = 0;
    for (const auto& entry : fs::directory_iterator(out / "sweeps")) sweeps += entry.is_directory();  // not submit.lock
    CHECK(sweeps == 1);  // only the first, real sweep
  }
  CHECK(canaries(root.path()).empty());
}

TEST_CASE("an API key in the environment of a real SLURM sweep reaches the server but no file mill writes and no output", "[slurm][secrets]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  const std::string secret = "sk-mill-slurm-secret-5f02b9d14c71";
  // The worker removes its heartbeat when the element ends, so the test reads it while the element runs: the
  // server (the OpenAI protocol over mill-demo on loopback) holds its answers until then, up to a minute.
  std::atomic<bool> heartbeat_read{false};
  const auto hold_until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  test::FaultServer server([&](const std::string&, int, httplib::Response&) {
    while (!heartbeat_read.load() && std::chrono::steady_clock::now() < hold_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;  // then answer normally
  });
  const std::string spec = "api[base_url=" + server.base_url() + ",model=mill-demo]";
  auto env = cluster.env;
  env["OPENAI_API_KEY"] = secret;  // the variable the api backend reads by default (docs/backends.md)
  const auto out = root / "out";
  const std::vector<std::string> global = {"--output_dir", out.string(), "--cache_dir", (root / "cache").string(),
                                           "--log_level", "debug"};
  std::vector<test::RunResult> runs;
  auto mill_run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), global.begin(), global.end());
    runs.push_back(test::run_mill(args, env));
    INFO("mill " << join(args, " ") << "\n" << runs.back().out << runs.back().err);
    REQUIRE(runs.back().exit_code == 0);
    return runs.back();
  };
  auto json_of = [](const test::RunResult& run) { return nlohmann::json::parse(run.out.substr(run.out.find('{'))); };
  const std::vector<std::string> schedule = {"schedule", spec, "demo", "--n_shots", "0,1", "--limit", "12",
                                             "--cluster", "local", "--json"};

  auto args = schedule;
  const auto plan = json_of(mill_run(args));
  REQUIRE(plan["submitted"] == true);
  const auto array_id = plan["submission"]["array_job_id"].get<std::string>();
  const fs::path sweep_dir = plan["submission"]["sweep_dir"].get<std::string>();
  std::string heartbeat;
  wait_for_array(array_id, cluster.env, [&](const std::vector<QueueEntry>&) {
    if (heartbeat_read) return;
    std::ifstream file(sweep_dir / "heartbeats" / "element-0.json");
    heartbeat.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    if (!heartbeat.empty()) heartbeat_read = true;
  });
  CHECK(job_field(array_id + "_0", "JobState", cluster.env) == "COMPLETED");
  INFO(heartbeat);
  CHECK_THAT(heartbeat, Contains("done_samples"));
  CHECK(heartbeat.find(secret) == std::string::npos);

  // The run really worked through the key: the worker sent it, every element completed, every job has a valid result.
  CHECK(server.last_authorization() == "Bearer " + secret);
  mill_run({"status"});
  const auto status = json_of(mill_run({"status", "--json"}));
  REQUIRE(status["sweeps"].size() == 1);
  CHECK(status["sweeps"][0]["finished"] == true);
  CHECK(status["sweeps"][0]["counts"]["completed"] == plan["submission"]["elements"]);
  args = schedule;
  args.push_back("--dry_run");
  const auto after = json_of(mill_run(args));
  CHECK(after["counts"]["pending"] == 0);
  CHECK(after["counts"]["done"] == 2);
  for (const auto& job : plan["jobs"]) CHECK(fs::exists(job["result"].get<std::string>()));
  mill_run({"collect"});

  for (const auto& run : runs) {
    CHECK(run.out.find(secret) == std::string::npos);
    CHECK(run.err.find(secret) == std::string::npos);
  }
  std::set<fs::path> grepped;
  CHECK(test::files_containing(root.path(), secret, grepped).empty());
  // What was searched: the sbatch script, SLURM's stdout and stderr of the element, and everything else mill wrote.
  INFO(grepped.size() << " files");
  CHECK(grepped.count(sweep_dir / "job.sbatch") == 1);
  CHECK(grepped.count(sweep_dir / "manifest.json") == 1);
  CHECK(grepped.count(sweep_dir / "logs" / (array_id + "_0.out")) == 1);
  CHECK(grepped.count(sweep_dir / "logs" / (array_id + "_0.err")) == 1);
  CHECK(grepped.count(sweep_dir / "status" / "element-0.json") == 1);
  auto grepped_any = [&](const std::string& part) {
    return std::any_of(grepped.begin(), grepped.end(), [&](const fs::path& p) { return p.string().find(part) != std::string::npos; });
  };
  CHECK(grepped_any(".journal.jsonl"));
  CHECK(grepped_any("/remote/requests/"));
  CHECK(grepped_any("aggregate.csv"));
  CHECK(grepped_any("report.md"));
}

TEST_CASE("DESIGN.md's clusters.yaml, verbatim, submits a real array that SLURM accepts and completes", "[slurm]") {
  REQUIRE_LOCAL_CLUSTER();
  test::TempDir root;
  // Partition gpu, account my_project, typed gres A100 and 64G: the local cluster has all of them.
  const std::string design_seed = test::design_seed_clusters_yaml();
  const auto cache = root / "cache";
  test::write_text(cache / "clusters.yaml", design_seed);
  auto env = cluster.env;
  env["MILL_HOSTNAME"] = "login01";
  const auto run = test::run_mill({"--output_dir", (root / "out").string(), "--cache_dir", cache.string(), "schedule",
                                   "mill-demo", "demo", "--n_shots", "0,1", "--limit", "3", "--evals_per_element", "1",
                                   "--json"},
                                  env);
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.err.empty());
  const auto plan = nlohmann::json::parse(run.out);
  CHECK(plan["profile"]["name"] == "my-cluster");
  REQUIRE(plan["submitted"] == true);
  CHECK(plan["submission"]["elements"] == 2);
  const auto array_id = plan["submission"]["array_job_id"].get<std::string>();
  const fs::path sweep_dir = plan["submission"]["sweep_dir"].get<std::string>();
  CHECK_THAT(test::read_text(sweep_dir / "job.sbatch"),
             Contains("#SBATCH --partition=gpu\n") && Contains("#SBATCH --account=my_project\n") &&
                 Contains("#SBATCH --gres=gpu:A100:1\n") && Contains("#SBATCH --mem=64G\n") &&
                 Contains("#SBATCH --array=0-1%100\n"));
  wait_for_array(array_id, cluster.env);
  for (const std::string element : {"0", "1"}) {
    INFO("element " << element);
    const auto job = array_id + "_" + element;
    CHECK(job_field(job, "JobState", cluster.env) == "COMPLETED");
    CHECK(job_field(job, "Partition", cluster.env) == "gpu");
    CHECK(job_field(job, "Account", cluster.env) == "my_project");
    const auto status = nlohmann::json::parse(test::read_text(sweep_dir / "status" / ("element-" + element + ".json")));
    CHECK(status["state"] == "completed");
  }
  for (const auto& job : plan["jobs"]) CHECK(fs::exists(job["result"].get<std::string>()));
  CHECK(test::read_text(cache / "clusters.yaml") == design_seed);
}
