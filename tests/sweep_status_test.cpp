// How `mill status` combines the worker's files with SLURM's view of each element, and the command itself on
// a sweep written here (no cluster needed: --no_slurm, and local sweeps never ask SLURM).
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "mill/sweep/submit.hpp"
#include "mill/sweep/sweep_status.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
const long long kNow = 1'800'000'000;

std::optional<Heartbeat> heartbeat(long long age_seconds) {
  return heartbeat_from_json({{"element", 0},       {"pid", 123},           {"host", "node7"},
                              {"state", "running"}, {"job_index", 1},       {"jobs_total", 3},
                              {"task", "demo"},     {"n_shot", 5},          {"done_samples", 40},
                              {"total_samples", 100}, {"updated_at", kNow - age_seconds}});
}

std::optional<ElementStatusRecord> status_file(const nlohmann::json& document) {
  return element_status_from_json(document);
}
}  // namespace

TEST_CASE("timestamps are read as ISO 8601 UTC or Unix seconds") {
  CHECK(parse_timestamp("1970-01-02T00:00:00Z") == 86400);
  CHECK(parse_timestamp("1970-01-02T00:00:01.250Z") == 86401);
  CHECK(parse_timestamp(42) == 42);
  CHECK(parse_timestamp("yesterday") == -1);
  CHECK(parse_timestamp(nullptr) == -1);
}

TEST_CASE("the queue wins while SLURM has the element, then the status file, then the heartbeat") {
  constexpr auto none = std::nullopt;
  // Pending in the queue, even with a status file from before a requeue.
  auto status = combine_element_status(0, status_file({{"state", "preempted"}}), none, true, std::string("PENDING"), "BeginTime", "", kNow);
  CHECK(status.state == ElementState::queued);
  CHECK_THAT(status.detail, Contains("requeued") && Contains("BeginTime"));
  // Running with progress from the heartbeat.
  status = combine_element_status(0, none, heartbeat(5), true, std::string("RUNNING"), "None", "", kNow);
  CHECK(status.state == ElementState::running);
  CHECK_THAT(status.detail, Contains("job 2/3") && Contains("demo 5-shot") && Contains("40/100") &&
                                Contains("5 s ago") && Contains("node7"));
  CHECK(status.done_samples == 40);
  CHECK(status.total_samples == 100);
  // Finished: the status file decides.
  status = combine_element_status(0, status_file({{"state", "completed"}, {"exit_code", 0}, {"jobs", {1, 2}}}), heartbeat(1), true,
                                  std::nullopt, "", "COMPLETED", kNow);
  CHECK(status.state == ElementState::completed);
  status = combine_element_status(0, status_file({{"state", "failed"}, {"exit_code", 4}, {"message", "demo 0-shot: no data"}}), none,
                                  true, std::nullopt, "", "", kNow);
  CHECK(status.state == ElementState::failed);
  CHECK_THAT(status.detail, Contains("exit 4") && Contains("no data"));
  status = combine_element_status(0, status_file({{"state", "preempted"}, {"exit_code", 75}}), none, true, std::nullopt, "", "", kNow);
  CHECK(status.state == ElementState::preempted);
  // Gone from the queue without a status file: failed, with SLURM's reason.
  status = combine_element_status(0, none, heartbeat(30), true, std::nullopt, "", "TIMEOUT", kNow);
  CHECK(status.state == ElementState::failed);
  CHECK_THAT(status.detail, Contains("TIMEOUT") && Contains("last heartbeat"));
  // Without SLURM's answer: a fresh heartbeat is running, a stale one or nothing is unknown.
  CHECK(combine_element_status(0, none, heartbeat(10), false, std::nullopt, "", "", kNow).state == ElementState::running);
  CHECK(combine_element_status(0, none, heartbeat(kStaleHeartbeatSeconds + 60), false, std::nullopt, "", "", kNow).state ==
        ElementState::unknown);
  CHECK(combine_element_status(0, none, none, false, std::nullopt, "", "", kNow).state == ElementState::unknown);
}

