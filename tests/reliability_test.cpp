// Fault injection with the real binary, real files and real processes: kill -9 of a worker, two workers racing on
// one job, a file-size limit and a full file system while writing, corrupted journal lines, and API keys that must
// not reach any file. Each fault test checks "nothing lost": the final result and the per-sample journal equal
// those of an undisturbed run of the same job.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "mill/eval/job.hpp"
#include "mill/eval/job_lock.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/base/text.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::read_text;
using mill::test::run_mill;
using mill::test::run_program;
using mill::test::RunResult;
using mill::test::TempDir;
using mill::test::write_text;

namespace {

const std::string kSlowModel = "mill-demo[delay_ms=100]";  // 100 ms per backend call: a job lasts a few seconds
constexpr std::size_t kDemoDocs = 52;

std::string job_dir(const std::string& model) { return "results/" + path_component(ModelSpec::parse(model).identity()) + "/demo"; }
std::filesystem::path result_file(const std::filesystem::path& out, const std::string& model) {
  return out / job_dir(model) / "0shot.json";
}
std::filesystem::path journal_file(const std::filesystem::path& out, const std::string& model) {
  return out / job_dir(model) / "0shot.journal.jsonl";
}

std::vector<std::string> lines_of(const std::filesystem::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path, std::ios::binary);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Complete lines that parse; a line being written is skipped.
std::size_t parsed_lines(const std::filesystem::path& path) {
  std::size_t count = 0;
  for (const auto& line : lines_of(path)) count += !nlohmann::json::parse(line, nullptr, false).is_discarded();
  return count;
}

// The journal as doc_id → entry; every line must parse and every document appear exactly once.
std::map<long long, nlohmann::json> journal_by_doc(const std::filesystem::path& path) {
  std::map<long long, nlohmann::json> entries;
  for (const auto& line : lines_of(path)) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    INFO(path.string() << ": " << line);
    REQUIRE_FALSE(entry.is_discarded());
    const auto doc_id = entry.at("doc_id").get<long long>();
    CHECK(entries.count(doc_id) == 0);  // no duplicates
    entries[doc_id] = entry;
  }
  return entries;
}

// `mill collect --check` over exactly this job: 0 when it is done, 3 when missing, stale or corrupt.
int collect_check(const std::filesystem::path& out) {
  const auto run = run_mill({"--output_dir", out.string(), "collect", "--check", "--models", kSlowModel, "--tasks", "demo",
                             "--n_shots", "0"});
  return run.exit_code;
}

// "Nothing lost": the job's result and journal in `out` equal those of the undisturbed run in `clean`.
void check_same_as_undisturbed(const std::filesystem::path& out, const std::filesystem::path& clean,
                               const std::string& model = kSlowModel) {
  REQUIRE(std::filesystem::exists(result_file(out, model)));
  CHECK(collect_check(out) == 0);  // the result cache counts it as done
  const auto got = nlohmann::json::parse(read_text(result_file(out, model)));
  const auto want = nlohmann::json::parse(read_text(result_file(clean, model)));
  CHECK(got["key"] == want["key"]);
  CHECK(got["metrics"] == want["metrics"]);  // every metric: value, stderr, n
  CHECK(got["n_samples"] == want["n_samples"]);
  CHECK(got["n_samples"] == kDemoDocs);
  CHECK(got["counts"]["samples"] == want["counts"]["samples"]);
  CHECK(got["provenance"]["tokens"]["total"] == want["provenance"]["tokens"]["total"]);
  const auto got_docs = journal_by_doc(journal_file(out, model));
  const auto want_docs = journal_by_doc(journal_file(clean, model));
  CHECK(got_docs.size() == kDemoDocs);
  CHECK(got_docs == want_docs);  // each document once, with the same request, response and scores
}

// The undisturbed run every fault test compares with.
void run_undisturbed(const TempDir& clean, const std::string& model = kSlowModel) {
  const auto run = run_mill({"--output_dir", clean.path().string(), "eval", model, "demo", "--docs_per_batch", "8"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
}

// Waits (up to a minute) until the journal holds at least `lines` complete lines.
bool wait_for_journal(const std::filesystem::path& journal, std::size_t lines) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(journal) && parsed_lines(journal) >= lines) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string host_name() {
  char buffer[256] = {};
  ::gethostname(buffer, sizeof buffer - 1);
  return buffer;
}

std::size_t count_lines_containing(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    count += text.substr(start, end - start).find(needle) != std::string::npos;
    start = end + 1;
  }
  return count;
}

