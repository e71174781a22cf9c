// `mill serve` under many connections at once: a client like the vllm backend opens dozens of connections in a
// burst, and a server whose accept thread lags (a loaded node) must queue them all. With cpp-httplib's listen
// backlog of 5 the kernel dropped the rest of the handshakes; those requests then sat in TCP retransmission backoff
// for minutes while every server thread was idle.
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "mill/remote/http_client.hpp"
#include "mill/remote/vllm_backend.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using namespace mill::test;

namespace {

// Connections the kernel has completed for the loopback listener on `port` and that wait for accept() (the
// rx_queue column of a LISTEN row in /proc/net/tcp); -1 when there is no such listener.
int accept_queue_length(int port) {
  std::ifstream in("/proc/net/tcp");
  const auto local = fmt::format("0100007F:{:04X}", port);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local_address, remote_address, state, queues;
    fields >> slot >> local_address >> remote_address >> state >> queues;
    if (local_address != local || state != "0A") continue;
    return static_cast<int>(std::stol(queues.substr(queues.find(':') + 1), nullptr, 16));
  }
  return -1;
}

// SIGSTOP takes effect asynchronously: true once every thread of `pid` is stopped.
bool all_threads_stopped(pid_t pid) {
  std::error_code ec;
  bool any = false;
  for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    const auto stat = read_text(task.path() / "stat");
    const auto state_at = stat.rfind(')') + 2;
    if (state_at >= stat.size() || stat[state_at] != 'T') return false;
    any = true;
  }
  return any;
}

// Resumes a stopped process on every exit path, so its ServerProcess can stop it.
struct ResumeOnExit {
  pid_t pid;
  ~ResumeOnExit() { ::kill(pid, SIGCONT); }
};

}  // namespace

TEST_CASE("mill serve queues a burst of connections while it is stalled and answers every request on them",
          "[remote][serve]") {
  TempDir dir;
  ServerProcess serve({test::mill_binary(), "serve", "mill-demo", "--port", "0"}, dir / "serve.log");
  int port = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (port == 0) {
    const auto log = read_text(dir / "serve.log");
    const std::string marker = "listening on http://127.0.0.1:";
    if (const auto at = log.find(marker); at != std::string::npos && log.find('\n', at) != std::string::npos) {
      port = std::stoi(log.substr(at + marker.size()));
    }
    REQUIRE(serve.running());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // The server stands still (as an accept thread starved of CPU does) while the client opens all its connections.
  constexpr int kConnections = 48;
  ::kill(serve.pid(), SIGSTOP);
  ResumeOnExit resume{serve.pid()};
  while (!all_threads_stopped(serve.pid())) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  RetryPolicy policy;
  policy.max_retries = 0;  // a request lost on the way fails the test instead of being retried
  policy.timeout_s = 30;   // answers come within a second or two of the resume; the stall lasted minutes
  HttpClient client(policy, kConnections);
  std::vector<HttpRequest> requests;
  for (int i = 0; i < kConnections; ++i) {
    requests.push_back({"POST", fmt::format("http://127.0.0.1:{}/v1/completions", port),
                        nlohmann::json{{"prompt", fmt::format("request {}", i)}, {"max_tokens", 2}}.dump()});
  }
  std::vector<int> answered(kConnections, 0);
  std::exception_ptr failure;
  std::thread sender([&] {
    try {
      client.run(requests, [&](std::size_t index, const std::string& body) -> std::optional<std::string> {
        const auto answer = nlohmann::json::parse(body, nullptr, false);
        if (answer.is_discarded() || !answer.contains("choices")) return "no choices in " + body;
        ++answered[index];
        return std::nullopt;
      });
    } catch (...) {
      failure = std::current_exception();
    }
  });
  int queued = 0;
  const auto queue_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((queued = accept_queue_length(port)) < kConnections && std::chrono::steady_clock::now() < queue_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(queued == kConnections);  // every handshake completed although nobody called accept()
  ::kill(serve.pid(), SIGCONT);
  sender.join();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      FAIL(e.what());
    }
  }
  CHECK(client.stats().attempts == static_cast<std::size_t>(kConnections));
  CHECK(std::count(answered.begin(), answered.end(), 1) == kConnections);
}

TEST_CASE("a second mill serve on a port in use fails instead of sharing the port", "[remote][serve]") {
  TempDir dir;
  const int port = find_free_port();
  auto serve = [&](const std::string& name) {
    return std::make_unique<ServerProcess>(
        std::vector<std::string>{test::mill_binary(), "serve", "mill-demo", "--port", std::to_string(port)}, dir / name);
  };
  const auto first = serve("first.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (read_text(dir / "first.log").find("listening on") == std::string::npos) {
    REQUIRE(first->running());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const auto second = serve("second.log");
  while (second->running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  INFO(read_text(dir / "second.log"));
  CHECK(second->exit_description() == "exited with code 2");
  CHECK_THAT(read_text(dir / "second.log"), Catch::Contains("address is in use"));
  CHECK(first->running());
}
