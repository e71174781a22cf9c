// The vLLM launcher against a `vllm` executable on PATH: a script with vLLM's command-line shape that runs the
// real `mill serve`, and misbehaving variants (late, dying, never healthy and deaf to SIGTERM). The worker waits,
// times out, reports, and no process it started survives.
#include <fmt/format.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <sstream>

#include "mill/model/demo_backend.hpp"
#include "mill/base/error.hpp"
#include "mill/remote/vllm_backend.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using namespace mill::test;

namespace {

// Writes DIR/bin/vllm. It records its arguments (DIR/args) and every process it starts (DIR/pids), starts a
// helper process in its group the way vLLM starts engine workers, then behaves as `mode` says.
void write_fake_vllm(const std::filesystem::path& dir, const std::string& mode) {
  std::string behaviour;
  if (mode == "good") behaviour = "exec \"$MILL\" serve \"$model\" --host \"$host\" --port \"$port\"";
  if (mode == "late") behaviour = "sleep 2\nexec \"$MILL\" serve \"$model\" --host \"$host\" --port \"$port\"";
  if (mode == "dies") behaviour = "echo 'RuntimeError: CUDA out of memory (fake)' >&2\nexit 3";
  if (mode == "never") behaviour = "trap '' TERM\necho 'loading weights...'\nwhile :; do sleep 1; done";
  const auto script =
      fmt::format(R"(#!/bin/sh
MILL='{mill}'
pids='{dir}/pids'
echo $$ >> "$pids"
printf '%s\n' "$*" > '{dir}/args'
[ "$1" = serve ] || {{ echo "usage: vllm serve MODEL [options]" >&2; exit 2; }}
model=$2
shift 2
port=8000
host=0.0.0.0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --trust-remote-code) shift ;;
    --*) shift 2 ;;
    *) echo "unexpected argument $1" >&2; exit 2 ;;
  esac
done
sleep 300 &
echo $! >> "$pids"
echo "INFO fake vllm: serving $model on $host:$port"
{behaviour}
)",
                  fmt::arg("mill", test::mill_binary()), fmt::arg("dir", dir.string()), fmt::arg("behaviour", behaviour));
  write_text(dir / "bin" / "vllm", script);
  ::chmod((dir / "bin" / "vllm").c_str(), 0755);
}

// PATH with the fake first and the request journal in the test's directory, restored afterwards.
class FakeEnvironment {
 public:
  FakeEnvironment(const std::filesystem::path& dir, const std::string& mode) : dir_(dir) {
    write_fake_vllm(dir, mode);
    old_path_ = std::getenv("PATH") ? std::getenv("PATH") : "";
    ::setenv("PATH", ((dir / "bin").string() + ":" + old_path_).c_str(), 1);
    ::setenv("MILL_REMOTE_DIR", (dir / "remote").c_str(), 1);
  }
  ~FakeEnvironment() {
    ::setenv("PATH", old_path_.c_str(), 1);
    ::unsetenv("MILL_REMOTE_DIR");
  }
  std::vector<long> pids() const {
    std::vector<long> pids;
    std::istringstream in(read_text(dir_ / "pids"));
    for (long pid = 0; in >> pid;) pids.push_back(pid);
    return pids;
  }
  VllmLaunchOptions options() const {
    VllmLaunchOptions options;
    options.stop_grace_s = 2;
    options.poll_interval_s = 0.1;
    options.log_dir = dir_ / "logs";
    return options;
  }

 private:
  std::filesystem::path dir_;
  std::string old_path_;
};

void check_all_gone(const std::vector<long>& pids) {
  REQUIRE_FALSE(pids.empty());
  for (auto pid : pids) {
    INFO("pid " << pid);
    CHECK(process_gone(pid));
  }
}

}  // namespace

TEST_CASE("vllm[...] starts `vllm serve` from PATH, evaluates through it and stops it", "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "good");
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  const std::vector<LoglikelihoodRequest> requests = {{"Question: What is 3 + 4?\nAnswer:", " 7"}, {"ab", "c"}};
  const std::vector<GenerationRequest> asks = {{"The mill", {"\n"}, 10}};
  {
    VllmBackend backend(
        ModelSpec::parse("vllm[path=mill-demo,dtype=float16,tensor_parallel_size=1,startup_timeout=60]"),
        env.options());
    CHECK(read_text(dir / "args") ==
          fmt::format("serve mill-demo --host 127.0.0.1 --port {} --dtype float16 --tensor-parallel-size 1\n",
                      backend.port()));
    CHECK(backend.capabilities().loglikelihood);
    const auto got = backend.loglikelihood(requests);
    const auto expected = demo.loglikelihood(requests);
    for (std::size_t i = 0; i < requests.size(); ++i) {
      CHECK(got[i].logprob == expected[i].logprob);
      CHECK(got[i].greedy == expected[i].greedy);
    }
    CHECK(backend.generate(asks)[0].text == demo.generate(asks)[0].text);
    const auto facts = backend.provenance();
    CHECK(facts["backend"] == "vllm");
    CHECK(facts["model"] == "mill-demo");
    for (auto pid : env.pids()) CHECK_FALSE(process_gone(pid));  // the server and its helper are running
  }
  check_all_gone(env.pids());
}