// A small tmpfs mounted for one test (root only; `mounted()` says whether it worked), unmounted at the end.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& size) : point_(dir_ / "small") {
    std::filesystem::create_directories(point_);
    mounted_ = ::geteuid() == 0 && ::mount("mill-test", point_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(point_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  // Frees space the way an administrator would: the same file system, now larger.
  bool resize(const std::string& size) {
    return ::mount("mill-test", point_.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }
  const std::filesystem::path& path() const { return point_; }

 private:
  TempDir dir_;
  std::filesystem::path point_;
  bool mounted_ = false;
};

// A one-element manifest (the array worker's input) for the slow demo job.
std::filesystem::path write_manifest(const std::filesystem::path& out) {
  const nlohmann::json manifest = {
      {"schema", "mill.manifest/1"},
      {"settings", {{"extra_task_paths", nlohmann::json::array()}, {"data_dir", nullptr}}},
      {"elements", {{{"model", kSlowModel}, {"jobs", {{{"task", "demo"}, {"n_shot", 0}, {"key", ""}}}}}}}};
  const auto path = out / "sweeps/s1/manifest.json";
  write_text(path, manifest.dump(2));
  return path;
}

}  // namespace

TEST_CASE("JobLock: one holder at a time, the holder named, released when the holder goes", "[faults]") {
  TempDir dir;
  const auto path = job_lock_path(dir / "results/m/demo/0shot.json");
  CHECK(path == dir / "results/m/demo/0shot.lock");
  auto first = std::make_unique<JobLock>(path);
  REQUIRE(first->acquire(std::chrono::seconds(0)));
  JobLock second(path);  // another open file description: flock keeps it apart even in one process
  const auto started = std::chrono::steady_clock::now();
  CHECK_FALSE(second.acquire(std::chrono::seconds(1)));
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(900));  // it waited
  CHECK_THAT(second.holder(), Catch::StartsWith(fmt::format("{}@{} (user ", ::getpid(), host_name())));
  const std::atomic<bool> stop{true};
  CHECK_FALSE(second.acquire(std::chrono::seconds(60), &stop));  // a stop request ends the wait at once
  first.reset();
  CHECK(second.acquire(std::chrono::seconds(0)));
}

