#include "mill/openai_server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <future>

#include "mill/error.hpp"
#include "mill/openai_protocol.hpp"
#include "mill/text.hpp"

namespace mill {

struct OpenAiService::Work {
  enum Kind { loglikelihood, rolling, generation } kind;
  std::vector<LoglikelihoodRequest> loglikelihood_requests;
  std::vector<RollingRequest> rolling_requests;
  std::vector<GenerationRequest> generation_requests;
  std::vector<LoglikelihoodResult> loglikelihood_results;
  std::vector<RollingResult> rolling_results;
  std::vector<GenerationResult> generation_results;
  std::promise<void> done;
  std::size_t size() const {
    return loglikelihood_requests.size() + rolling_requests.size() + generation_requests.size();
  }
};

namespace {

struct BadRequest {
  int status;
  std::string message;
};

OpenAiService::Reply error_reply(int status, const std::string& message) {
  const char* type = status == 404 ? "NotFoundError" : status >= 500 ? "InternalServerError" : "BadRequestError";
  return {status, error_body(message, type, status)};
}

std::vector<std::string> stop_sequences(const nlohmann::json& request) {
  const auto stop = request.value("stop", nlohmann::json());
  if (stop.is_null()) return {};
  if (stop.is_string()) return {stop.get<std::string>()};
  if (stop.is_array() && std::all_of(stop.begin(), stop.end(), [](const auto& s) { return s.is_string(); })) {
    return stop.get<std::vector<std::string>>();
  }
  throw BadRequest{400, "`stop` must be a string or a list of strings"};
}

int int_field(const nlohmann::json& request, const char* name, int fallback, int low, int high) {
  if (!request.contains(name) || request[name].is_null()) return fallback;
  const auto& value = request[name];
  if (value.is_boolean() && std::string(name) == "logprobs") return value.get<bool>() ? 1 : fallback;
  if (!value.is_number_integer() || value.get<long long>() < low || value.get<long long>() > high) {
    throw BadRequest{400, fmt::format("`{}` must be a whole number in {}..{} (got {})", name, low, high, value.dump())};
  }
  return value.get<int>();
}

void require_greedy(const nlohmann::json& request) {
  if (request.contains("temperature") && !request["temperature"].is_null()) {
    const auto& t = request["temperature"];
    if (!t.is_number() || t.get<double>() != 0.0) {
      throw BadRequest{400, fmt::format("mill serve decodes greedily: `temperature` must be 0 (got {})", t.dump())};
    }
  }
  for (const char* name : {"n", "best_of"}) {
    if (request.contains(name) && !request[name].is_null() && request[name] != 1) {
      throw BadRequest{400, fmt::format("mill serve returns one choice per prompt: `{}` must be 1", name)};
    }
  }
  if (request.value("stream", false) == true)
    throw BadRequest{400, "mill serve does not stream: `stream` must be false"};
}

std::string message_text(const nlohmann::json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (content.is_array()) {
    std::string text;
    for (const auto& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        throw BadRequest{400, "message content parts must be {\"type\": \"text\", \"text\": ...}"};
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw BadRequest{400, "message `content` must be a string or a list of text parts"};
}

// A single user message is the prompt as it is; a conversation becomes "Role: content" paragraphs ending with
// "Assistant:" (a backend works on text; mill applies no model-specific chat template here).
std::string render_chat(const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty()) throw BadRequest{400, "`messages` must be a non-empty list"};
  for (const auto& message : messages) {
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
      throw BadRequest{400, "each message needs a `role` and a `content`"};
    }
  }
  if (messages.size() == 1 && messages[0]["role"] == "user")
    return message_text(messages[0].value("content", nlohmann::json()));
  std::string prompt;
  for (const auto& message : messages) {
    auto role = message["role"].get<std::string>();
    if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    prompt += role + ": " + message_text(message.value("content", nlohmann::json())) + "\n\n";
  }
  return prompt + "Assistant:";
}

long long unix_seconds() { return static_cast<long long>(std::time(nullptr)); }

}  // namespace

OpenAiService::OpenAiService(ModelBackend& backend, std::string model_name, int max_batch)
    : backend_(backend), model_name_(std::move(model_name)), max_batch_(std::max(1, max_batch)) {
  worker_ = std::thread([this] { batch_loop(); });
}

OpenAiService::~OpenAiService() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

void OpenAiService::batch_loop() {
  while (true) {
    std::vector<std::shared_ptr<Work>> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      if (queue_.empty()) return;
      // Work of the oldest request's kind, in arrival order, up to max_batch requests (at least one item).
      const auto kind = queue_.front()->kind;
      std::size_t total = 0;
      for (auto it = queue_.begin(); it != queue_.end();) {
        if ((*it)->kind == kind && (batch.empty() || total + (*it)->size() <= static_cast<std::size_t>(max_batch_))) {
          total += (*it)->size();
          batch.push_back(*it);
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    try {
      ++backend_calls_;
      const auto kind = batch.front()->kind;
      if (kind == Work::loglikelihood) {
        std::vector<LoglikelihoodRequest> all;
        for (auto& work : batch)
          all.insert(all.end(), work->loglikelihood_requests.begin(), work->loglikelihood_requests.end());
        auto results = backend_.loglikelihood(all);
        std::size_t at = 0;
        for (auto& work : batch) {
          work->loglikelihood_results.assign(results.begin() + at, results.begin() + at + work->size());
          at += work->size();
        }
      } else if (kind == Work::rolling) {
        std::vector<RollingRequest> all;
        for (auto& work : batch) all.insert(all.end(), work->rolling_requests.begin(), work->rolling_requests.end());
        auto results = backend_.loglikelihood_rolling(all);
        std::size_t at = 0;
        for (auto& work : batch) {
          work->rolling_results.assign(results.begin() + at, results.begin() + at + work->size());
          at += work->size();
        }
      } else {
        std::vector<GenerationRequest> all;
        for (auto& work : batch)
          all.insert(all.end(), work->generation_requests.begin(), work->generation_requests.end());
        auto results = backend_.generate(all);
        std::size_t at = 0;
        for (auto& work : batch) {
          work->generation_results.assign(results.begin() + at, results.begin() + at + work->size());
          at += work->size();
        }
      }
      for (auto& work : batch) work->done.set_value();
    } catch (...) {
      for (auto& work : batch) work->done.set_exception(std::current_exception());
    }
  }
}

void OpenAiService::run_queued(const std::shared_ptr<Work>& work) {
  auto done = work->done.get_future();
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(work);
  }
  wake_.notify_one();
  done.get();
}

std::vector<LoglikelihoodResult> OpenAiService::loglikelihood(std::vector<LoglikelihoodRequest> requests) {
  if (requests.empty()) return {};
  auto work = std::make_shared<Work>();
  work->kind = Work::loglikelihood;
  work->loglikelihood_requests = std::move(requests);
  run_queued(work);
  return std::move(work->loglikelihood_results);
}

std::vector<RollingResult> OpenAiService::rolling(std::vector<RollingRequest> requests) {
  if (requests.empty()) return {};
  auto work = std::make_shared<Work>();
  work->kind = Work::rolling;
  work->rolling_requests = std::move(requests);
  run_queued(work);
  return std::move(work->rolling_results);
}

std::vector<GenerationResult> OpenAiService::generate(std::vector<GenerationRequest> requests) {
  if (requests.empty()) return {};
  auto work = std::make_shared<Work>();
  work->kind = Work::generation;
  work->generation_requests = std::move(requests);
  run_queued(work);
  return std::move(work->generation_results);
}

OpenAiService::Reply OpenAiService::health() const { return {200, {{"status", "ok"}}}; }

OpenAiService::Reply OpenAiService::models() const {
  return {200,
          {{"object", "list"},
           {"data", nlohmann::json::array({{{"id", model_name_},
                                            {"object", "model"},
                                            {"created", unix_seconds()},
                                            {"owned_by", "mill"},
                                            {"root", model_name_}}})}}};
}

OpenAiService::Reply OpenAiService::completions(const std::string& body) {
  try {
    const auto request = nlohmann::json::parse(body, nullptr, false);
    if (request.is_discarded() || !request.is_object()) {
      return error_reply(400, "the request body is not a JSON object");
    }
    const auto prompt = request.value("prompt", nlohmann::json());
    std::vector<std::string> prompts;
    if (prompt.is_string()) {
      prompts.push_back(prompt.get<std::string>());
    } else if (prompt.is_array() && !prompt.empty() &&
               std::all_of(prompt.begin(), prompt.end(), [](const auto& p) { return p.is_string(); })) {
      prompts = prompt.get<std::vector<std::string>>();
    } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
      return error_reply(400, "token-id prompts are not supported: mill serve takes text prompts");
    } else {
      return error_reply(400, "`prompt` must be a string or a non-empty list of strings");
    }
    return complete(request, prompts, false);
  } catch (const BadRequest& e) {
    return error_reply(e.status, e.message);
  }
}

OpenAiService::Reply OpenAiService::chat_completions(const std::string& body) {
  try {
    const auto request = nlohmann::json::parse(body, nullptr, false);
    if (request.is_discarded() || !request.is_object()) {
      return error_reply(400, "the request body is not a JSON object");
    }
    if (request.value("logprobs", false) == true) {
      return error_reply(400, "chat log-probabilities are not supported: use /v1/completions with echo and logprobs");
    }
    return complete(request, {render_chat(request.value("messages", nlohmann::json()))}, true);
  } catch (const BadRequest& e) {
    return error_reply(e.status, e.message);
  }
}

OpenAiService::Reply OpenAiService::complete(const nlohmann::json& request, const std::vector<std::string>& prompts,
                                             bool chat) {
  if (request.contains("model") && !request["model"].is_null() && request["model"] != model_name_) {
    return error_reply(
        404, fmt::format("The model `{}` does not exist; this server serves `{}`",
                         request["model"].is_string() ? request["model"].get<std::string>() : request["model"].dump(),
                         model_name_));
  }
  require_greedy(request);
  const auto stop = stop_sequences(request);
  int max_tokens = 0;
  if (chat) {
    max_tokens =
        int_field(request, "max_completion_tokens", int_field(request, "max_tokens", 256, 0, 1 << 20), 0, 1 << 20);
  } else {
    max_tokens = int_field(request, "max_tokens", 16, 0, 1 << 20);
  }
  const bool echo = !chat && request.value("echo", false) == true;
  const bool want_logprobs =
      !chat && request.contains("logprobs") && !request["logprobs"].is_null() && request["logprobs"] != false;
  const int top_n = want_logprobs ? int_field(request, "logprobs", 0, 0, 20) : 0;
  // Present (even 0): score the prompt after that many characters as a continuation. Absent: score it whole.
  const bool split_prompt = request.contains("mill_context_chars") && !request["mill_context_chars"].is_null();
  const auto hint = static_cast<std::size_t>(int_field(request, "mill_context_chars", 0, 0, 1 << 30));

  try {
    // 1. Generation.
    std::vector<GenerationResult> generated(prompts.size());
    if (max_tokens > 0) {
      std::vector<GenerationRequest> asks;
      for (const auto& p : prompts) asks.push_back({p, stop, max_tokens});
      generated = generate(std::move(asks));
    }

    // 2. Scores of the echoed prompt's segments and of the generated text.
    struct Segment {
      std::string text;
      std::optional<double> logprob;
      std::optional<int> n_tokens;
      nlohmann::json top = nullptr;
      int pending_greedy = -1;  // index into greedy asks
      std::size_t offset = 0;
    };
    std::vector<std::vector<Segment>> segments(prompts.size());
    std::vector<LoglikelihoodRequest> ll_asks;
    std::vector<std::pair<std::size_t, std::size_t>> ll_where;  // (prompt, segment)
    std::vector<RollingRequest> rolling_asks;
    std::vector<std::pair<std::size_t, std::size_t>> rolling_where;
    if (want_logprobs) {
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        const auto& p = prompts[i];
        auto& list = segments[i];
        const std::size_t prompt_chars = utf8_length(p);
        if (echo && !p.empty()) {
          const std::size_t context_chars = std::min(hint, prompt_chars);
          if (split_prompt) {
            const auto split = utf8_prefix_bytes(p, context_chars);
            if (split > 0) list.push_back({p.substr(0, split), std::nullopt, std::nullopt, nullptr, -1, 0});
            if (split < p.size()) {
              list.push_back({p.substr(split), std::nullopt, std::nullopt, nullptr, -1, context_chars});
              ll_asks.push_back({p.substr(0, split), p.substr(split)});
              ll_where.emplace_back(i, list.size() - 1);
            }
          } else {
            list.push_back({p, std::nullopt, std::nullopt, nullptr, -1, 0});
            rolling_asks.push_back({p});
            rolling_where.emplace_back(i, list.size() - 1);
          }
        }
        if (!generated[i].text.empty()) {
          list.push_back({generated[i].text, std::nullopt, std::nullopt, nullptr, -1, prompt_chars});
          ll_asks.push_back({p, generated[i].text});
          ll_where.emplace_back(i, list.size() - 1);
        }
      }
      const auto ll_results = loglikelihood(ll_asks);
      const auto rolling_results = rolling(rolling_asks);
      std::vector<GenerationRequest> greedy_asks;
      std::vector<std::size_t> greedy_of;  // which ll ask
      for (std::size_t k = 0; k < ll_results.size(); ++k) {
        auto& segment = segments[ll_where[k].first][ll_where[k].second];
        segment.logprob = ll_results[k].logprob;
        segment.n_tokens = ll_results[k].n_tokens;
        if (top_n >= 1) {
          if (ll_results[k].greedy) {
            segment.top = {{segment.text, ll_results[k].logprob}};
          } else {
            greedy_asks.push_back({ll_asks[k].context, {}, std::max(1, ll_results[k].n_tokens)});
            greedy_of.push_back(k);
          }
        }
      }
      for (std::size_t k = 0; k < rolling_results.size(); ++k) {
        auto& segment = segments[rolling_where[k].first][rolling_where[k].second];
        segment.logprob = rolling_results[k].logprob;
        segment.n_tokens = rolling_results[k].n_tokens;
      }
      // The top-1 alternative of a non-greedy segment: the greedy text of the same length and its score.
      if (!greedy_asks.empty()) {
        const auto greedy_texts = generate(greedy_asks);
        std::vector<LoglikelihoodRequest> greedy_scores;
        for (std::size_t g = 0; g < greedy_texts.size(); ++g) {
          greedy_scores.push_back({greedy_asks[g].context, greedy_texts[g].text});
        }
        const auto scored = loglikelihood(greedy_scores);
        for (std::size_t g = 0; g < scored.size(); ++g) {
          const auto k = greedy_of[g];
          segments[ll_where[k].first][ll_where[k].second].top = {{greedy_texts[g].text, scored[g].logprob}};
        }
      }
    }

    // 3. The answer.
    nlohmann::json choices = nlohmann::json::array();
    long long prompt_tokens = 0;
    long long completion_tokens = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      completion_tokens += generated[i].n_tokens;
      const std::string finish = max_tokens == 0 || generated[i].hit_token_limit ? "length" : "stop";
      nlohmann::json choice = {{"index", i}, {"finish_reason", finish}};
      if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", generated[i].text}};
      } else {
        choice["text"] = (echo ? prompts[i] : std::string()) + generated[i].text;
        if (want_logprobs) {
          nlohmann::json tokens = nlohmann::json::array(), logprobs = nlohmann::json::array(),
                         top = nlohmann::json::array(), offsets = nlohmann::json::array(),
                         counts = nlohmann::json::array();
          for (const auto& segment : segments[i]) {
            tokens.push_back(segment.text);
            logprobs.push_back(segment.logprob ? nlohmann::json(*segment.logprob) : nlohmann::json());
            top.push_back(segment.top);
            offsets.push_back(segment.offset);
            counts.push_back(segment.n_tokens ? nlohmann::json(*segment.n_tokens) : nlohmann::json());
            if (segment.n_tokens && segment.offset < utf8_length(prompts[i])) prompt_tokens += *segment.n_tokens;
          }
          choice["logprobs"] = {{"tokens", tokens},
                                {"token_logprobs", logprobs},
                                {"top_logprobs", top},
                                {"text_offset", offsets},
                                {"mill_token_counts", counts}};
        } else {
          choice["logprobs"] = nullptr;
        }
      }
      choices.push_back(choice);
    }
    const auto id = next_id_.fetch_add(1);
    return {200,
            {{"id", fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", id)},
             {"object", chat ? "chat.completion" : "text_completion"},
             {"created", unix_seconds()},
             {"model", model_name_},
             {"choices", choices},
             {"usage",
              {{"prompt_tokens", prompt_tokens},
               {"completion_tokens", completion_tokens},
               {"total_tokens", prompt_tokens + completion_tokens}}}}};
  } catch (const BadRequest& e) {
    return error_reply(e.status, e.message);
  } catch (const std::exception& e) {
    return error_reply(500, fmt::format("the model failed: {}", one_line(e.what())));
  }
}

