// The OpenAI-compatible client against a misbehaving server (the real protocol with injected faults): it retries
// what is worth retrying, stops with a clear error otherwise, and a rerun does not repeat answered requests.
#include "mill/remote/api_backend.hpp"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>

#include "mill/model/demo_backend.hpp"
#include "mill/base/error.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using namespace mill::test;

namespace {

ApiBackendConfig fault_config(const FaultServer& server, const std::filesystem::path& journal_dir) {
  ApiBackendConfig config;
  config.base_url = server.base_url();
  config.model = "mill-demo";
  config.concurrency = 4;
  config.retry.max_retries = 4;
  config.retry.base_delay_s = 0.01;
  config.retry.timeout_s = 10;
  config.journal_dir = journal_dir;
  config.journal_scope = "fault-test";
  return config;
}

std::vector<LoglikelihoodRequest> some_requests(int n) {
  std::vector<LoglikelihoodRequest> requests;
  for (int i = 0; i < n; ++i)
    requests.push_back({fmt::format("Question {}: what comes next?", i), fmt::format(" {}", i * 7)});
  return requests;
}

std::string prompt_of(const LoglikelihoodRequest& request) { return request.context + request.continuation; }

void check_matches_demo(const std::vector<LoglikelihoodRequest>& requests,
                        const std::vector<LoglikelihoodResult>& got) {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  const auto expected = demo.loglikelihood(requests);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].logprob == expected[i].logprob);
    CHECK(got[i].greedy == expected[i].greedy);
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("429 with Retry-After is honoured and the run completes", "[remote][faults]") {
  FaultServer server([](const std::string&, int attempt, httplib::Response& response) {
    if (attempt > 1) return false;
    response.status = 429;
    response.set_header("Retry-After", "1");
    response.set_content(R"({"error": {"message": "rate limited"}})", "application/json");
    return true;
  });
  TempDir dir;
  ApiBackend api(fault_config(server, dir / "requests"));
  const auto requests = some_requests(3);
  const auto start = std::chrono::steady_clock::now();
  const auto got = api.loglikelihood(requests);
  // The backoff alone would be ~10 ms: waiting about a second shows that Retry-After was obeyed.
  CHECK(seconds_since(start) >= 0.9);
  check_matches_demo(requests, got);
  for (const auto& request : requests) {
    CHECK(server.attempts(prompt_of(request)) == 2);
    CHECK(server.answered(prompt_of(request)) == 1);
  }
  CHECK(api.http_stats().retries == 3);
}

