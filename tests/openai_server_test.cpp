// `mill serve` and its protocol: the api client against the server gives exactly the in-process demo model's
// numbers; the echo/logprobs mapping; clear JSON errors; the real binary serving and stopping on SIGTERM.
#include <catch2/catch.hpp>
#include <chrono>
#include <sstream>

#include "mill/remote/api_backend.hpp"
#include "mill/model/demo_backend.hpp"
#include "mill/model/demo_model.hpp"
#include "mill/remote/openai_protocol.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/remote/vllm_backend.hpp"
#include "remote_support.hpp"
#include "runtime_support.hpp"
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

// Waits (up to 30 s) until the `mill serve` process answers /health on `port`; fails the test if it dies first.
void wait_until_healthy(ServerProcess& server, int port) {
  HttpClient probe(RetryPolicy{}, 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (probe.get_once("http://127.0.0.1:" + std::to_string(port) + "/health", 1).first != 200) {
    REQUIRE(server.running());
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
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
        nlohmann::json{{"prompt", "abc"}, {"echo", true}, {"logprobs", 0}, {"max_tokens", 0}, {"mill_text", true}}
            .dump());
    REQUIRE(whole.status == 200);
    CHECK(whole.body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>() ==
          demo.loglikelihood_rolling({{"abc"}})[0].logprob);
  }
  SECTION("generated text with logprobs is one more scored segment") {
    const auto generated = service.completions(
        nlohmann::json{{"prompt", "The mill"}, {"logprobs", 1}, {"max_tokens", 5}, {"mill_text", true}}.dump());
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
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "temperature": -1})", "application/json"), 400,
              "`temperature` must be a number");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "top_p": 0})", "application/json"), 400, "`top_p`");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "seed": 1.5})", "application/json"), 400, "`seed`");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "n": 2})", "application/json"), 400, "`n` must be 1");
  check_error(client.Post("/v1/completions", R"({"prompt": [1, 2, 999]})", "application/json"), 400,
              "token id 999, outside the model's vocabulary 0..256");
  check_error(client.Post("/v1/completions", R"({"prompt": {"a": 1}})", "application/json"), 400, "`prompt` must be");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "max_tokens": -1})", "application/json"), 400,
              "max_tokens");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "stream": true, "logprobs": 1})", "application/json"),
              400, "`logprobs` cannot be streamed");
  check_error(client.Post("/v1/completions", R"({"prompt": "a", "stream": "yes"})", "application/json"), 400,
              "`stream` must be true or false");
  check_error(client.Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "a"}],
              "top_logprobs": 2})", "application/json"), 400, "`top_logprobs` needs `logprobs: true`");
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
  wait_until_healthy(server, port);
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

