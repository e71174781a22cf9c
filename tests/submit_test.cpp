// Submission pieces that need no cluster: sbatch/squeue/scontrol output parsing, the queue budget, jobs in
// flight from earlier sweeps, the requeue decision, and the rendered array script run for real by bash with
// hostile paths.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "mill/sweep/cluster.hpp"
#include "mill/sweep/requeue.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/sweep/submit.hpp"
#include "support.hpp"

using namespace mill;
namespace fs = std::filesystem;

TEST_CASE("sbatch --parsable output gives the job id, with or without a cluster name or warnings") {
  CHECK(parse_sbatch_job_id("1234\n") == "1234");
  CHECK(parse_sbatch_job_id("77;cluster-a\n") == "77");
  CHECK(parse_sbatch_job_id("sbatch: warning: something\n991\n") == "991");
  CHECK(parse_sbatch_job_id("") == "");
  CHECK(parse_sbatch_job_id("Submitted batch job\n") == "");
}

TEST_CASE("squeue -r lines become one entry per array element") {
  const auto entries = parse_queue(
      "41_0|41|0|RUNNING|None\n41_3|41|3|PENDING|JobArrayTaskLimit\n50|50|N/A|PENDING|Priority\n\ngarbage\n");
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].job_id == "41_0");
  CHECK(entries[0].array_job_id == "41");
  CHECK(entries[0].array_task_id == 0);
  CHECK(entries[0].state == "RUNNING");
  CHECK(entries[1].array_task_id == 3);
  CHECK(entries[1].reason == "JobArrayTaskLimit");
  CHECK(entries[2].array_task_id == -1);
}

TEST_CASE("scontrol show job -o gives the final state of single array elements, not pending ranges") {
  const auto states = parse_scontrol_array_states(
      "JobId=12 ArrayJobId=10 ArrayTaskId=2 JobName=mill JobState=TIMEOUT Reason=TimeLimit\n"
      "JobId=11 ArrayJobId=10 ArrayTaskId=1 JobName=mill JobState=COMPLETED Reason=None\n"
      "JobId=10 ArrayJobId=10 ArrayTaskId=3-9%3 JobName=mill JobState=PENDING Reason=JobArrayTaskLimit\n");
  CHECK(states.size() == 2);
  CHECK(states.at(2) == "TIMEOUT");
  CHECK(states.at(1) == "COMPLETED");
}

TEST_CASE("programs run without a shell and report failure to start") {
  const auto echoed = run_program_captured({"printf", "%s", "$(not run) 'q'"});
  CHECK(echoed.started);
  CHECK(echoed.exit_code == 0);
  CHECK(echoed.out == "$(not run) 'q'");
  const auto missing = run_program_captured({"mill-no-such-program-xyz"});
  CHECK_FALSE(missing.started);
  CHECK_THAT(missing.err, Catch::Matchers::Contains("mill-no-such-program-xyz"));
  const auto failing = run_program_captured({"sh", "-c", "echo oops >&2; exit 3"});
  CHECK(failing.exit_code == 3);
  CHECK(failing.err == "oops\n");
}

TEST_CASE("the submit budget never exceeds queue_limit minus what is queued, nor MaxArraySize") {
  ClusterProfile profile;
  profile.name = "p";
  profile.queue_limit = 10;
  profile.max_array_size = 1001;
  CHECK(submit_budget(profile, 0, 4).elements == 4);
  CHECK(submit_budget(profile, 0, 4).limited_by.empty());
  const auto partial = submit_budget(profile, 7, 5);
  CHECK(partial.elements == 3);
  CHECK_THAT(partial.limited_by, Catch::Matchers::Contains("queue_limit 10") && Catch::Matchers::Contains("7"));
  CHECK(submit_budget(profile, 12, 5).elements == 0);
  profile.queue_limit = 5000;
  profile.max_array_size = 100;
  const auto by_array = submit_budget(profile, 0, 250);
  CHECK(by_array.elements == 100);
  CHECK_THAT(by_array.limited_by, Catch::Matchers::Contains("max_array_size 100"));
}

TEST_CASE("jobs of earlier sweeps count as in flight only while their element is in the queue") {
  test::TempDir out;
  const auto sweep = create_sweep(out.path());
  CHECK(fs::is_directory(sweep.logs()));
  test::write_text(sweep.submission(), nlohmann::json{{"schema", kSubmissionSchema}, {"array_job_id", "41"}}.dump());
  const auto manifest = nlohmann::json::parse(R"({"schema": "mill.manifest/1", "elements": [
      {"model": "m", "jobs": [{"task": "a", "n_shot": 0, "key": "k-a"}, {"task": "b", "n_shot": 0, "key": "k-b"}]},
      {"model": "m", "jobs": [{"task": "c", "n_shot": 0, "key": "k-c"}]}]})");
  test::write_text(sweep.manifest(), manifest.dump());
  const auto other = create_sweep(out.path());  // an earlier sweep without submission.json is ignored
  CHECK(other.dir != sweep.dir);
  CHECK(list_sweeps(out.path()).size() == 2);

  CHECK(jobs_in_flight(out.path(), {}).empty());
  const auto in_flight = jobs_in_flight(out.path(), parse_queue("41_1|41|1|PENDING|None\n99_0|99|0|RUNNING|None\n"));
  REQUIRE(in_flight.size() == 1);
  CHECK(in_flight.count("k-c") == 1);
  CHECK(in_flight.at("k-c").array_job_id == "41");
  CHECK(in_flight.at("k-c").element == 1);
  CHECK(in_flight.at("k-c").state == "PENDING");
  CHECK(jobs_in_flight(out.path(), parse_queue("41_0|41|0|RUNNING|None\n")).size() == 2);
}