TEST_CASE("500s, dropped connections, slow answers and malformed JSON are retried", "[remote][faults]") {
  const auto requests = some_requests(8);
  FaultServer server([&](const std::string& prompt, int attempt, httplib::Response& response) {
    // Each request meets a different fault on its first tries.
    std::size_t which = 0;
    while (which < requests.size() && prompt_of(requests[which]) != prompt) ++which;
    switch (which % 4) {
      case 0:
        if (attempt > 2) return false;
        response.status = 500;
        response.set_content(R"({"error": {"message": "internal"}})", "application/json");
        return true;
      case 1:
        if (attempt > 1) return false;
        // Announce 100 bytes, then give up: the client sees the connection drop mid-answer.
        response.set_content_provider(100, "application/json",
                                      [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
        return true;
      case 2:
        if (attempt > 1) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        return false;  // answers properly, but after the client's timeout
      default:
        if (attempt > 1) return false;
        response.set_content(R"({"choices": [{"text": "tru)", "application/json");
        return true;
    }
  });
  TempDir dir;
  auto config = fault_config(server, dir / "requests");
  config.retry.timeout_s = 0.5;
  ApiBackend api(config);
  const auto got = api.loglikelihood(requests);
  check_matches_demo(requests, got);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    INFO("request " << i);
    CHECK(server.attempts(prompt_of(requests[i])) == (i % 4 == 0 ? 3 : 2));
  }
  CHECK(api.http_stats().retries == 10);
}

TEST_CASE("a failure that persists stops the run with a clear error and a rerun resumes", "[remote][faults]") {
  const auto requests = some_requests(10);
  const auto broken_prompt = prompt_of(requests[6]);
  std::atomic<bool> broken{true};
  FaultServer server([&](const std::string& prompt, int, httplib::Response& response) {
    if (!broken.load() || prompt != broken_prompt) return false;
    response.status = 503;
    response.set_content(R"({"error": {"message": "the GPU fell off the bus"}})", "application/json");
    return true;
  });
  TempDir dir;
  auto config = fault_config(server, dir / "requests");
  config.retry.max_retries = 2;
  config.concurrency = 2;
  {
    ApiBackend api(config);
    try {
      api.loglikelihood(requests);
      FAIL("expected an error");
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK(e.code() == ExitCode::eval_failed);
      CHECK_THAT(message, Catch::Contains("POST " + server.base_url() + "/completions failed after 3 attempts"));
      CHECK_THAT(message, Catch::Contains("HTTP 503: the GPU fell off the bus"));
      CHECK(message.find('\n') == std::string::npos);
    }
  }
  CHECK(server.attempts(broken_prompt) == 3);
  int answered_before = 0;
  for (const auto& request : requests) answered_before += server.answered(prompt_of(request));
  CHECK(answered_before >= 1);  // requests that were answered before the failure are in the journal

  broken.store(false);
  ApiBackend rerun(config);
  const auto got = rerun.loglikelihood(requests);
  check_matches_demo(requests, got);
  for (const auto& request : requests) {
    INFO(prompt_of(request));
    CHECK(server.answered(prompt_of(request)) == 1);  // nothing answered twice
  }
  CHECK(rerun.journal_hits() == static_cast<std::size_t>(answered_before));
  CHECK(rerun.http_stats().attempts == requests.size() - answered_before);
}

TEST_CASE("client errors are not retried and retries end with the reason", "[remote][faults]") {
  TempDir dir;
  SECTION("a 400 stops at once with the server's message") {
    FaultServer server([](const std::string&, int, httplib::Response& response) {
      response.status = 400;
      response.set_content(R"({"error": {"message": "This model's maximum context length is 4096 tokens"}})",
                           "application/json");
      return true;
    });
    ApiBackend api(fault_config(server, dir / "requests"));
    CHECK_THROWS_WITH(api.generate({{"hello", {}, 5}}),
                      Catch::Contains("HTTP 400: This model's maximum context length is 4096 tokens"));
    CHECK(server.total_attempts() == 1);
  }
  SECTION("malformed JSON every time") {
    FaultServer server([](const std::string&, int, httplib::Response& response) {
      response.set_content("<html>proxy error</html>", "text/html");
      return true;
    });
    auto config = fault_config(server, dir / "requests");
    config.retry.max_retries = 1;
    ApiBackend api(config);
    CHECK_THROWS_WITH(api.generate({{"hello", {}, 5}}), Catch::Contains("the body is not valid JSON"));
    CHECK(server.total_attempts() == 2);
  }
  SECTION("a server that is not there") {
    ApiBackendConfig config;
    config.base_url = "http://127.0.0.1:1/v1";
    config.model = "m";
    config.retry.max_retries = 1;
    config.retry.base_delay_s = 0.01;
    ApiBackend api(config);
    CHECK_THROWS_WITH(api.generate({{"hello", {}, 5}}), Catch::Contains("Couldn't connect"));
  }
}

TEST_CASE("hosted APIs are generation-only, stop sequences beyond four are applied by the client", "[remote]") {
  // A server that does not say it is vLLM or mill (owned_by "openai") gets no echo requests.
  httplib::Server hosted;
  std::atomic<int> stops_sent{-1};
  hosted.Get("/v1/models", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(R"({"data": [{"id": "gpt-x", "owned_by": "openai"}]})", "application/json");
  });
  hosted.Post("/v1/chat/completions", [&](const httplib::Request& request, httplib::Response& response) {
    const auto body = nlohmann::json::parse(request.body);
    stops_sent.store(static_cast<int>(body.value("stop", nlohmann::json::array()).size()));
    response.set_content(
        R"({"choices": [{"message": {"role": "assistant", "content": "one two; three. four"}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": 6}})",
        "application/json");
  });
  const int port = hosted.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { hosted.listen_after_bind(); });
  ApiBackendConfig config;
  config.base_url = fmt::format("http://127.0.0.1:{}", port);
  config.endpoint = "chat";
  ApiBackend api(config);
  const auto caps = api.capabilities();
  CHECK_FALSE(caps.loglikelihood);
  CHECK(caps.generation);
  CHECK_THROWS_WITH(api.loglikelihood({{"a", "b"}}), Catch::Contains("only generative tasks"));
  const auto got = api.generate({{"count", {"A", "B", "C", "D", ";"}, 20}});
  CHECK(got[0].text == "one two");
  CHECK(got[0].n_tokens == 6);
  CHECK(stops_sent.load() == 4);
  CHECK(api.provenance()["model"] == "gpt-x");
  hosted.stop();
  thread.join();
}