namespace {
std::atomic<bool> g_serve_stop{false};
extern "C" void on_serve_signal(int) { g_serve_stop.store(true); }
}  // namespace

void run_openai_server(ModelBackend& backend, const ServeOptions& options, const std::atomic<bool>* stop) {
  const std::string name = options.served_model_name;
  OpenAiService service(backend, name, options.max_batch);
  httplib::Server server;
  const int threads = std::max(1, options.threads);
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  server.set_payload_max_length(256u << 20);
  auto send = [](httplib::Response& response, const OpenAiService::Reply& reply) {
    response.status = reply.status;
    response.set_content(reply.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
  };
  server.Get("/health",
             [&](const httplib::Request&, httplib::Response& response) { send(response, service.health()); });
  server.Get("/v1/models",
             [&](const httplib::Request&, httplib::Response& response) { send(response, service.models()); });
  server.Post("/v1/completions", [&](const httplib::Request& request, httplib::Response& response) {
    send(response, service.completions(request.body));
  });
  server.Post("/v1/chat/completions", [&](const httplib::Request& request, httplib::Response& response) {
    send(response, service.chat_completions(request.body));
  });
  server.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    const auto message = response.status == 404 ? fmt::format(
                                                      "no route {} {} (mill serves GET /health, GET /v1/models, POST "
                                                      "/v1/completions, POST /v1/chat/completions)",
                                                      request.method, request.path)
                                                : fmt::format("HTTP {}", response.status);
    response.set_content(
        error_body(message, response.status == 404 ? "NotFoundError" : "BadRequestError", response.status).dump(),
        "application/json");
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
    std::string message = "internal error";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = one_line(e.what());
    } catch (...) {
    }
    response.status = 500;
    response.set_content(error_body(message, "InternalServerError", 500).dump(), "application/json");
  });
  server.set_logger([](const httplib::Request& request, const httplib::Response& response) {
    spdlog::debug("{} {} -> {}", request.method, request.path, response.status);  // never the headers (keys)
  });

  // cpp-httplib listens with a backlog of 5 (built into Debian's libcpp-httplib). A client that opens more connections
  // at once (the vllm backend opens 64) overflows it whenever the accept thread lags: the kernel drops handshakes it
  // cannot queue, a client whose side of the handshake completed believes it is connected, and its request sits in
  // TCP retransmission backoff (or ends in a reset) for minutes while every server thread is idle. So listen() again,
  // with the system's limit, on the socket captured here. SO_REUSEADDR instead of httplib's default SO_REUSEPORT: a
  // second server on a busy port must fail, not silently take half of its connections.
  int listening_socket = -1;
  server.set_socket_options([&listening_socket](int socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listening_socket = socket;
  });
  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
    if (port <= 0) throw Error(fmt::format("cannot listen on {} (any port)", options.host), ExitCode::usage);
  } else if (!server.bind_to_port(options.host, port)) {
    throw Error(fmt::format("cannot listen on {}:{}: the address is in use or not allowed (choose another --port, or 0 "
                            "for any free port)",
                            options.host, port),
                ExitCode::usage);
  }
  if (listening_socket < 0 || ::listen(listening_socket, SOMAXCONN) != 0) {
    spdlog::warn("cannot raise the listen backlog on {}:{}; many simultaneous connections may stall", options.host,
                 port);
  }

  // A signal only sets a flag; a watcher thread stops the server, so the handler stays async-signal-safe.
  g_serve_stop.store(false);
  struct sigaction action {};
  struct sigaction old_int {
  }, old_term{};
  action.sa_handler = on_serve_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished.load()) {
      // Repeated until listen returns: a stop() that lands before listening has started would be lost.
      if (g_serve_stop.load() || (stop && stop->load())) server.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  spdlog::info("serving {} on http://{}:{}", name, options.host, port);
  if (options.on_listening) options.on_listening(options.host, port);
  server.listen_after_bind();
  finished.store(true);
  watcher.join();
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
}

}  // namespace mill