TEST_CASE("a stopped element is requeued only under SLURM, after progress, and a bounded number of times") {
  const std::map<std::string, std::string> slurm = {
      {"SLURM_JOB_ID", "57"}, {"SLURM_ARRAY_JOB_ID", "50"}, {"SLURM_ARRAY_TASK_ID", "7"}};
  const auto yes = decide_requeue(slurm, true, 3);
  CHECK(yes.requeue);
  CHECK(yes.command == std::vector<std::string>{"scontrol", "requeue", "50_7"});
  CHECK_FALSE(decide_requeue(slurm, false, 3).requeue);
  CHECK_FALSE(decide_requeue({}, true, 3).requeue);
  auto restarted = slurm;
  restarted["SLURM_RESTART_COUNT"] = "2";
  CHECK(decide_requeue(restarted, true, 3).requeue);
  restarted["SLURM_RESTART_COUNT"] = "3";
  const auto exhausted = decide_requeue(restarted, true, 3);
  CHECK_FALSE(exhausted.requeue);
  CHECK_THAT(exhausted.reason, Catch::Matchers::Contains("max_requeues 3"));
  CHECK_FALSE(decide_requeue(slurm, true, 0).requeue);
  const auto single = decide_requeue({{"SLURM_JOB_ID", "8"}}, true, 1);
  CHECK(single.command == std::vector<std::string>{"scontrol", "requeue", "8"});
}

namespace {

// A path component with everything a shell could misread.
std::string hostile(const std::string& what) {
  return what + " 'q' \"d\" $(touch canary1) `touch canary2` ;touch canary3; \\ $HOME *\nline2";
}

// Files named canary* anywhere under `root` (their names inside directory names do not count).
std::vector<fs::path> canaries(const fs::path& root) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().filename().string().rfind("canary", 0) == 0) found.push_back(entry.path());
  }
  return found;
}

}  // namespace

TEST_CASE("the array script hands hostile paths to the worker unchanged and never executes them") {
  test::TempDir root;
  const auto bin_dir = root / hostile("bin");
  const auto stand_in = bin_dir / "mill";
  // The stand-in worker records its argv (NUL-separated) and whether the venv was activated.
  test::write_text(stand_in,
                   "#!/bin/bash\nprintf '%s\\0' \"$@\" > \"$MILL_TEST_ARGV_FILE\"\n"
                   "printf '%s' \"${MILL_TEST_VENV:-none}\" > \"$MILL_TEST_ARGV_FILE.venv\"\n");
  fs::permissions(stand_in, fs::perms::owner_all);
  const auto venv = root / hostile("venv");
  test::write_text(venv / "bin" / "activate", "export MILL_TEST_VENV=active\n");

  ClusterProfile profile;
  profile.name = "local";
  profile.partition = "debug";
  profile.mem = "1G";
  profile.max_array_len = 2;
  SbatchRequest request;
  request.profile = &profile;
  request.array_size = 4;
  request.time_minutes = 10;
  request.mill_binary = stand_in;
  request.output_dir = root / hostile("out");
  request.cache_dir = root / hostile("cache");
  request.sweep_dir = request.output_dir / "sweeps" / "s1";
  request.manifest = request.sweep_dir / "manifest.json";
  request.venv_path = venv;
  const auto script_path = root / "job.sbatch";
  test::write_text(script_path, render_sbatch_script(request));

  const auto argv_file = root / "argv";
  const auto result = test::run_program({"bash", script_path.string()},
                                        {{"SLURM_ARRAY_TASK_ID", "2"}, {"MILL_TEST_ARGV_FILE", argv_file.string()}},
                                        root.path());
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto recorded = test::read_text(argv_file);
  std::vector<std::string> args;
  for (std::size_t start = 0; start < recorded.size();) {
    const auto end = recorded.find('\0', start);
    args.push_back(recorded.substr(start, end - start));
    start = end + 1;
  }
  const std::vector<std::string> expected = {"--output_dir", request.output_dir.string(), "--cache_dir",
                                             request.cache_dir.string(), "eval", "--manifest",
                                             request.manifest.string(), "--element", "2"};
  CHECK(args == expected);
  CHECK(test::read_text(argv_file.string() + ".venv") == "active");
  CHECK(canaries(root.path()).empty());
}
