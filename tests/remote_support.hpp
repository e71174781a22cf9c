#pragma once
// Helpers for the remote-backend tests: the OpenAI-compatible server in a thread of the test process, a
// misbehaving server that wraps the real protocol with injected faults, and process checks.
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "mill/model/demo_backend.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/remote/openai_server.hpp"

namespace mill::test {

// run_openai_server() on a free loopback port, in a thread; stopped by the destructor.
class ServerThread {
 public:
  ServerThread(ModelBackend& backend, const std::string& name) {
    std::promise<int> ready;
    auto port = ready.get_future();
    thread_ = std::thread([this, &backend, name, &ready] {
      ServeOptions options;
      options.port = 0;
      options.served_model_name = name;
      options.threads = 8;
      options.on_listening = [&ready](const std::string&, int p) { ready.set_value(p); };
      try {
        run_openai_server(backend, options, &stop_);
      } catch (...) {
        ready.set_exception(std::current_exception());
      }
    });
    port_ = port.get();
  }
  ~ServerThread() {
    stop_.store(true);
    thread_.join();
  }
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int port_ = 0;
};

// The real protocol (OpenAiService over mill-demo) behind a cpp-httplib server whose `fault` hook may answer a
// request itself (an error, garbage, a dropped connection, a delay). Counts attempts and answers per prompt.
class FaultServer {
 public:
  // (prompt, attempt number for that prompt starting at 1, response) -> true when the fault answered.
  using Fault = std::function<bool(const std::string& prompt, int attempt, httplib::Response& response)>;

  explicit FaultServer(Fault fault = {})
      : demo_(ModelSpec::parse("mill-demo")), service_(demo_, "mill-demo"), fault_(std::move(fault)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(8); };
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& response) {
      response.set_content(service_.models().body.dump(), "application/json");
    });
    server_.Post("/v1/completions", [this](const httplib::Request& request, httplib::Response& response) {
      handle(request, response, false);
    });
    server_.Post("/v1/chat/completions", [this](const httplib::Request& request, httplib::Response& response) {
      handle(request, response, true);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FaultServer() {
    server_.stop();
    thread_.join();
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int attempts(const std::string& prompt) {
    std::lock_guard lock(mutex_);
    return attempts_[prompt];
  }
  int answered(const std::string& prompt) {
    std::lock_guard lock(mutex_);
    return answered_[prompt];
  }
  int total_attempts() {
    std::lock_guard lock(mutex_);
    int total = 0;
    for (const auto& [prompt, n] : attempts_) total += n;
    return total;
  }
  std::string last_authorization() {
    std::lock_guard lock(mutex_);
    return authorization_;
  }
  void set_fault(Fault fault) {
    std::lock_guard lock(mutex_);
    fault_ = std::move(fault);
  }

 private:
  void handle(const httplib::Request& request, httplib::Response& response, bool chat) {
    const auto body = nlohmann::json::parse(request.body, nullptr, false);
    std::string prompt;
    if (body.is_object() && body.contains("prompt") && body["prompt"].is_string()) prompt = body["prompt"];
    if (body.is_object() && body.contains("messages")) prompt = body["messages"][0].value("content", "");
    int attempt = 0;
    Fault fault;
    {
      std::lock_guard lock(mutex_);
      attempt = ++attempts_[prompt];
      authorization_ = request.get_header_value("Authorization");
      fault = fault_;
    }
    if (fault && fault(prompt, attempt, response)) return;
    const auto reply = chat ? service_.chat_completions(request.body) : service_.completions(request.body);
    response.status = reply.status;
    response.set_content(reply.body.dump(), "application/json");
    if (reply.status == 200) {
      std::lock_guard lock(mutex_);
      ++answered_[prompt];
    }
  }

  DemoBackend demo_;
  OpenAiService service_;
  Fault fault_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::map<std::string, int> attempts_;
  std::map<std::string, int> answered_;
  std::string authorization_;
};

// True when no process `pid` exists (a zombie counts as gone: it no longer runs).
inline bool process_gone(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() || text[close + 2] == 'Z' || text[close + 2] == 'X';
}

}  // namespace mill::test
