// `mill serve` and its protocol: the api client against the server gives exactly the in-process demo model's
// numbers; the echo/logprobs mapping; clear JSON errors; the real binary serving and stopping on SIGTERM.
#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>

#include "mill/api_backend.hpp"
#include "mill/demo_backend.hpp"
#include "mill/openai_protocol.hpp"
#include "mill/vllm_backend.hpp"
#include "remote_support.hpp"
#include "support.hpp"

using namespace mill;
using namespace mill::test;

namespace {

ApiBackendConfig local_config(const std::string& base_url, const std::filesystem::path& journal_dir) {
  ApiBackendConfig config;
  config.base_url = base_url;
  config.concurrency = 4;
  config.retry.base_delay_s = 0.01;
  config.retry.timeout_s = 20;
  config.journal_dir = journal_dir;
  config.journal_scope = "test-scope";
  return config;
}

// Contexts and continuations with multi-byte characters, an empty context, and continuations the model would
// (and would not) produce greedily.
std::vector<LoglikelihoodRequest> loglikelihood_requests(DemoBackend& demo) {
  std::vector<LoglikelihoodRequest> requests = {{"Question: What is 3 + 4?\nAnswer:", " 7"},
                                                {"Question: What is 3 + 4?\nAnswer:", " seventeen"},
                                                {"", "Hello"},
                                                {"Grüße aus der Mühle ", "über alles"},
                                                {"naïve café", " ☕ and 🍰"}};
  for (const std::string context : {"The mill stands by the river", "A", "Answer: "}) {
    const auto greedy = demo.generate({{context, {}, 6}})[0].text;
    requests.push_back({context, greedy});
  }
  return requests;
}

}  // namespace

TEST_CASE("the api client against mill serve reproduces the in-process demo model exactly", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  DemoBackend served(ModelSpec::parse("mill-demo"));
  ServerThread server(served, "mill-demo");
  TempDir dir;
  ApiBackend api(local_config(server.base_url(), dir / "requests"));

  const auto caps = api.capabilities();
  CHECK(caps.loglikelihood);
  CHECK(caps.rolling);
  CHECK(caps.generation);

  const auto requests = loglikelihood_requests(demo);
  const auto expected = demo.loglikelihood(requests);
  const auto got = api.loglikelihood(requests);
  REQUIRE(got.size() == expected.size());
  int greedy_count = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("request " << i << ": " << requests[i].context << " | " << requests[i].continuation);
    CHECK(got[i].logprob == expected[i].logprob);
    CHECK(got[i].greedy == expected[i].greedy);
    CHECK(got[i].n_tokens == expected[i].n_tokens);
    greedy_count += expected[i].greedy ? 1 : 0;
  }
  CHECK(greedy_count >= 3);  // both answers occur in the set
  CHECK(greedy_count < static_cast<int>(requests.size()));

  const std::vector<RollingRequest> texts = {{"The wheel turns all day."}, {"ünïcödé text"}, {"x"}};
  const auto expected_rolling = demo.loglikelihood_rolling(texts);
  const auto got_rolling = api.loglikelihood_rolling(texts);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    CHECK(got_rolling[i].logprob == expected_rolling[i].logprob);
    CHECK(got_rolling[i].n_tokens == expected_rolling[i].n_tokens);
  }

  const std::vector<GenerationRequest> asks = {
      {"Question: What is 1 + 1?\nAnswer:", {"\n"}, 40}, {"The mill", {}, 12}, {"Q", {"e", "a"}, 30}};
  const auto expected_text = demo.generate(asks);
  const auto got_text = api.generate(asks);
  for (std::size_t i = 0; i < asks.size(); ++i) {
    CHECK(got_text[i].text == expected_text[i].text);
    CHECK(got_text[i].hit_token_limit == expected_text[i].hit_token_limit);
    CHECK(got_text[i].n_tokens == expected_text[i].n_tokens);
  }

  SECTION("the chat endpoint gives the same generations for a single user message") {
    auto config = local_config(server.base_url(), {});
    config.endpoint = "chat";
    ApiBackend chat(config);
    const auto chatted = chat.generate(asks);
    for (std::size_t i = 0; i < asks.size(); ++i) CHECK(chatted[i].text == expected_text[i].text);
  }

  SECTION("a second client with the same journal sends nothing") {
    ApiBackend again(local_config(server.base_url(), dir / "requests"));
    const auto replay = again.loglikelihood(requests);
    for (std::size_t i = 0; i < replay.size(); ++i) CHECK(replay[i].logprob == expected[i].logprob);
    CHECK(again.http_stats().attempts == 0);
    CHECK(again.journal_hits() == requests.size());
  }
}