TEST_CASE("kill -9 of an array worker mid-job, then the same element again: nothing lost", "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  const auto manifest = write_manifest(out.path());
  const std::vector<std::string> worker = {"--output_dir", out.path().string(), "eval", "--manifest", manifest.string(),
                                           "--element", "0", "--docs_per_batch", "2"};
  {
    test::BackgroundMill first(worker, out / "first");
    REQUIRE(wait_for_journal(journal_file(out.path(), kSlowModel), 10));
    ::kill(first.pid(), SIGKILL);
    CHECK(first.wait() == 128 + SIGKILL);
  }
  CHECK(parsed_lines(journal_file(out.path(), kSlowModel)) < kDemoDocs);
  CHECK_FALSE(std::filesystem::exists(result_file(out.path(), kSlowModel)));
  // The killed worker wrote no final status: it is never taken for a finished element.
  CHECK_FALSE(std::filesystem::exists(out / "sweeps/s1/status/element-0.json"));

  const auto rerun = run_mill(worker);
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  const auto status = nlohmann::json::parse(read_text(out / "sweeps/s1/status/element-0.json"));
  CHECK(status["state"] == "completed");
  const auto result = nlohmann::json::parse(read_text(result_file(out.path(), kSlowModel)));
  CHECK(result["counts"]["resumed"].get<long long>() >= 10);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("Two workers on one job: the second waits for the lock, then finds the job done", "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  // An interactive mill eval and an array worker of the same job (schedule --local beside a running array).
  test::BackgroundMill first({"--output_dir", out.path().string(), "eval", kSlowModel, "demo", "--docs_per_batch", "2"},
                   out / "first");
  REQUIRE(wait_for_journal(journal_file(out.path(), kSlowModel), 2));
  const auto manifest = write_manifest(out.path());
  const auto second = run_mill({"--output_dir", out.path().string(), "eval", "--manifest", manifest.string(),
                                "--element", "0", "--lock_wait", "300"});
  const int first_code = first.wait();
  INFO(first.err() << second.err);
  CHECK(first_code == 0);
  CHECK(second.exit_code == 0);
  CHECK_THAT(second.out, Catch::Contains("done (already)"));
  CHECK(nlohmann::json::parse(read_text(out / "sweeps/s1/status/element-0.json"))["jobs"][0]["state"] == "skipped");
  // The first run evaluated every document itself: the second appended nothing.
  CHECK(nlohmann::json::parse(read_text(result_file(out.path(), kSlowModel)))["counts"]["evaluated"] == kDemoDocs);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("Two workers on one job: past --lock_wait the second leaves it to the holder, names it, exits 6",
          "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  test::BackgroundMill first({"--output_dir", out.path().string(), "eval", kSlowModel, "demo", "--docs_per_batch", "2"},
                   out / "first");
  REQUIRE(wait_for_journal(journal_file(out.path(), kSlowModel), 2));
  const auto second =
      run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo", "--lock_wait", "0"});
  CHECK(second.exit_code == 6);
  const auto holder = fmt::format("{}@{}", first.pid(), host_name());
  CHECK(count_lines_containing(second.err, "another mill process is evaluating this job (" + holder) == 1);
  CHECK_THAT(second.err, Catch::Contains("0shot.lock"));
  CHECK_THAT(second.out, Catch::Contains("\tbusy"));
  CHECK(first.wait() == 0);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("A lock left by a worker killed with -9 does not block the rerun", "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  {
    test::BackgroundMill first({"--output_dir", out.path().string(), "eval", kSlowModel, "demo", "--docs_per_batch", "2"},
                     out / "first");
    REQUIRE(wait_for_journal(journal_file(out.path(), kSlowModel), 4));
    ::kill(first.pid(), SIGKILL);
    CHECK(first.wait() == 128 + SIGKILL);
  }
  const auto lock = out / (job_dir(kSlowModel) + "/0shot.lock");
  REQUIRE(std::filesystem::exists(lock));  // the file stays; only the kernel's lock went with the process
  const auto rerun = run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo", "--lock_wait", "0"});
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("A file-size limit hit while writing the journal: one clear error, no result, a rerun completes",
          "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  // ulimit -f counts 1024-byte blocks: the journal (tens of kB) crosses 8 kB part-way through the job.
  const auto limited = run_program({"/bin/bash", "-c",
                                    "ulimit -f 8; exec \"$0\" --output_dir \"$1\" eval \"$2\" demo --docs_per_batch 4",
                                    test::mill_binary(), out.path().string(), kSlowModel});
  INFO(limited.err);
  CHECK(limited.exit_code == 4);  // not killed by SIGXFSZ: the failed write is reported
  CHECK(count_lines_containing(limited.err, "File too large") == 1);
  CHECK(count_lines_containing(limited.err, journal_file(out.path(), kSlowModel).string() + ": File too large") == 1);
  CHECK_FALSE(std::filesystem::exists(result_file(out.path(), kSlowModel)));
  CHECK(collect_check(out.path()) == 3);  // nothing counts as done

  const auto rerun = run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo"});
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("A file-size limit hit while writing the result: the old state stays, no temporary left", "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  // The journal is complete (a finished run whose result write failed); only the result is left to write.
  std::filesystem::create_directories(journal_file(out.path(), kSlowModel).parent_path());
  std::filesystem::copy_file(journal_file(clean.path(), kSlowModel), journal_file(out.path(), kSlowModel));
  const auto result_size = std::filesystem::file_size(result_file(clean.path(), kSlowModel));
  REQUIRE(result_size > 1024);  // over the 1-block limit below
  const auto limited = run_program({"/bin/bash", "-c", "ulimit -f 1; exec \"$0\" --output_dir \"$1\" eval \"$2\" demo",
                                    test::mill_binary(), out.path().string(), kSlowModel});
  INFO(limited.err);
  CHECK(limited.exit_code == 4);
  CHECK(count_lines_containing(limited.err, result_file(out.path(), kSlowModel).string() + ": File too large") == 1);
  CHECK_FALSE(std::filesystem::exists(result_file(out.path(), kSlowModel)));
  for (const auto& entry : std::filesystem::directory_iterator(result_file(out.path(), kSlowModel).parent_path())) {
    INFO(entry.path().string());
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
  CHECK(collect_check(out.path()) == 3);

  const auto rerun = run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo"});
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("A full file system (small tmpfs) while writing: one clear error, then a rerun after freeing space",
          "[faults]") {
  SmallTmpfs small("16k");
  if (!small.mounted()) {
    WARN("cannot mount a tmpfs here (needs root); the file-size-limit tests cover the write failures");
    return;
  }
  TempDir clean;
  run_undisturbed(clean);
  const auto out = small.path() / "out";
  const auto full = run_mill({"--output_dir", out.string(), "eval", kSlowModel, "demo", "--docs_per_batch", "4"});
  INFO(full.err);
  CHECK(full.exit_code == 4);
  CHECK(count_lines_containing(full.err, "No space left on device") == 1);
  CHECK(count_lines_containing(full.err, journal_file(out, kSlowModel).string() + ": No space left on device") == 1);
  CHECK_FALSE(std::filesystem::exists(result_file(out, kSlowModel)));
  CHECK(parsed_lines(journal_file(out, kSlowModel)) > 0);  // it failed part-way, not before the first batch
  {
    TempDir copy;  // collect writes aggregate.csv, which the full file system would refuse: check a copy
    std::filesystem::copy(out, copy.path(), std::filesystem::copy_options::recursive);
    CHECK(collect_check(copy.path()) == 3);
  }

  // Free space (grow the file system) and run the same command again.
  REQUIRE(small.resize("4m"));
  const auto rerun = run_mill({"--output_dir", out.string(), "eval", kSlowModel, "demo"});
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  check_same_as_undisturbed(out, clean.path());
}

TEST_CASE("A full file system under schedule --local: the element is never shown done or running, a rerun completes",
          "[faults]") {
  SmallTmpfs small("16k");
  if (!small.mounted()) {
    WARN("cannot mount a tmpfs here (needs root)");
    return;
  }
  TempDir clean;
  TempDir cache;
  run_undisturbed(clean);
  const auto out = small.path() / "out";
  const std::vector<std::string> schedule = {"--output_dir", out.string(), "--cache_dir", cache.path().string(),
                                             "schedule", kSlowModel, "demo", "--local", "--cluster", "local"};
  const auto full = run_mill(schedule);
  INFO(full.err);
  CHECK(full.exit_code == 4);
  CHECK(count_lines_containing(full.err, journal_file(out, kSlowModel).string() + ": No space left on device") == 1);
  CHECK_FALSE(std::filesystem::exists(result_file(out, kSlowModel)));
  // Whether or not the status file still fitted, `mill status` must not call the element running or completed.
  const auto status = run_mill({"--output_dir", out.string(), "--cache_dir", cache.path().string(), "status"});
  INFO(status.out);
  CHECK_THAT(status.out, Catch::Contains("0 running") && Catch::Contains("0 completed"));

  REQUIRE(small.resize("4m"));
  const auto rerun = run_mill(schedule);
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  check_same_as_undisturbed(out, clean.path());
}

TEST_CASE("Corrupted journal lines in the middle are dropped once, re-evaluated, and the numbers are unchanged",
          "[faults]") {
  TempDir clean;
  TempDir out;
  run_undisturbed(clean);
  auto lines = lines_of(journal_file(clean.path(), kSlowModel));
  REQUIRE(lines.size() == kDemoDocs);
  auto doc_of = [&](std::size_t i) { return nlohmann::json::parse(lines[i])["doc_id"].get<long long>(); };
  std::vector<long long> damaged_docs;
  auto damage = [&](std::size_t i, const std::string& replacement) {
    damaged_docs.push_back(doc_of(i));
    lines[i] = replacement;
  };
  auto edited = [&](std::size_t i, const std::function<void(nlohmann::json&)>& edit) {
    auto entry = nlohmann::json::parse(lines[i]);
    edit(entry);
    return entry.dump();
  };
  damage(3, std::string("\x01\x7f garbage \xff\xfe", 14));
  damage(7, lines[7].substr(0, lines[7].size() / 2));  // invalid JSON (cut in the middle of the file)
  damage(11, edited(11, [](nlohmann::json& e) { e["key"] = "0123456789abcdef"; }));  // another job's key
  damage(15, edited(15, [](nlohmann::json& e) { e["doc_id"] = std::to_string(e["doc_id"].get<long long>()); }));
  damage(19, edited(19, [](nlohmann::json& e) { e["doc"] = e["doc_id"]; e.erase("doc_id"); }));  // a wrong field name
  damage(23, edited(23, [](nlohmann::json& e) { e["scores"]["acc"] = "1"; }));  // a wrong score type
  {
    auto line = lines[27];
    const auto at = line.find("\"context\":\"") + 11;
    damaged_docs.push_back(doc_of(27));
    lines[27] = line.substr(0, at) + "\xc3\x28\xa0\xa1" + line.substr(at);  // invalid UTF-8 inside a string
  }
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  write_text(journal_file(out.path(), kSlowModel), text);

  const auto run = run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(count_lines_containing(run.err, "dropped 7 damaged line(s)") == 1);
  CHECK(count_lines_containing(run.err, "journal") == 1);  // logged once, on one line
  const auto result = nlohmann::json::parse(read_text(result_file(out.path(), kSlowModel)));
  CHECK(result["counts"]["evaluated"] == damaged_docs.size());
  CHECK(result["counts"]["resumed"] == kDemoDocs - damaged_docs.size());
  check_same_as_undisturbed(out.path(), clean.path());
  auto stale = journal_file(out.path(), kSlowModel);
  stale += ".stale";
  CHECK(read_text(stale) == text);  // the line of another key is kept, in the original file

  // The repaired journal reads clean: no note the next time.
  std::filesystem::remove(result_file(out.path(), kSlowModel));
  const auto again = run_mill({"--output_dir", out.path().string(), "eval", kSlowModel, "demo"});
  REQUIRE(again.exit_code == 0);
  CHECK(count_lines_containing(again.err, "damaged") == 0);
  check_same_as_undisturbed(out.path(), clean.path());
}

TEST_CASE("An API key in the environment reaches no file of schedule --dry_run, schedule --local or collect",
          "[faults][secrets][remote]") {
  const std::string secret = "sk-mill-reliability-8d41c0a7e3";
  TempDir dir;
  mill::test::FaultServer server;
  const auto spec = fmt::format("api[base_url={},model=mill-demo]", server.base_url());
  const std::map<std::string, std::string> env = {{"OPENAI_API_KEY", secret}, {"MILL_HOSTNAME", "testhost"}};
  const std::vector<std::string> global = {"--output_dir", (dir / "out").string(), "--cache_dir",
                                           (dir / "cache").string(), "--log_level", "debug"};
  auto mill_run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), global.begin(), global.end());
    return run_mill(args, env);
  };
  std::vector<RunResult> runs;
  runs.push_back(mill_run({"schedule", spec, "demo", "--limit", "6", "--dry_run", "--cluster", "local"}));
  CHECK(runs.back().exit_code == 0);
  runs.push_back(mill_run({"schedule", spec, "demo", "--limit", "6", "--local", "--cluster", "local"}));
  INFO(runs.back().err);
  CHECK(runs.back().exit_code == 0);
  runs.push_back(mill_run({"collect"}));
  CHECK(runs.back().exit_code == 0);
  CHECK(server.last_authorization() == "Bearer " + secret);  // the key was used, so finding nothing means something

  for (const auto& run : runs) {
    CHECK(run.out.find(secret) == std::string::npos);
    CHECK(run.err.find(secret) == std::string::npos);
  }
  std::set<std::filesystem::path> searched;
  CHECK(mill::test::files_containing(dir.path(), secret, searched).empty());
  // Sweep script and manifest, element status and heartbeat, result, journals, request journal, aggregate.csv.
  CHECK(searched.size() >= 8);
}
