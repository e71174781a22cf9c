// A results tree shared by a team: two real users in one group, a setgid directory and umask 002. User B resumes
// the job user A was killed in, every file mill made is group-writable and in the directory's group, a lock
// planted as a symlink is refused, and a directory B cannot read is reported by collect --check. Needs root (to
// create the users); elsewhere it is skipped.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "mill/model/model_spec.hpp"
#include "mill/base/text.hpp"
#include "support.hpp"

using namespace mill;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

constexpr const char* kGroup = "milltest";
constexpr const char* kUserA = "milltest_a";
constexpr const char* kUserB = "milltest_b";

// Creates the group and the two users once (they stay: creating users is slow, and a rerun reuses them). Returns
// why the test cannot run, or "".
std::string ensure_team() {
  if (::geteuid() != 0) return "the shared-tree test creates users and needs root";
  if (!::getgrnam(kGroup) && test::run_program({"groupadd", kGroup}).exit_code != 0) return "groupadd failed";
  for (const char* user : {kUserA, kUserB}) {
    if (::getpwnam(user)) continue;
    const auto made = test::run_program({"useradd", "--no-create-home", "--gid", kGroup, "--shell", "/bin/sh", user});
    if (made.exit_code != 0) return "useradd failed: " + made.err;
  }
  return {};
}

// argv that runs `args` as `user` (group milltest) with umask 002.
std::vector<std::string> as_user(const char* user, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"setpriv", std::string("--reuid=") + user, std::string("--regid=") + kGroup,
                                   "--init-groups", "/usr/bin/env", "HOME=/nonexistent", "/bin/sh", "-c",
                                   "umask 002 && exec \"$@\"", "sh"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::string> mill_args(const fs::path& home, std::vector<std::string> rest) {
  std::vector<std::string> args = {test::mill_binary(), "--cache_dir", (home / "cache").string()};
  args.insert(args.end(), rest.begin(), rest.end());
  return args;
}

struct stat status_of(const fs::path& path) {
  struct stat info {};
  REQUIRE(::lstat(path.c_str(), &info) == 0);
  return info;
}

std::size_t lines_in(const fs::path& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty() && line.back() == '}';
  return n;
}

}  // namespace