TEST_CASE("mill serve's echo segments carry the backend's scores", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  OpenAiService service(demo, "mill-demo");
  const std::string context = "Grüße ";
  const std::string continuation = "aus";
  const auto reply = service.completions(nlohmann::json{
      {"prompt", context + continuation},
      {"echo", true},
      {"logprobs", 1},
      {"max_tokens", 0},
      {"mill_context_chars",
       utf8_length(context)}}.dump());
  REQUIRE(reply.status == 200);
  const auto& logprobs = reply.body["choices"][0]["logprobs"];
  CHECK(reply.body["choices"][0]["text"] == context + continuation);
  CHECK(logprobs["tokens"] == nlohmann::json::array({context, continuation}));
  CHECK(logprobs["token_logprobs"][0].is_null());
  CHECK(logprobs["text_offset"] == nlohmann::json::array({0, 6}));  // characters, not bytes
  const auto expected = demo.loglikelihood({{context, continuation}})[0];
  CHECK(logprobs["token_logprobs"][1].get<double>() == expected.logprob);
  CHECK(logprobs["mill_token_counts"][1] == expected.n_tokens);
  // The top-1 entry is the greedy continuation of the same length: equal to the segment exactly when greedy.
  const auto top = logprobs["top_logprobs"][1];
  REQUIRE(top.size() == 1);
  CHECK((top.begin().key() == continuation) == expected.greedy);
  const auto greedy_text = demo.generate({{context, {}, expected.n_tokens}})[0].text;
  CHECK(top.begin().key() == greedy_text);

  SECTION("without the split the whole prompt is scored from the start") {
    const auto whole = service.completions(
        nlohmann::json{{"prompt", "abc"}, {"echo", true}, {"logprobs", 0}, {"max_tokens", 0}}.dump());
    REQUIRE(whole.status == 200);
    CHECK(whole.body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>() ==
          demo.loglikelihood_rolling({{"abc"}})[0].logprob);
  }
  SECTION("generated text with logprobs is one more scored segment") {
    const auto generated =
        service.completions(nlohmann::json{{"prompt", "The mill"}, {"logprobs", 1}, {"max_tokens", 5}}.dump());
    REQUIRE(generated.status == 200);
    const auto text = generated.body["choices"][0]["text"].get<std::string>();
    CHECK(text == demo.generate({{"The mill", {}, 5}})[0].text);
    CHECK(generated.body["choices"][0]["finish_reason"] == "length");
    CHECK(generated.body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>() ==
          demo.loglikelihood({{"The mill", text}})[0].logprob);
    CHECK(generated.body["choices"][0]["logprobs"]["text_offset"][0] == 8);
  }
}

TEST_CASE("mill serve answers bad requests with clear JSON errors", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  ServerThread server(demo, "mill-demo");
  httplib::Client client("127.0.0.1", server.port());
  auto check_error = [](const httplib::Result& result, int status, const std::string& fragment) {
    REQUIRE(result);
    CHECK(result->status == status);
    const auto body = nlohmann::json::parse(result->body, nullptr, false);
    REQUIRE(body.is_object());
    REQUIRE(body.contains("error"));
    CHECK_THAT(body["error"]["message"].get<std::string>(), Catch::Contains(fragment));
  };
  check_error(client.Post("/v1/completions", "{not json", "application/json"), 400, "not a JSON object");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "model": "gpt-4"})", "application/json"), 404,
              "serves `mill-demo`");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "temperature": 0.7})", "application/json"), 400,
              "temperature");
  check_error(client.Post("/v1/completions", R"({"prompt": [1, 2, 3]})", "application/json"), 400, "token-id");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "max_tokens": -1})", "application/json"), 400,
              "max_tokens");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "stream": true})", "application/json"), 400, "stream");
  check_error(client.Post("/v1/chat/completions", R"({"messages": []})", "application/json"), 400, "messages");
  check_error(client.Get("/v1/nothing"), 404, "no route GET /v1/nothing");

  const auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  const auto models = client.Get("/v1/models");
  REQUIRE(models);
  const auto listed = nlohmann::json::parse(models->body);
  CHECK(listed["data"][0]["id"] == "mill-demo");
  CHECK(listed["data"][0]["owned_by"] == "mill");

  const auto batch =
      client.Post("/v1/completions", R"({"prompt": ["ab", "cd"], "max_tokens": 3, "stop": "zz"})", "application/json");
  REQUIRE(batch);
  const auto answer = nlohmann::json::parse(batch->body);
  REQUIRE(answer["choices"].size() == 2);
  CHECK(answer["choices"][1]["text"] == demo.generate({{"cd", {"zz"}, 3}})[0].text);
}

