#include "support.hpp"

#include <nlohmann/json.hpp>
#include <set>

#include "mill/eval/dataset.hpp"
#include "mill/eval/tasks.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace mill::test {

const char* mill_binary() { return MILL_BINARY; }

std::string source_dir() { return MILL_SOURCE_DIR; }

std::string runtime_plugin_path() {
#if defined(MILL_RUNTIME_PLUGIN_PATH) && !defined(MILL_SANITIZED)
  return MILL_RUNTIME_PLUGIN_PATH;
#else
  return {};
#endif
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::random_device random;
  path_ = std::filesystem::path(base && *base ? base : "/tmp") / ("mill-test-" + std::to_string(random()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RunResult run_program(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                      const std::filesystem::path& cwd) {
  TempDir scratch;
  const auto out_path = scratch / "stdout";
  const auto err_path = scratch / "stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::map<std::string, std::string> environment;
  for (char** entry = environ; *entry; ++entry) {
    std::string text = *entry;
    const auto equals = text.find('=');
    if (equals != std::string::npos) environment[text.substr(0, equals)] = text.substr(equals + 1);
  }
  for (const auto& [key, value] : env) environment[key] = value;
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : environment) env_strings.push_back(key + "=" + value);
  std::vector<char*> env_pointers;
  for (auto& text : env_strings) env_pointers.push_back(text.data());
  env_pointers.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> arg_pointers;
  for (auto& text : args) arg_pointers.push_back(text.data());
  arg_pointers.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, args[0].c_str(), &actions, nullptr, arg_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) throw std::runtime_error("cannot start " + args[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  RunResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_text(out_path);
  result.err = read_text(err_path);
  return result;
}

RunResult run_mill(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {mill_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_program(argv, env);
}

BackgroundMill::BackgroundMill(const std::vector<std::string>& args, const std::filesystem::path& log_stem)
    : out_(log_stem.string() + ".out"), err_(log_stem.string() + ".err") {
  std::vector<std::string> argv = {mill_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    const int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int null_in = ::open("/dev/null", O_RDONLY);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::dup2(null_in, 0);
    std::vector<char*> raw;
    for (auto& arg : argv) raw.push_back(arg.data());
    raw.push_back(nullptr);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
}

BackgroundMill::~BackgroundMill() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

int BackgroundMill::wait() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string BackgroundMill::out() const { return read_text(out_); }

std::string BackgroundMill::err() const { return read_text(err_); }

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> files_containing(const std::filesystem::path& root, const std::string& needle,
                                          std::set<std::filesystem::path>& searched) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    searched.insert(entry.path());
    if (read_text(entry.path()).find(needle) != std::string::npos) found.push_back(entry.path().string());
  }
  return found;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::filesystem::path shared_path(const std::string& relative) {
  const auto path = std::filesystem::path(MILL_SHARED_DIR) / relative;
  std::error_code ec;
  return std::filesystem::exists(path, ec) ? path : std::filesystem::path();
}

std::string design_seed_clusters_yaml() {
  return read_text(std::filesystem::path(source_dir()) / "tests" / "data" / "clusters" / "design-seed.yaml");
}

void write_task_data(const std::filesystem::path& data_dir, const std::vector<std::string>& tasks) {
  const auto registry = TaskRegistry::load();
  std::set<std::filesystem::path> written;
  for (const auto* task : registry.expand(tasks)) {
    const auto& dataset = task->definition.at("dataset");
    const auto format = dataset.value("format", std::string());
    if (format == "inline") continue;
    for (const char* field : {"eval_split", "fewshot_split"}) {
      const auto split = task->definition.value(field, std::string());
      if (split.empty()) continue;
      const auto path = data_file_path(*task, split, data_dir);
      std::filesystem::create_directories(path.parent_path());
      std::ofstream out(path, std::ios::app);
      if (written.insert(path).second && format == "csv" && dataset.value("layout", std::string()) != "mmlu") {
        throw std::runtime_error("write_task_data: no writer for " + path.string());
      }
      for (int i = 0; i < 5; ++i) {
        if (format == "csv") {
          out << "Question " << i << " of " << task->name << "?,one,two,three,four,A\n";
        } else {
          nlohmann::json document = {{"question", "Question " + std::to_string(i)},
                                     {"options", {"one", "two", "three", "four"}},
                                     {"answer", "A"},
                                     {"answer_index", 0}};
          const auto filter = dataset.value("filter", nlohmann::json::object());
          for (const auto& [key, value] : filter.items()) document[key] = value;
          out << document.dump() << "\n";
        }
      }
    }
  }
}

}  // namespace mill::test
