#pragma once
// `vllm[path=MODEL,dtype=...,tensor_parallel_size=...]`: starts `vllm serve` (the one on PATH, i.e. the worker's
// virtual environment) on a free loopback port, waits for GET /health, evaluates through the OpenAI-compatible
// client (api_backend.hpp) and always stops the server: in the destructor, when start-up fails or times out, and
// when the worker's stop flag (SIGUSR1/SIGTERM) is raised while waiting. The server runs in its own process
// group, which is sent SIGTERM and, after a grace period, SIGKILL; the server also gets SIGTERM if mill dies
// (PR_SET_PDEATHSIG), and mill adopts and reaps its orphaned descendants (PR_SET_CHILD_SUBREAPER).
#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mill/remote/api_backend.hpp"
#include "mill/model/model.hpp"

namespace mill {

// A child process in its own process group, output appended to a log file.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& argv, const std::filesystem::path& log_file);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // TERM to the whole group, KILL after `grace_s`; reaps what it can. Idempotent.
  void stop(double grace_s = 15);
  // False once the leader has exited (reaped here).
  bool running();
  // "exited with code N" / "was killed by signal N" once it has exited.
  std::string exit_description() const;
  pid_t pid() const { return pid_; }
  // The last non-empty line of the log, for messages.
  std::string last_log_line() const;

 private:
  void reap_group();
  pid_t pid_ = -1;
  std::optional<int> status_;
  bool stopped_ = false;
  std::filesystem::path log_file_;
};

// A port that was free on `host` a moment ago (the kernel's choice for port 0).
int find_free_port(const std::string& host = "127.0.0.1");

struct VllmLaunchOptions {
  std::string executable = "vllm";
  double startup_timeout_s = 1200;  // spec arg startup_timeout
  double stop_grace_s = 30;
  double poll_interval_s = 0.5;
  const std::atomic<bool>* stop = nullptr;  // the worker's stop flag
  std::filesystem::path log_dir;            // default remote_state_dir()/servers
};

class VllmBackend final : public ModelBackend {
 public:
  VllmBackend(const ModelSpec& spec, VllmLaunchOptions options);
  ~VllmBackend() override;

  BackendCapabilities capabilities() const override { return api_->capabilities(); }
  nlohmann::json provenance() const override;
  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>& requests) override {
    return api_->loglikelihood(requests);
  }
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>& requests) override {
    return api_->loglikelihood_rolling(requests);
  }
  std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& requests) override {
    return api_->generate(requests);
  }

  int port() const { return port_; }

 private:
  VllmLaunchOptions options_;
  int port_ = 0;
  double startup_seconds_ = 0;
  nlohmann::json launch_facts_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<ApiBackend> api_;
};

}  // namespace mill