TEST_CASE("two users in a setgid results tree: B resumes A's killed job, files are the group's, a symlink lock is refused",
          "[faults]") {
  if (const auto why = ensure_team(); !why.empty()) {
    WARN("skipped: " << why);
    return;
  }
  // The other users must reach the mill under test: a checkout inside a folder only its owner may enter (what
  // `mktemp -d` makes) is not theirs to run, and that is the checkout's doing, not mill's.
  if (const auto probe = test::run_program(as_user(kUserA, {test::mill_binary(), "--version"})); probe.exit_code != 0) {
    WARN("skipped: user " << kUserA << " cannot run " << test::mill_binary() << " (" << probe.err << ")");
    return;
  }
  const auto gid = ::getgrnam(kGroup)->gr_gid;
  const auto uid_a = ::getpwnam(kUserA)->pw_uid;
  test::TempDir root;
  fs::permissions(root.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                   fs::perms::others_read | fs::perms::others_exec);
  // The team directory: group milltest, setgid, group-writable; each user has a home for the cache.
  const auto team = root / "team";
  fs::create_directories(team);
  REQUIRE(::chown(team.c_str(), 0, gid) == 0);
  REQUIRE(::chmod(team.c_str(), 02775) == 0);
  for (const char* user : {kUserA, kUserB}) {
    fs::create_directories(root / user);
    REQUIRE(::chown((root / user).c_str(), ::getpwnam(user)->pw_uid, gid) == 0);
  }
  const auto out = team / "out";
  const std::string model = "mill-demo[delay_ms=60]";
  const auto job_dir = out / "results" / path_component(ModelSpec::parse(model).identity()) / "demo";
  const auto journal = job_dir / "0shot.journal.jsonl";

  // 1. User A starts the job and is killed part-way.
  const auto argv_a = as_user(kUserA, mill_args(root / kUserA, {"--output_dir", out.string(), "eval", model, "demo",
                                                                "--docs_per_batch", "2"}));
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    std::vector<char*> raw;
    for (const auto& arg : argv_a) raw.push_back(const_cast<char*>(arg.c_str()));
    raw.push_back(nullptr);
    ::execvp(raw[0], raw.data());
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && !(fs::exists(journal) && lines_in(journal) >= 6)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  int wait_status = 0;
  ::waitpid(pid, &wait_status, 0);
  REQUIRE(lines_in(journal) >= 6);
  REQUIRE_FALSE(fs::exists(job_dir / "0shot.json"));

  // What A left: owned by A, in the team's group, group-writable (the umask decides), directories setgid.
  for (const auto& file : {journal, job_dir / "0shot.lock"}) {
    const auto info = status_of(file);
    INFO(file);
    CHECK(info.st_uid == uid_a);
    CHECK(info.st_gid == gid);
    CHECK((info.st_mode & 0777) == 0664);
  }
  for (auto dir = job_dir; dir != team; dir = dir.parent_path()) {
    const auto info = status_of(dir);
    INFO(dir);
    CHECK(info.st_gid == gid);
    CHECK((info.st_mode & 07777) == 02775);
  }

  // 2. User B resumes it: same numbers as an undisturbed run.
  const auto resumed = test::run_program(
      as_user(kUserB, mill_args(root / kUserB, {"--output_dir", out.string(), "--log_level", "info", "eval", model, "demo"})));
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Contains("resuming"));
  const auto result = nlohmann::json::parse(test::read_text(job_dir / "0shot.json"));
  CHECK(result["counts"]["resumed"].get<int>() >= 6);
  const auto result_info = status_of(job_dir / "0shot.json");
  CHECK(result_info.st_gid == gid);
  CHECK((result_info.st_mode & 0777) == 0664);
  test::TempDir clean;
  REQUIRE(test::run_mill({"--output_dir", clean.path().string(), "eval", model, "demo"}).exit_code == 0);
  const auto undisturbed = nlohmann::json::parse(
      test::read_text(clean.path() / fs::relative(job_dir / "0shot.json", out)));
  CHECK(result["metrics"] == undisturbed["metrics"]);

  // 3. A plants a symlink where B's next job keeps its lock: B refuses it in one line and the target is untouched.
  const auto victim = root / kUserA / "victim.txt";
  REQUIRE(test::run_program(as_user(kUserA, {"/bin/sh", "-c", "echo precious > \"$0\" && ln -s \"$0\" \"$1\"",
                                              victim.string(), (job_dir / "1shot.lock").string()}))
              .exit_code == 0);
  REQUIRE(::chmod(victim.c_str(), 0666) == 0);  // writable by B: only the refusal protects it
  const auto refused = test::run_program(
      as_user(kUserB, mill_args(root / kUserB, {"--output_dir", out.string(), "eval", model, "demo", "--n_shots", "1"})));
  CHECK(refused.exit_code == 4);
  CHECK_THAT(refused.err, Contains("symbolic link") && Contains("1shot.lock"));
  CHECK(test::read_text(victim) == "precious\n");

  // 4. A's other model directory that B cannot read: collect --check names it and fails, instead of passing it over.
  REQUIRE(test::run_program(as_user(kUserA, mill_args(root / kUserA, {"--output_dir", out.string(), "eval",
                                                                       "mill-demo[seed=5]", "demo"})))
              .exit_code == 0);
  const auto hidden = out / "results" / path_component(ModelSpec::parse("mill-demo[seed=5]").identity());
  REQUIRE(test::run_program(as_user(kUserA, {"chmod", "0700", hidden.string()})).exit_code == 0);
  const auto check =
      test::run_program(as_user(kUserB, mill_args(root / kUserB, {"--output_dir", out.string(), "collect", "--check"})));
  INFO(check.out << check.err);
  CHECK(check.exit_code == 3);
  CHECK_THAT(check.err, Contains("cannot read " + hidden.string()) && Contains("unreadable"));
  CHECK_THAT(check.out, Contains("1 unreadable"));
}