namespace {

// The events of a server-sent-events body: the JSON after each "data: ", and whether "[DONE]" closed it.
std::vector<nlohmann::json> sse_events(const std::string& body, bool* done) {
  std::vector<nlohmann::json> events;
  *done = false;
  std::size_t at = 0;
  while (at < body.size()) {
    const auto end = body.find("\n\n", at);
    REQUIRE(end != std::string::npos);  // every event ends with a blank line
    const auto event = body.substr(at, end - at);
    REQUIRE(event.rfind("data: ", 0) == 0);
    CHECK_FALSE(*done);  // nothing after [DONE]
    if (event == "data: [DONE]") {
      *done = true;
    } else {
      events.push_back(nlohmann::json::parse(event.substr(6)));
    }
    at = end + 2;
  }
  return events;
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (!dir.empty() && ::access((std::filesystem::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("mill serve scores prompt tokens the way lm-eval's local-completions reads them", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  OpenAiService service(demo, "mill-demo");
  const std::string context = "Grüße aus der ";
  const auto greedy = demo.generate({{context, {}, 4}})[0].text;
  for (const std::string continuation : {std::string("Mühle"), greedy}) {
    INFO("continuation " << continuation);
    // lm-eval sends token ids (context + continuation), echo, logprobs 1, max_tokens 1, and reads
    // token_logprobs[ctxlen:-1] where ctxlen counts the context's tokens.
    auto ids = demo.encode(context, true);
    const auto ctxlen = ids.size();
    for (const auto id : demo.encode(continuation, false)) ids.push_back(id);
    const auto reply = service.completions(nlohmann::json{{"model", "mill-demo"},
                                                          {"prompt", nlohmann::json::array({ids})},
                                                          {"echo", true},
                                                          {"logprobs", 1},
                                                          {"max_tokens", 1},
                                                          {"temperature", 0},
                                                          {"seed", 1234}}
                                               .dump());
    REQUIRE(reply.status == 200);
    const auto& logprobs = reply.body["choices"][0]["logprobs"];
    REQUIRE(logprobs["tokens"].size() == ids.size() + 1);
    REQUIRE(logprobs["token_logprobs"].size() == ids.size() + 1);
    REQUIRE(logprobs["text_offset"].size() == ids.size() + 1);
    CHECK(logprobs["token_logprobs"][0].is_null());
    CHECK(logprobs["top_logprobs"][0].is_null());
    for (std::size_t t = 1; t < ids.size(); ++t) {
      CHECK(logprobs["token_logprobs"][t].get<double>() == demo.logprob(ids[t - 1], ids[t]));
      CHECK(logprobs["top_logprobs"][t].size() == 1);
    }
    double sum = 0;
    bool is_greedy = true;
    for (std::size_t t = ctxlen; t + 1 < logprobs["token_logprobs"].size(); ++t) {
      const double value = logprobs["token_logprobs"][t].get<double>();
      sum += value;
      double best = -1e300;
      for (const auto& [token, top] : logprobs["top_logprobs"][t].items()) best = std::max(best, top.get<double>());
      if (value != best) is_greedy = false;
    }
    const auto expected = demo.loglikelihood({{context, continuation}})[0];
    CHECK(sum == Approx(expected.logprob).epsilon(1e-12));
    CHECK(is_greedy == expected.greedy);
    CHECK(reply.body["usage"]["prompt_tokens"] == ids.size());
    CHECK(reply.body["usage"]["completion_tokens"] == 1);
    CHECK(reply.body["usage"]["total_tokens"] == ids.size() + 1);
  }

  SECTION("a text prompt: the tokenizer's start token, bytes of multi-byte characters, character offsets") {
    const auto reply = service.completions(
        nlohmann::json{{"prompt", "Grüße"}, {"echo", true}, {"logprobs", 2}, {"max_tokens", 0}}.dump());
    REQUIRE(reply.status == 200);
    const auto& choice = reply.body["choices"][0];
    CHECK(choice["text"] == "Grüße");
    CHECK(choice["finish_reason"] == "length");
    const auto& logprobs = choice["logprobs"];
    CHECK(logprobs["tokens"] == nlohmann::json::array({"<|endoftext|>", "G", "r", "bytes:\\xc3", "bytes:\\xbc",
                                                       "bytes:\\xc3", "bytes:\\x9f", "e"}));
    CHECK(logprobs["text_offset"][0] == 0);
    CHECK(logprobs["text_offset"][1] == 0);
    CHECK(logprobs["text_offset"][2] == 1);
    CHECK(logprobs["text_offset"][7] == 4);  // "e" is the fifth character
    double sum = 0;
    for (std::size_t t = 1; t < logprobs["token_logprobs"].size(); ++t) {
      sum += logprobs["token_logprobs"][t].get<double>();
      CHECK(logprobs["top_logprobs"][t].size() == 2);
    }
    CHECK(sum == Approx(demo.loglikelihood_rolling({{"Grüße"}})[0].logprob).epsilon(1e-12));
    CHECK(reply.body["usage"]["prompt_tokens"] == 8);
  }
  SECTION("generated tokens carry their log-probabilities after the prompt's offsets") {
    const auto reply =
        service.completions(nlohmann::json{{"prompt", "The mill"}, {"logprobs", 1}, {"max_tokens", 5}}.dump());
    REQUIRE(reply.status == 200);
    const auto& choice = reply.body["choices"][0];
    const auto text = demo.generate({{"The mill", {}, 5}})[0].text;
    CHECK(choice["text"] == text);
    REQUIRE(choice["logprobs"]["tokens"].size() == 5);
    CHECK(choice["logprobs"]["text_offset"][0] == 8);
    CHECK(choice["logprobs"]["token_logprobs"][0].get<double>() == demo.logprob('l', static_cast<unsigned char>(text[0])));
    CHECK(reply.body["usage"]["prompt_tokens"] == 9);
    CHECK(reply.body["usage"]["completion_tokens"] == 5);
  }
}

TEST_CASE("mill serve streams completions and chats as server-sent events", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  ServerThread server(demo, "mill-demo");
  httplib::Client client("127.0.0.1", server.port());
  auto post = [&](const std::string& path, const nlohmann::json& body) {
    auto result = client.Post(path.c_str(), body.dump(), "application/json");
    REQUIRE(result);
    INFO(result->body);
    REQUIRE(result->status == 200);
    return std::make_pair(result->get_header_value("Content-Type"), result->body);
  };
  // A stop sequence that the greedy text reaches, so the held-back tail is exercised.
  const auto long_text = demo.generate({{"Hello", {}, 40}})[0].text;
  REQUIRE(long_text.size() > 14);
  REQUIRE(long_text.find(long_text.substr(12, 2)) == 12);
  const nlohmann::json completion = {{"prompt", "Hello"}, {"max_tokens", 40}, {"stop", {long_text.substr(12, 2)}}};
  const auto whole = nlohmann::json::parse(post("/v1/completions", completion).second);
  auto streamed_request = completion;
  streamed_request["stream"] = true;
  const auto [type, body] = post("/v1/completions", streamed_request);
  CHECK_THAT(type, Catch::StartsWith("text/event-stream"));
  bool done = false;
  const auto events = sse_events(body, &done);
  CHECK(done);
  std::string text;
  for (const auto& event : events) {
    CHECK(event["object"] == "text_completion");
    text += event["choices"][0]["text"].get<std::string>();
  }
  CHECK(text == whole["choices"][0]["text"]);
  CHECK(text.size() >= 12);
  CHECK(events.size() >= 3);  // the text came in pieces, not as one
  CHECK(events.back()["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]);

  SECTION("echo streams the prompt first") {
    auto request = streamed_request;
    request["echo"] = true;
    const auto echoed = sse_events(post("/v1/completions", request).second, &done);
    CHECK(echoed.front()["choices"][0]["text"] == "Hello");
  }
  SECTION("a chat stream opens with the assistant's role and ends with the usage when asked") {
    const nlohmann::json chat = {{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 12}};
    const auto whole_chat = nlohmann::json::parse(post("/v1/chat/completions", chat).second);
    auto request = chat;
    request["stream"] = true;
    request["stream_options"] = {{"include_usage", true}};
    const auto chunks = sse_events(post("/v1/chat/completions", request).second, &done);
    CHECK(done);
    REQUIRE(chunks.size() >= 3);
    CHECK(chunks.front()["object"] == "chat.completion.chunk");
    CHECK(chunks.front()["choices"][0]["delta"]["role"] == "assistant");
    std::string content;
    for (const auto& chunk : chunks) {
      if (!chunk["choices"].empty()) content += chunk["choices"][0]["delta"].value("content", "");
    }
    CHECK(content == whole_chat["choices"][0]["message"]["content"]);
    CHECK(chunks.back()["choices"].empty());
    CHECK(chunks.back()["usage"] == whole_chat["usage"]);
  }
}

TEST_CASE("mill serve samples with temperature, top_p and seed, reproducibly", "[remote][serve]") {
  DemoBackend demo(ModelSpec::parse("mill-demo"));
  OpenAiService service(demo, "mill-demo");
  auto complete = [&](nlohmann::json request) {
    request["max_tokens"] = 16;
    if (!request.contains("prompt")) request["prompt"] = "The mill";
    const auto reply = service.completions(request.dump());
    REQUIRE(reply.status == 200);
    return reply.body["choices"][0]["text"].get<std::string>();
  };
  const auto greedy = complete({});
  CHECK(greedy == demo.generate({{"The mill", {}, 16}})[0].text);
  CHECK(complete({{"temperature", 0}, {"seed", 3}}) == greedy);
  const auto first = complete({{"temperature", 1.0}, {"seed", 7}});
  CHECK(complete({{"temperature", 1.0}, {"seed", 7}}) == first);
  int differing = 0;
  for (int seed = 1; seed <= 6; ++seed) differing += complete({{"temperature", 1.5}, {"seed", seed}}) != greedy ? 1 : 0;
  CHECK(differing >= 1);
  // A nucleus this small holds only the most likely token.
  CHECK(complete({{"temperature", 1.0}, {"top_p", 1e-9}, {"seed", 11}}) == greedy);
  // The first of several prompts draws as a single prompt with the same seed does.
  const auto batch = service.completions(
      nlohmann::json{{"prompt", {"The mill", "The mill"}}, {"max_tokens", 16}, {"temperature", 1.0}, {"seed", 7}}.dump());
  REQUIRE(batch.status == 200);
  CHECK(batch.body["choices"][0]["text"] == first);
}

TEST_CASE("mill serve renders chats with the model's chat template and scores tokens as its runtime does",
          "[remote][serve][runtime]") {
  REQUIRE_PLUGIN();
  TempDir dir;
  write_demo_model(dir / "model", {});
  auto backend = load_runtime_backend(
      ModelSpec::parse((dir / "model").string() + "[dtype=float32,device=" + runtime_test_device() + "]"));
  auto* tokens = backend->token_model();
  REQUIRE(tokens);
  OpenAiService service(*backend, "demo");

  // The demo checkpoint's template: <|role|>\ncontent\n per message, then <|assistant|>\n.
  const nlohmann::json messages = {{{"role", "system"}, {"content", "Be brief."}},
                                   {{"role", "user"}, {"content", "Hello"}}};
  const auto chat = service.chat_completions(nlohmann::json{{"messages", messages}, {"max_tokens", 6}}.dump());
  REQUIRE(chat.status == 200);
  const auto ids = tokens->encode("<|system|>\nBe brief.\n<|user|>\nHello\n<|assistant|>\n", false);
  CHECK(chat.body["usage"]["prompt_tokens"] == ids.size());
  TokenGenerationRequest ask;
  ask.context = ids;
  ask.max_new_tokens = 6;
  const auto expected = tokens->generate_tokens({ask})[0];
  CHECK(chat.body["choices"][0]["message"]["content"] == tokens->decode(expected.tokens, true));
  CHECK(chat.body["usage"]["completion_tokens"] == expected.tokens.size() + (expected.eos ? 1 : 0));

  // Chat log-probabilities in the chat format.
  const auto with_logprobs = service.chat_completions(
      nlohmann::json{{"messages", messages}, {"max_tokens", 3}, {"logprobs", true}, {"top_logprobs", 2}}.dump());
  REQUIRE(with_logprobs.status == 200);
  const auto& content = with_logprobs.body["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() >= 1);
  CHECK(content[0]["top_logprobs"].size() == 2);
  CHECK(content[0]["logprob"].get<double>() <= content[0]["top_logprobs"][0]["logprob"].get<double>() + 1e-9);

  // The echoed prompt's per-token log-probabilities are the runtime's own, and sum to its loglikelihood.
  const std::string context = "The mill";
  const std::string continuation = " wheel turns";
  const auto echo = service.completions(
      nlohmann::json{{"prompt", context + continuation}, {"echo", true}, {"logprobs", 3}, {"max_tokens", 0}}.dump());
  REQUIRE(echo.status == 200);
  const auto& logprobs = echo.body["choices"][0]["logprobs"];
  const auto prompt_ids = tokens->encode(context + continuation, true);
  REQUIRE(logprobs["token_logprobs"].size() == prompt_ids.size());
  const auto own = backend->token_logprobs({prompt_ids})[0];
  for (std::size_t t = 1; t < prompt_ids.size(); ++t) {
    CHECK(logprobs["token_logprobs"][t].get<double>() == Approx(own[t - 1]).margin(1e-9));
    CHECK(logprobs["top_logprobs"][t].size() <= 3);
  }
  const auto ctxlen = tokens->encode(context, true).size();
  double sum = 0;
  for (std::size_t t = ctxlen; t < prompt_ids.size(); ++t) sum += logprobs["token_logprobs"][t].get<double>();
  CHECK(sum == Approx(backend->loglikelihood({{context, continuation}})[0].logprob).margin(1e-4));

  // Seeded sampling on the runtime: the same seed, the same text; some seed leaves the greedy path.
  auto sample = [&](double temperature, int seed) {
    const auto reply = service.completions(nlohmann::json{
        {"prompt", context}, {"max_tokens", 8}, {"temperature", temperature}, {"seed", seed}}.dump());
    REQUIRE(reply.status == 200);
    return reply.body["choices"][0]["text"].get<std::string>();
  };
  const auto greedy = sample(0, 0);
  CHECK(sample(1.0, 5) == sample(1.0, 5));
  int differing = 0;
  for (int seed = 1; seed <= 4; ++seed) differing += sample(2.0, seed) != greedy ? 1 : 0;
  CHECK(differing >= 1);
}

TEST_CASE("the official openai npm client scores, chats, streams and samples against mill serve", "[remote][serve]") {
  const auto client_dir = std::filesystem::path(test::source_dir()) / "tests" / "openai_client";
  if (!std::filesystem::exists(client_dir / "node_modules" / "openai")) {
    WARN("skipped: tests/openai_client/node_modules is absent (scripts/setup.sh installs it with npm ci when npm is "
         "on PATH)");
    return;
  }
  if (!on_path("node")) {
    WARN("skipped: node is not on PATH");
    return;
  }
  TempDir dir;
  const int port = find_free_port();
  ServerProcess server({test::mill_binary(), "serve", "mill-demo", "--port", std::to_string(port)}, dir / "serve.log");
  wait_until_healthy(server, port);
  const auto run = run_program(
      {"node", (client_dir / "check.mjs").string(), "http://127.0.0.1:" + std::to_string(port) + "/v1", "mill-demo"});
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  const auto got = nlohmann::json::parse(run.out);
  DemoBackend demo(ModelSpec::parse("mill-demo"));

  const auto& echo = got["echo"];
  CHECK(echo["text"] == "The mill wheel");
  REQUIRE(echo["logprobs"]["token_logprobs"].size() == 15);  // the start token and 14 bytes
  CHECK(echo["logprobs"]["token_logprobs"][0].is_null());
  double sum = 0;
  for (std::size_t t = 1; t < 15; ++t) sum += echo["logprobs"]["token_logprobs"][t].get<double>();
  CHECK(sum == Approx(demo.loglikelihood_rolling({{"The mill wheel"}})[0].logprob).epsilon(1e-12));
  CHECK(echo["usage"]["prompt_tokens"] == 15);

  CHECK(got["completion"] == demo.generate({{"The mill", {}, 8}})[0].text);
  CHECK(got["streamed"] == got["completion"]);
  CHECK(got["stream_chunks"].get<int>() >= 2);
  // mill-demo has no chat template: a single user message is the prompt as it is.
  CHECK(got["chat"] == demo.generate({{"Hello", {}, 6}})[0].text);
  CHECK(got["chat_usage"]["prompt_tokens"] == 6);
  CHECK(got["chat_streamed"] == got["chat"]);
  CHECK(got["chat_stream_usage"] == got["chat_usage"]);
  CHECK(got["seeded"][0] == got["seeded"][1]);
  CHECK(got["error"]["status"] == 400);
  CHECK_THAT(got["error"]["message"].get<std::string>(), Catch::Contains("top_p"));
}
