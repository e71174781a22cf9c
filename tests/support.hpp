#pragma once
// Helpers shared by the tests: temporary directories, running the real mill binary, reading files.
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace mill::test {

// Where the build put things. Only support.cpp is compiled with these paths, so every other test file compiles to
// the same bytes in any checkout (compiler caches share them between worktrees).
const char* mill_binary();
std::string source_dir();
// The runtime plugin built next to the tests; empty when this build has none (sanitized builds never do).
std::string runtime_plugin_path();

// A fresh directory under $TMPDIR, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program with the given argv (no shell), extra environment variables set, and stdin from /dev/null.
RunResult run_program(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                      const std::filesystem::path& cwd = {});

// Runs the built mill binary.
RunResult run_mill(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});

// The mill binary in the background: stdin from /dev/null, stdout and stderr to <log_stem>.out and .err; killed
// (if still running) when dropped.
class BackgroundMill {
 public:
  BackgroundMill(const std::vector<std::string>& args, const std::filesystem::path& log_stem);
  ~BackgroundMill();
  BackgroundMill(const BackgroundMill&) = delete;
  BackgroundMill& operator=(const BackgroundMill&) = delete;
  int pid() const { return pid_; }
  // The exit code, or 128 + the signal that ended it.
  int wait();
  std::string out() const;
  std::string err() const;

 private:
  int pid_ = -1;
  std::filesystem::path out_, err_;
};

std::string read_text(const std::filesystem::path& path);
void write_text(const std::filesystem::path& path, const std::string& text);

// The regular files under `root` whose bytes contain `needle` (a secret that must not be written); every file
// read is added to `searched`, so a test can also check that what it expected to search was there.
std::vector<std::string> files_containing(const std::filesystem::path& root, const std::string& needle,
                                          std::set<std::filesystem::path>& searched);

// ../shared/<relative> when present; empty path otherwise (tests then SKIP cleanly).
std::filesystem::path shared_path(const std::string& relative);

// DESIGN.md's clusters.yaml, verbatim (tests/data/clusters/design-seed.yaml): the file users already have.
std::string design_seed_clusters_yaml();

// Writes a small data tree under `data_dir` that every split of the named tasks or benchmarks reads (five
// documents per split and filter value), so that plans of real benchmarks pass the preflight without the real data.
void write_task_data(const std::filesystem::path& data_dir, const std::vector<std::string>& tasks);

}  // namespace mill::test