TEST_CASE("mill status reports every sweep from its files") {
  test::TempDir out;
  const auto sweep = create_sweep(out.path());
  write_local_submission(sweep, 3, 4, {"mill", "schedule"});
  const auto manifest = nlohmann::json::parse(R"({"schema": "mill.manifest/1", "elements": [
      {"model": "mill-demo", "jobs": [{"task": "demo", "key": "a"}, {"task": "demo", "key": "b"}]},
      {"model": "mill-demo", "jobs": [{"task": "demo", "key": "c"}]},
      {"model": "other", "jobs": [{"task": "demo", "key": "d"}]}]})");
  test::write_text(sweep.manifest(), manifest.dump());
  test::write_text(sweep.status(0), nlohmann::json{{"state", "completed"}, {"exit_code", 0}, {"jobs", {1, 2}}}.dump());
  test::write_text(sweep.status(1), nlohmann::json{{"state", "failed"}, {"exit_code", 4}, {"message", "boom"}}.dump());
  test::write_text(sweep.heartbeat(1), "{ torn");  // unreadable files never make status fail

  const auto json_run = test::run_mill({"--output_dir", out.path().string(), "status", "--json"});
  INFO(json_run.err);
  REQUIRE(json_run.exit_code == 0);
  const auto report = nlohmann::json::parse(json_run.out);
  REQUIRE(report["sweeps"].size() == 1);
  const auto& only = report["sweeps"][0];
  CHECK(only["id"] == sweep.dir.filename().string());
  CHECK(only["mode"] == "local");
  CHECK(only["counts"]["completed"] == 1);
  CHECK(only["counts"]["failed"] == 1);
  // The run that wrote submission.json (this test process) still runs: the element without files waits its turn.
  CHECK(only["counts"]["queued"] == 1);
  CHECK(only["local_run"]["state"] == "running");
  CHECK(only["elements"][2]["model"] == "other");
  CHECK(only["finished"] == false);

  const auto text_run = test::run_mill({"--output_dir", out.path().string(), "status"});
  REQUIRE(text_run.exit_code == 0);
  CHECK_THAT(text_run.out, Contains(sweep.dir.filename().string()) && Contains("1 completed") && Contains("1 failed") &&
                               Contains("boom"));
  CHECK(text_run.out.find("2 job(s) finished") == std::string::npos);  // completed elements only with --all
  CHECK_THAT(test::run_mill({"--output_dir", out.path().string(), "status", "--all"}).out, Contains("2 job(s) finished"));

  test::TempDir empty;
  const auto nothing = test::run_mill({"--output_dir", empty.path().string(), "status"});
  CHECK(nothing.exit_code == 0);
  CHECK_THAT(nothing.out, Contains("no sweeps"));
}

TEST_CASE("mill status with an unknown sweep id exits 2 in one line naming it and the known ids") {
  test::TempDir out;
  const auto sweep = create_sweep(out.path());
  write_local_submission(sweep, 1, 1, {"mill", "schedule"});
  const auto known = sweep.dir.filename().string();
  // A known id still works, alone and with --json.
  CHECK(test::run_mill({"--output_dir", out.path().string(), "status", known}).exit_code == 0);
  CHECK(test::run_mill({"--output_dir", out.path().string(), "status", known, "--json"}).exit_code == 0);

  for (const auto& extra : {std::vector<std::string>{}, std::vector<std::string>{"--json"}}) {
    std::vector<std::string> args = {"--output_dir", out.path().string(), "status", known, "no-such-sweep"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto run = test::run_mill(args);
    INFO(run.out << run.err);
    CHECK(run.exit_code == 2);
    CHECK(run.out.empty());  // nothing half-reported
    CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
    CHECK_THAT(run.err, Contains("\"no-such-sweep\"") && Contains(known) && Contains("mill status"));
    CHECK(run.err.find("\"" + known + "\"") == std::string::npos);  // only the unknown id is called unknown
  }

  // No sweeps at all: the unknown id is still an error; plain `mill status` is not.
  test::TempDir empty;
  const auto unknown = test::run_mill({"--output_dir", empty.path().string(), "status", "x\ny"});
  CHECK(unknown.exit_code == 2);
  CHECK(std::count(unknown.err.begin(), unknown.err.end(), '\n') == 1);
  CHECK_THAT(unknown.err, Contains("\"x\\ny\"") && Contains("no sweeps"));
  const auto nothing = test::run_mill({"--output_dir", empty.path().string(), "status"});
  CHECK(nothing.exit_code == 0);
  CHECK_THAT(nothing.out, Contains("no sweeps"));
}