TEST_CASE("the API key never reaches messages, logs or files", "[remote][secrets]") {
  const std::string secret = "sk-mill-test-4f9c2e7d1b";
  TempDir dir;
  FaultServer server;
  const auto spec = fmt::format("api[base_url={},model=mill-demo,max_retries=1]", server.base_url());
  const std::map<std::string, std::string> env = {{"OPENAI_API_KEY", secret},
                                                  {"MILL_REMOTE_DIR", (dir / "remote").string()}};

  // A server that repeats the key in its error (some do, partially) must not get it into mill's message.
  server.set_fault([&](const std::string&, int, httplib::Response& response) {
    response.status = 401;
    response.set_content(nlohmann::json{{"error", {{"message", "Incorrect API key provided: " + secret}}}}.dump(),
                         "application/json");
    return true;
  });
  const auto refused =
      run_mill({"--output_dir", (dir / "out").string(), "--log_level", "debug", "eval", spec, "demo"}, env);
  CHECK(refused.exit_code == 4);
  CHECK_THAT(refused.err, Catch::Contains("HTTP 401: Incorrect API key provided: ***"));
  CHECK(server.last_authorization() == "Bearer " + secret);  // the key was used, so the checks below mean something

  server.set_fault({});
  const auto accepted =
      run_mill({"--output_dir", (dir / "out").string(), "--log_level", "debug", "eval", spec, "demo"}, env);
  INFO(accepted.err);
  REQUIRE(accepted.exit_code == 0);

  for (const auto& output : {refused.out, refused.err, accepted.out, accepted.err}) {
    CHECK(output.find(secret) == std::string::npos);
  }
  std::set<std::filesystem::path> searched;
  CHECK(mill::test::files_containing(dir.path(), secret, searched).empty());
  CHECK(searched.size() >= 3);  // the result, the sample journal and the request journal at least
  CHECK(std::filesystem::exists(dir / "remote" / "requests"));
}

TEST_CASE("echoed prompts from a vLLM-shaped answer are split where the context's text ends", "[remote]") {
  // "Question: 2+2=" + " 4", one generated token ("\n") after the prompt.
  nlohmann::json answer = {
      {"choices",
       {{{"text", "Question: 2+2= 4\n"},
         {"logprobs",
          {{"tokens", {"Question", ":", " 2", "+", "2", "=", " 4", "\n"}},
           {"token_logprobs", {nullptr, -1.0, -2.0, -0.5, -0.25, -0.125, -3.0, -9.0}},
           {"text_offset", {0, 8, 9, 11, 12, 13, 14, 16}},
           {"top_logprobs",
            {nullptr, {{":", -1.0}}, {{" 2", -2.0}}, {{"+", -0.5}}, {{"2", -0.25}}, {{"=", -0.125}},
             {{" 4", -3.0}, {" 5", -1.0}}, {{"\n", -9.0}}}}}}}}},
      {"usage", {{"prompt_tokens", 7}, {"completion_tokens", 1}}}};
  auto score = std::get<EchoScore>(score_echoed_prompt(answer, 14, 16, true, false));
  CHECK(score.logprob == -3.0);
  CHECK(score.n_tokens == 1);
  CHECK_FALSE(score.greedy);  // " 5" was the top-1

  SECTION("a decoded BOS (or prefix space) shifts the offsets; the split follows") {
    auto& logprobs = answer["choices"][0]["logprobs"];
    logprobs["tokens"].insert(logprobs["tokens"].begin(), "<s>");
    logprobs["token_logprobs"].insert(logprobs["token_logprobs"].begin(), nullptr);
    logprobs["top_logprobs"].insert(logprobs["top_logprobs"].begin(), nullptr);
    nlohmann::json shifted = {0};
    for (const auto& offset : logprobs["text_offset"]) shifted.push_back(offset.get<int>() + 3);
    logprobs["text_offset"] = shifted;
    logprobs["top_logprobs"][7] = {{" 4", -3.0}};
    score = std::get<EchoScore>(score_echoed_prompt(answer, 14, 16, true, false));
    CHECK(score.logprob == -3.0);
    CHECK(score.greedy);
  }
  SECTION("a token that straddles the boundary belongs to the continuation") {
    // Context "Question: 2+2", continuation "= 4": the tokens "=" and " 4".
    score = std::get<EchoScore>(score_echoed_prompt(answer, 13, 16, false, false));
    CHECK(score.logprob == -3.125);
    CHECK(score.n_tokens == 2);
    nlohmann::json merged = answer;
    auto& logprobs = merged["choices"][0]["logprobs"];
    logprobs["tokens"] = {"Question", ": 2+2= 4", "\n"};
    logprobs["token_logprobs"] = {nullptr, -7.0, -9.0};
    logprobs["text_offset"] = {0, 8, 16};
    score = std::get<EchoScore>(score_echoed_prompt(merged, 14, 16, false, false));
    CHECK(score.logprob == -7.0);  // ": 2+2= 4" holds both context and continuation text
  }
  SECTION("an unscored continuation token is an error, not a zero") {
    answer["choices"][0]["logprobs"]["token_logprobs"][6] = nullptr;
    CHECK_THAT(std::get<std::string>(score_echoed_prompt(answer, 14, 16, true, false)), Catch::Contains("unscored"));
  }
}
