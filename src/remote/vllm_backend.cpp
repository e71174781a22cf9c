#include "mill/remote/vllm_backend.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/remote/openai_protocol.hpp"
#include "mill/remote/request_journal.hpp"
#include "mill/base/text.hpp"
#include "mill/base/host.hpp"

namespace mill {

namespace {

using Clock = std::chrono::steady_clock;

// Process groups of running servers, for kill_launched_servers() (which may run in a signal handler or at exit).
constexpr int kMaxServers = 64;
std::atomic<pid_t> g_server_groups[kMaxServers];

// Sends SIGKILL to every server process group still running (async-signal-safe; also registered with atexit).
void kill_launched_servers() {
  for (auto& slot : g_server_groups) {
    const pid_t group = slot.load();
    if (group > 0) ::kill(-group, SIGKILL);
  }
}

void remember_group(pid_t group) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(kill_launched_servers); });
  for (auto& slot : g_server_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, group)) return;
  }
}

void forget_group(pid_t group) {
  for (auto& slot : g_server_groups) {
    pid_t expected = group;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::optional<std::filesystem::path> find_on_path(const std::string& program) {
  if (program.find('/') != std::string::npos) return std::filesystem::path(program);
  const char* path = std::getenv("PATH");
  for (const auto& dir : split_list(path ? path : "", ':')) {
    const auto candidate = std::filesystem::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// The `vllm serve ...` command line a spec asks for (without the executable resolution).
std::vector<std::string> vllm_command(const ModelSpec& spec, const std::string& executable, int port) {
  const auto args = read_vllm_args(spec);
  std::vector<std::string> argv = {executable, "serve", args.path, "--host", "127.0.0.1", "--port", std::to_string(port)};
  const std::vector<std::pair<std::string, std::string>> passed = {
      {"dtype", "--dtype"},
      {"tensor_parallel_size", "--tensor-parallel-size"},
      {"pipeline_parallel_size", "--pipeline-parallel-size"},
      {"data_parallel_size", "--data-parallel-size"},
      {"gpu_memory_utilization", "--gpu-memory-utilization"},
      {"max_model_len", "--max-model-len"},
      {"revision", "--revision"},
      {"seed", "--seed"}};
  for (const auto& [arg, flag] : passed) {
    if (auto value = spec.arg(arg)) {
      argv.push_back(flag);
      argv.push_back(*value);
    }
  }
  // A spec that names no parallelism gets the profile's GPUs per element (docs/schedule.md, "Resources per model"):
  // spread the model over all the GPUs the element was given, not one of them.
  if (!args.parallelism_given) {
    if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible && *visible) {
      const auto devices = split_list(visible, ',');
      if (devices.size() > 1) {
        argv.push_back("--tensor-parallel-size");
        argv.push_back(std::to_string(devices.size()));
      }
    }
  }
  if (auto trust = spec.arg("trust_remote_code"); trust && (*trust == "true" || *trust == "1")) {
    argv.push_back("--trust-remote-code");
  }
  return argv;
}

}  // namespace

ServerProcess::ServerProcess(const std::vector<std::string>& argv, const std::filesystem::path& log_file)
    : log_file_(log_file) {
  if (argv.empty()) throw Error("no server command given", ExitCode::internal);
  std::error_code ec;
  std::filesystem::create_directories(log_file.parent_path(), ec);
  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (log_fd < 0) {
    throw Error(fmt::format("cannot write the server log {}: {}", log_file.string(), std::strerror(errno)),
                ExitCode::eval_failed);
  }
  // Orphaned descendants of the server (workers whose parent died) are re-parented to us, so we can reap them.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    throw Error(fmt::format("cannot start {}: fork failed: {}", argv[0], std::strerror(errno)), ExitCode::eval_failed);
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(125);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGUSR1, SIGHUP}) ::signal(sig, SIG_DFL);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execvp(args[0], args.data());
    const char message[] = "mill: cannot execute the server command\n";
    [[maybe_unused]] auto written = ::write(2, message, sizeof message - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists before we might signal it
  ::close(log_fd);
  pid_ = pid;
  remember_group(pid);
}

ServerProcess::~ServerProcess() { stop(); }

void ServerProcess::reap_group() {
  int status = 0;
  while (true) {
    const pid_t reaped = ::waitpid(-pid_, &status, WNOHANG);
    if (reaped <= 0) break;
    if (reaped == pid_) status_ = status;
  }
}

bool ServerProcess::running() {
  if (pid_ <= 0 || status_) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
  return !status_;
}

std::string ServerProcess::exit_description() const {
  if (!status_) return "is running";
  if (WIFEXITED(*status_)) return fmt::format("exited with code {}", WEXITSTATUS(*status_));
  if (WIFSIGNALED(*status_)) return fmt::format("was killed by signal {}", WTERMSIG(*status_));
  return "stopped";
}

void ServerProcess::stop(double grace_s) {
  if (pid_ <= 0 || stopped_) return;
  stopped_ = true;
  auto group_gone = [&] {
    reap_group();
    return ::kill(-pid_, 0) != 0 && errno == ESRCH;
  };
  // Signals the group, then waits up to `seconds` for it to be gone; true when it is.
  auto signal_and_wait = [&](int signal, double seconds, std::chrono::milliseconds poll) {
    ::kill(-pid_, signal);
    const auto start = Clock::now();
    while (!group_gone() && seconds_since(start) < seconds) std::this_thread::sleep_for(poll);
    return group_gone();
  };
  if (!group_gone() && !signal_and_wait(SIGTERM, grace_s, std::chrono::milliseconds(50))) {
    spdlog::warn("the server (process group {}) did not stop within {} s of SIGTERM; sending SIGKILL", pid_, grace_s);
    signal_and_wait(SIGKILL, 5, std::chrono::milliseconds(20));
  }
  running();  // reaps the leader if it has exited
  forget_group(pid_);
}

std::string ServerProcess::last_log_line() const {
  std::ifstream in(log_file_, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<long long>(in.tellg());
  const long long from = std::max(0LL, size - 4096);
  in.seekg(from);
  std::string tail(static_cast<std::size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  std::string last;
  for (const auto& line : split_list(tail, '\n')) {
    if (!trim(line).empty()) last = trim(line);
  }
  return last.size() > 300 ? last.substr(0, 300) + "..." : last;
}

int find_free_port(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(fmt::format("cannot open a socket: {}", std::strerror(errno)), ExitCode::eval_failed);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  ::inet_pton(AF_INET, host.c_str(), &address.sin_addr);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const auto reason = std::strerror(errno);
    ::close(fd);
    throw Error(fmt::format("cannot find a free port on {}: {}", host, reason), ExitCode::eval_failed);
  }
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

VllmBackend::VllmBackend(const ModelSpec& spec, VllmLaunchOptions options) : options_(std::move(options)) {
  const auto args = read_vllm_args(spec);
  options_.startup_timeout_s = args.startup_timeout_s.value_or(options_.startup_timeout_s);
  port_ = args.port;
  ApiBackendConfig client;
  client.backend_name = "vllm";
  client.model = args.path;
  apply_client_args(spec, args.client, 64, client);
  client.scores_prompts = true;

  const auto executable = find_on_path(options_.executable);
  if (!executable) {
    throw Error(fmt::format("model spec {}: `{}` is not on PATH (install vLLM in the environment that --venv_path "
                            "activates, or activate it before running mill)",
                            quote_value(spec.to_string()), options_.executable),
                ExitCode::eval_failed);
  }
  if (port_ == 0) port_ = find_free_port();
  const auto argv = vllm_command(spec, executable->string(), port_);
  const auto log_dir = options_.log_dir.empty() ? remote_state_dir() / "servers" : options_.log_dir;
  const auto log_file = log_dir / fmt::format("vllm-{}-{}-{}.log", path_component(mill::host_name()), ::getpid(), port_);
  launch_facts_ = {{"command", join(argv, " ")}, {"log", log_file.string()}, {"port", port_}};
  // The model's size, for the cost model of later plans (docs/schedule.md): read from the checkpoint's headers when
  // it is a local folder or in the hub cache here; vLLM may also download it itself, and then it stays unknown.
  try {
    launch_facts_["parameters"] = checkpoint_parameters(locate_checkpoint(args.path, spec.arg("revision").value_or("")).folder);
  } catch (const Error&) {
  }
  spdlog::info("starting {} (log {})", join(argv, " "), log_file.string());
  server_ = std::make_unique<ServerProcess>(argv, log_file);

  const auto root = fmt::format("http://127.0.0.1:{}", port_);
  HttpClient probe(RetryPolicy{}, 1);
  const auto start = Clock::now();
  auto fail = [&](const std::string& what, ExitCode code) {
    server_->stop(options_.stop_grace_s);
    const auto last = server_->last_log_line();
    throw Error(fmt::format("vllm serve {} {} (log {}{})", *spec.arg("path"), what, log_file.string(),
                            last.empty() ? "" : ", last line: " + quote_value(last)),
                code);
  };
  while (true) {
    if (options_.stop && options_.stop->load()) {
      fail("was stopped by a signal while starting; rerun to resume", ExitCode::preempted);
    }
    if (!server_->running()) fail(server_->exit_description() + " before it became healthy", ExitCode::eval_failed);
    const auto [status, body] = probe.get_once(root + "/health", 2.0);
    if (status == 200) break;
    if (seconds_since(start) > options_.startup_timeout_s) {
      fail(fmt::format("did not become healthy on 127.0.0.1:{} within {} s (raise startup_timeout in the model spec); "
                       "it was stopped",
                       port_, options_.startup_timeout_s),
           ExitCode::eval_failed);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(options_.poll_interval_s));
  }
  startup_seconds_ = seconds_since(start);
  spdlog::info("vllm serve is healthy on port {} after {:.1f} s", port_, startup_seconds_);
  client.base_url = root + "/v1";
  api_ = std::make_unique<ApiBackend>(std::move(client));
}

VllmBackend::~VllmBackend() {
  api_.reset();
  if (server_) server_->stop(options_.stop_grace_s);
}

nlohmann::json VllmBackend::provenance() const {
  auto facts = api_->provenance();
  facts["server_command"] = launch_facts_["command"];
  facts["server_log"] = launch_facts_["log"];
  facts["server_startup_seconds"] = startup_seconds_;
  if (launch_facts_.contains("parameters")) facts["parameters"] = launch_facts_["parameters"];
  return facts;
}

}  // namespace mill