TEST_CASE("a vllm server that starts late is waited for", "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "late");
  {
    VllmBackend backend(ModelSpec::parse("vllm[path=mill-demo,startup_timeout=60]"), env.options());
    CHECK(backend.provenance()["server_startup_seconds"].get<double>() >= 1.9);
    CHECK(backend.generate({{"a", {}, 3}}).size() == 1);
  }
  check_all_gone(env.pids());
}

TEST_CASE("a vllm server that dies during start-up is reported with its last log line", "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "dies");
  try {
    VllmBackend backend(ModelSpec::parse("vllm[path=mill-demo,startup_timeout=60]"), env.options());
    FAIL("expected the start-up to fail");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::eval_failed);
    CHECK_THAT(e.what(), Catch::Contains("exited with code 3 before it became healthy") &&
                             Catch::Contains("CUDA out of memory (fake)") && Catch::Contains((dir / "logs").string()));
  }
  check_all_gone(env.pids());
}

TEST_CASE("a vllm server that never becomes healthy times out and is killed even if it ignores SIGTERM",
          "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "never");
  const auto start = std::chrono::steady_clock::now();
  try {
    VllmBackend backend(ModelSpec::parse("vllm[path=mill-demo,startup_timeout=2]"), env.options());
    FAIL("expected a time-out");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("did not become healthy") && Catch::Contains("within 2 s") &&
                             Catch::Contains("startup_timeout") && Catch::Contains("loading weights..."));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds >= 2);
  CHECK(seconds < 15);
  check_all_gone(env.pids());
}

TEST_CASE("the stop signal during a vllm start-up stops the server and reports preemption", "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "never");
  std::atomic<bool> stop{false};
  auto options = env.options();
  options.stop = &stop;
  std::thread signaller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    stop.store(true);
  });
  try {
    VllmBackend backend(ModelSpec::parse("vllm[path=mill-demo,startup_timeout=60]"), options);
    FAIL("expected the stop flag to end the start-up");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::preempted);
    CHECK_THAT(e.what(), Catch::Contains("stopped by a signal"));
  }
  signaller.join();
  check_all_gone(env.pids());
}

TEST_CASE("vllm specs are checked before anything starts", "[remote][vllm]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "good");
  CHECK_THROWS_WITH(VllmBackend(ModelSpec::parse("vllm[dtype=float16]"), env.options()),
                    Catch::Contains("needs path=MODEL"));
  CHECK_THROWS_WITH(
      VllmBackend(ModelSpec::parse("vllm[path=m,tensor_parallel=2]"), env.options()),
      Catch::Contains("no argument \"tensor_parallel\"") || Catch::Contains("no argument tensor_parallel"));
  auto options = env.options();
  options.executable = "vllm-not-installed";
  CHECK_THROWS_WITH(VllmBackend(ModelSpec::parse("vllm[path=m]"), options), Catch::Contains("is not on PATH"));
  CHECK_FALSE(std::filesystem::exists(dir / "pids"));
}

TEST_CASE(
    "mill eval with vllm[...] stops the server on SIGTERM (exit 75) and a rerun finishes with the demo's "
    "scores",
    "[remote][vllm][eval]") {
  TempDir dir;
  FakeEnvironment env(dir.path(), "good");
  const auto out = (dir / "out").string();
  // Each backend call of the served model takes 300 ms, so the signal lands mid-run.
  const std::string spec = R"(vllm[path="mill-demo[delay_ms=300]",startup_timeout=60])";
  ServerProcess eval({test::mill_binary(), "--output_dir", out, "eval", spec, "demo", "--docs_per_batch", "1"},
                     dir / "eval.log");
  const auto requests_dir = dir / "remote" / "requests";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto journal_started = [&] {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(requests_dir, ec)) {
      if (std::filesystem::file_size(entry.path(), ec) > 0) return true;
    }
    return false;
  };
  while (!journal_started()) {
    REQUIRE(eval.running());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(eval.pid(), SIGTERM);  // the worker alone, as SLURM's pre-walltime signal
  while (eval.running()) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO(read_text(dir / "eval.log"));
  CHECK(eval.exit_description() == "exited with code 75");
  check_all_gone(env.pids());

  const auto rerun = run_mill({"--output_dir", out, "eval", spec, "demo"});
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  const auto reference = run_mill({"--output_dir", out, "eval", "mill-demo", "demo"});
  REQUIRE(reference.exit_code == 0);
  auto metrics_of = [](const std::string& stdout_text) {
    const auto line = stdout_text.substr(0, stdout_text.find('\n'));
    const auto path = line.substr(line.rfind('\t') + 1);
    return nlohmann::json::parse(read_text(path))["metrics"];
  };
  CHECK(metrics_of(rerun.out) == metrics_of(reference.out));
  check_all_gone(env.pids());
}