TEST_CASE("mill serve (the binary) serves mill-demo and stops cleanly on SIGTERM", "[remote][serve]") {
  TempDir dir;
  const int port = find_free_port();
  ServerProcess server({test::mill_binary(), "serve", "mill-demo", "--port", std::to_string(port)}, dir / "serve.log");
  HttpClient probe(RetryPolicy{}, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (probe.get_once("http://127.0.0.1:" + std::to_string(port) + "/health", 1).first != 200) {
    REQUIRE(server.running());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  ApiBackend api(local_config("http://127.0.0.1:" + std::to_string(port), {}));
  const std::vector<LoglikelihoodRequest> requests = {{"Question: 2+2=", " 4"}, {"abc", "def"}};
  const auto got = api.loglikelihood(requests);
  const auto expected = demo.loglikelihood(requests);
  for (std::size_t i = 0; i < requests.size(); ++i) CHECK(got[i].logprob == expected[i].logprob);

  ::kill(server.pid(), SIGTERM);
  const auto stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server.running() && std::chrono::steady_clock::now() < stop_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK_FALSE(server.running());
  CHECK(server.exit_description() == "exited with code 0");
  CHECK_THAT(read_text(dir / "serve.log"), Catch::Contains("listening on http://127.0.0.1:" + std::to_string(port)));

  const auto busy = run_mill({"serve", "mill-demo", "--port", "not-a-port"});
  CHECK(busy.exit_code == 2);
}

TEST_CASE("base URLs and secrets are normalised and redacted", "[remote]") {
  CHECK(normalize_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1");
  CHECK(normalize_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1");
  CHECK(normalize_base_url("https://example.org/api/v2") == "https://example.org/api/v2");
  CHECK_THROWS_WITH(normalize_base_url("127.0.0.1:8000"), Catch::Contains("not an http:// or https:// URL"));
  CHECK(server_root("http://h:1/v1") == "http://h:1");
  CHECK(redact_url("https://user:pw@example.org/v1?key=abc") == "https://example.org/v1");
  CHECK(redact_secret("key sk-123 and sk-123", "sk-123") == "key *** and ***");
  CHECK(utf8_length("Grüße") == 5);
  CHECK(utf8_prefix_bytes("Grüße", 3) == 4);
  CHECK(utf8_prefix_bytes("ab", 9) == 2);
  CHECK(cut_at_stop("one\ntwo. three", {".", "\n"}) == "one");
}

TEST_CASE("mill eval through api[...] against a mill server scores like the in-process model", "[remote][eval]") {
  TempDir dir;
  write_text(dir / "tasks" / "remote_fixtures.yaml", R"(task: remote_gen
output_type: generative
eval_split: test
prompt:
  template: "Q: {question}\n{options}A:"
  options_field: choices
  target_delimiter: ""
answer_field: answer
generation: {stop: ["\n\n"], max_new_tokens: 20}
answer_extraction:
  patterns: ['answer is \(?([A-C])\)?', '(?s)\b[A-C]\b(?!.*\b[A-C]\b)']
dataset:
  format: inline
  documents:
    test:
      - {question: "Which letter comes first?", choices: ["a", "b", "c"], answer: 0}
      - {question: "Which is a river?", choices: ["stone", "Rhine", "flour"], answer: 1}
      - {question: "Which turns the stones?", choices: ["wind", "sand", "the wheel"], answer: 2}
)");
  write_text(dir / "tasks" / "remote_ppl.yaml", R"(task: remote_ppl
output_type: perplexity
eval_split: test
text_field: text
dataset:
  format: inline
  documents:
    test:
      - {text: "The mill wheel turns all day."}
      - {text: "Grüße aus der Mühle."}
)");
  DemoBackend served(ModelSpec::parse("mill-demo"));
  ServerThread server(served, "mill-demo");
  const std::map<std::string, std::string> env = {{"MILL_REMOTE_DIR", (dir / "remote").string()}};
  const std::vector<std::string> common = {"demo,remote_gen,remote_ppl", "--extra_task_paths",
                                           (dir / "tasks").string()};
  auto eval = [&](const std::string& model, const std::string& out) {
    std::vector<std::string> args = {"--output_dir", (dir / out).string(), "eval", model};
    args.insert(args.end(), common.begin(), common.end());
    return run_mill(args, env);
  };
  const auto reference = eval("mill-demo", "local");
  const auto remote = eval("api[base_url=" + server.base_url() + "]", "remote");
  INFO(reference.err << "\n" << remote.err);
  REQUIRE(reference.exit_code == 0);
  REQUIRE(remote.exit_code == 0);
  auto metrics = [](const std::string& out) {
    std::map<std::string, nlohmann::json> by_task;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      const auto task_start = line.find('\t') + 1;
      const auto task = line.substr(task_start, line.find('\t', task_start) - task_start);
      by_task[task] = nlohmann::json::parse(read_text(line.substr(line.rfind('\t') + 1)))["metrics"];
    }
    return by_task;
  };
  const auto expected = metrics(reference.out);
  const auto got = metrics(remote.out);
  REQUIRE(expected.size() == 3);
  CHECK(got == expected);
}
