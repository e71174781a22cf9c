#include "mill/remote/api_backend.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "mill/base/error.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/remote/openai_protocol.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

std::string text_or_empty(const nlohmann::json& value) { return value.is_string() ? value.get<std::string>() : ""; }

}  // namespace

ApiBackendConfig api_config_from_spec(const ModelSpec& spec) {
  const auto args = read_api_args(spec);
  ApiBackendConfig config;
  if (args.base_url) config.base_url = *args.base_url;
  config.base_url = normalize_base_url(config.base_url);
  config.model = args.model;
  config.api_key_env = args.api_key_env;
  if (const char* key = std::getenv(config.api_key_env.c_str())) config.api_key = key;
  apply_client_args(spec, args.client, 8, config);
  return config;
}

void apply_client_args(const ModelSpec& spec, const ClientArgs& args, int default_concurrency, ApiBackendConfig& config) {
  config.endpoint = args.endpoint;
  config.concurrency = args.concurrency.value_or(default_concurrency);
  config.retry.timeout_s = args.timeout_s.value_or(config.retry.timeout_s);
  config.retry.max_retries = args.max_retries.value_or(config.retry.max_retries);
  config.journal_dir = remote_state_dir() / "requests";
  // A new revision of the same model name must not reuse old answers.
  config.journal_scope = spec.identity() + "@" + resolve_model_revision(spec);
}

std::variant<EchoScore, std::string> score_echoed_prompt(const nlohmann::json& response, std::size_t context_chars,
                                                         std::size_t prompt_chars, bool need_greedy,
                                                         bool allow_unscored) {
  if (!response.is_object() || !response.contains("choices") || !response["choices"].is_array() ||
      response["choices"].empty()) {
    return std::string("no choices in the answer");
  }
  const auto& choice = response["choices"][0];
  if (!choice.is_object() || !choice.contains("logprobs") || !choice["logprobs"].is_object()) {
    return std::string("the answer has no logprobs (does the server support echo with logprobs?)");
  }
  const auto& logprobs = choice["logprobs"];
  const auto& tokens = logprobs.value("tokens", nlohmann::json());
  const auto& token_logprobs = logprobs.value("token_logprobs", nlohmann::json());
  const auto& offsets = logprobs.value("text_offset", nlohmann::json());
  if (!tokens.is_array() || !token_logprobs.is_array() || !offsets.is_array() ||
      tokens.size() != token_logprobs.size() || tokens.size() != offsets.size()) {
    return std::string("logprobs.tokens, token_logprobs and text_offset are missing or differ in length");
  }
  for (const auto& offset : offsets) {
    if (!offset.is_number()) return std::string("text_offset holds something other than numbers");
  }
  const auto& top = logprobs.value("top_logprobs", nlohmann::json());
  const auto& counts = logprobs.value("mill_token_counts", nlohmann::json());
  const std::size_t n = tokens.size();
  // Tokens generated after the prompt (max_tokens=1 for servers that need it) come last; usage says how many.
  std::size_t generated = 0;
  const auto completion_tokens = integer_field(member(response, "usage"), "completion_tokens");
  if (response["choices"].size() == 1 && completion_tokens && *completion_tokens >= 0) {
    generated = std::min<std::size_t>(n, static_cast<std::size_t>(*completion_tokens));
  } else {
    while (generated < n && offsets[n - 1 - generated].get<double>() >= static_cast<double>(prompt_chars) &&
           n - generated > 1) {
      ++generated;
    }
  }
  const std::size_t prompt_tokens = n - generated;
  // Some tokenizers decode the prompt with a character more or less at its start (a SentencePiece prefix space):
  // the boundary moves with that difference, assumed to lie before the context's end.
  const double echoed_chars =
      prompt_tokens == 0 ? 0.0
                         : offsets[prompt_tokens - 1].get<double>() +
                               static_cast<double>(utf8_length(text_or_empty(tokens[prompt_tokens - 1])));
  const double boundary = static_cast<double>(context_chars) + (echoed_chars - static_cast<double>(prompt_chars));
  EchoScore score;
  bool any = false;
  for (std::size_t i = 0; i < prompt_tokens; ++i) {
    const double end = i + 1 < prompt_tokens ? offsets[i + 1].get<double>() : echoed_chars;
    // A token belongs to the continuation when its text ends after the context, so a token that straddles the
    // boundary counts as the continuation's (it contains continuation text).
    if (end <= boundary) continue;
    if (!token_logprobs[i].is_number()) {
      if (allow_unscored) continue;
      return fmt::format("the server left prompt token {} unscored (an empty context on a model without a BOS token?)",
                         i);
    }
    any = true;
    score.logprob += token_logprobs[i].get<double>();
    score.n_tokens +=
        counts.is_array() && i < counts.size() && counts[i].is_number_integer() ? counts[i].get<int>() : 1;
    if (need_greedy) {
      if (!top.is_array() || i >= top.size() || !top[i].is_object() || top[i].empty()) {
        return fmt::format("top_logprobs[{}] is missing (send logprobs >= 1)", i);
      }
      const auto best = std::max_element(top[i].begin(), top[i].end(), [](const auto& a, const auto& b) {
        return (a.is_number() ? a.template get<double>() : -1e300) <
               (b.is_number() ? b.template get<double>() : -1e300);
      });
      if (best.key() != text_or_empty(tokens[i])) score.greedy = false;
    }
  }
  if (!any && !allow_unscored) return std::string("the echoed prompt has no continuation tokens");
  return score;
}

std::string cut_at_stop(std::string text, const std::vector<std::string>& stop, bool* cut) {
  const auto earliest = find_first_stop(text, stop);
  if (cut) *cut = earliest != std::string::npos;
  if (earliest != std::string::npos) text.resize(earliest);
  return text;
}

ApiBackend::ApiBackend(ApiBackendConfig config)
    : config_(std::move(config)),
      client_(config_.retry, config_.concurrency, config_.api_key),
      journal_(config_.journal_dir, config_.journal_scope) {
  config_.base_url = normalize_base_url(config_.base_url);
  if (journal_.size() > 0) {
    spdlog::info("request journal: {} answers from earlier runs of {}", journal_.size(), config_.journal_scope);
  }
}

const ApiBackend::ServerInfo& ApiBackend::server() const {
  std::call_once(probe_once_, [this] {
    const auto url = config_.base_url + "/models";
    std::pair<long, std::string> answer{0, ""};
    // The server may still be busy (or briefly restarting): a few tries before concluding anything.
    const int tries = 1 + std::min(config_.retry.max_retries, 3);
    for (int attempt = 0; attempt < tries; ++attempt) {
      if (attempt > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(retry_delay_s(config_.retry, attempt, std::nullopt)));
      }
      answer = client_.get_once(url, std::min(30.0, config_.retry.timeout_s));
      if (answer.first != 0 && answer.first < 500) break;
    }
    server_.unreachable = answer.first == 0;
    const auto parsed = nlohmann::json::parse(answer.second, nullptr, false);
    if (answer.first == 200 && parsed.is_object() && parsed.contains("data") && parsed["data"].is_array() &&
        !parsed["data"].empty() && parsed["data"][0].is_object()) {
      server_.first_model = string_field(parsed["data"][0], "id");
      server_.kind = string_field(parsed["data"][0], "owned_by");
    } else {
      server_.probe_error = redact_secret(
          answer.first == 0
              ? fmt::format("GET {}: {}", redact_url(url), one_line(answer.second))
              : fmt::format("GET {}: HTTP {}: {}", redact_url(url), answer.first, error_message_of(answer.second)),
          config_.api_key);
      if (server_.unreachable && tries > 1) server_.probe_error += fmt::format(" ({} tries)", tries);
      // Said at info only: whatever needs the answer fails with this text (capabilities, model_name).
      spdlog::info("{} backend: {}", config_.backend_name, server_.probe_error);
    }
  });
  return server_;
}

const std::string& ApiBackend::model_name() const {
  if (model_.empty()) {
    model_ = config_.model;
    if (model_.empty()) {
      const auto& info = server();
      if (info.first_model.empty()) {
        throw Error(
            fmt::format("{} backend at {}: no model= given and the server lists none ({})", config_.backend_name,
                        redact_url(config_.base_url), info.probe_error.empty() ? "empty list" : info.probe_error),
            ExitCode::eval_failed);
      }
      model_ = info.first_model;
    }
  }
  return model_;
}

BackendCapabilities ApiBackend::capabilities() const {
  bool scores = false;
  if (config_.scores_prompts) {
    scores = *config_.scores_prompts;
  } else {
    const auto& info = server();
    // What the server can do is only known by asking it; one that cannot be reached must not pass for a hosted
    // API that only generates (that would blame the task instead of the connection).
    if (info.unreachable) {
      throw Error(fmt::format("{} backend: cannot ask the server at {} what it can do: {}", config_.backend_name,
                              redact_url(config_.base_url), info.probe_error),
                  ExitCode::eval_failed);
    }
    scores = info.kind == "mill" || info.kind == "vllm";
  }
  return {scores, scores, true};
}

nlohmann::json ApiBackend::provenance() const {
  nlohmann::json facts = {{"backend", config_.backend_name},
                          {"base_url", redact_url(config_.base_url)},
                          {"model", model_.empty() ? config_.model : model_},
                          {"endpoint", config_.endpoint},
                          {"concurrency", config_.concurrency},
                          {"server", server_.kind},
                          {"requests_sent", client_.stats().attempts},
                          {"requests_retried", client_.stats().retries},
                          {"answers_from_journal", journal_hits_}};
  if (!config_.api_key.empty()) facts["api_key_env"] = config_.api_key_env;
  return facts;
}

std::vector<nlohmann::json> ApiBackend::exchange(const std::vector<nlohmann::json>& logical, const std::string& path,
                                                 const std::function<nlohmann::json(std::size_t)>& body,
                                                 const Parse& parse) {
  std::vector<nlohmann::json> answers(logical.size());
  std::vector<std::string> keys(logical.size());
  std::vector<std::size_t> to_send;
  for (std::size_t i = 0; i < logical.size(); ++i) {
    keys[i] = journal_.key(logical[i]);
    if (const auto* known = journal_.find(keys[i])) {
      answers[i] = *known;
      ++journal_hits_;
    } else {
      to_send.push_back(i);
    }
  }
  if (to_send.empty()) return answers;
  std::vector<HttpRequest> http;
  http.reserve(to_send.size());
  const auto url = config_.base_url + path;
  for (auto i : to_send) http.push_back({"POST", url, body(i).dump()});
  try {
    client_.run(http, [&](std::size_t k, const std::string& text) -> std::optional<std::string> {
      const auto response = nlohmann::json::parse(text, nullptr, false);
      if (response.is_discarded()) return "the body is not valid JSON: " + error_message_of(text);
      const auto i = to_send[k];
      auto parsed = parse(i, response);
      if (auto* reason = std::get_if<std::string>(&parsed)) return *reason;
      answers[i] = std::get<nlohmann::json>(std::move(parsed));
      journal_.record(keys[i], answers[i]);
      return std::nullopt;
    });
  } catch (const Error& e) {
    std::string message = e.what();
    if (config_.api_key.empty() && message.find("HTTP 401") != std::string::npos) {
      message += fmt::format(" (no API key: set the environment variable {})", config_.api_key_env);
    }
    throw Error(fmt::format("{} backend: {}", config_.backend_name, message), e.code());
  }
  return answers;
}

std::vector<LoglikelihoodResult> ApiBackend::loglikelihood(const std::vector<LoglikelihoodRequest>& requests) {
  if (!capabilities().loglikelihood) {
    throw Error(fmt::format("{} backend at {}: the server does not score prompts (echo with logprobs); only generative "
                            "tasks can use it",
                            config_.backend_name, redact_url(config_.base_url)),
                ExitCode::eval_failed);
  }
  const bool mill_server = server().kind == "mill";
  std::vector<nlohmann::json> logical;
  for (const auto& request : requests) {
    logical.push_back(
        {{"kind", "loglikelihood"}, {"context", request.context}, {"continuation", request.continuation}});
  }
  auto body = [&](std::size_t i) {
    const auto& request = requests[i];
    nlohmann::json payload = {{"model", model_name()}, {"prompt", request.context + request.continuation},
                              {"echo", true},          {"logprobs", 1},
                              {"temperature", 0},      {"max_tokens", mill_server ? 0 : 1}};
    // mill serve scores text spans rather than tokens; this tells it where the continuation starts.
    if (mill_server) {
      payload["mill_context_chars"] = utf8_length(request.context);
      payload["mill_text"] = true;
    }
    return payload;
  };
  auto parse = [&](std::size_t i, const nlohmann::json& response) -> std::variant<nlohmann::json, std::string> {
    const auto& request = requests[i];
    auto score = score_echoed_prompt(response, utf8_length(request.context),
                                     utf8_length(request.context) + utf8_length(request.continuation), true, false);
    if (auto* reason = std::get_if<std::string>(&score)) return *reason;
    const auto& value = std::get<EchoScore>(score);
    return nlohmann::json{{"logprob", value.logprob}, {"greedy", value.greedy}, {"n_tokens", value.n_tokens}};
  };
  const auto answers = exchange(logical, "/completions", body, parse);
  std::vector<LoglikelihoodResult> results;
  for (const auto& answer : answers) {
    results.push_back(
        {answer.at("logprob").get<double>(), answer.at("greedy").get<bool>(), answer.at("n_tokens").get<int>()});
  }
  return results;
}

std::vector<RollingResult> ApiBackend::loglikelihood_rolling(const std::vector<RollingRequest>& requests) {
  if (!capabilities().rolling) {
    throw Error(fmt::format("{} backend at {}: the server does not score prompts (echo with logprobs)",
                            config_.backend_name, redact_url(config_.base_url)),
                ExitCode::eval_failed);
  }
  // mill_text without mill_context_chars: mill serve scores the whole prompt with the backend's loglikelihood_rolling.
  const bool mill_server = server().kind == "mill";
  std::vector<nlohmann::json> logical;
  for (const auto& request : requests) logical.push_back({{"kind", "rolling"}, {"text", request.text}});
  auto body = [&](std::size_t i) {
    nlohmann::json payload = {{"model", model_name()}, {"prompt", requests[i].text},
                              {"echo", true},          {"logprobs", 0},
                              {"temperature", 0},      {"max_tokens", mill_server ? 0 : 1}};
    if (mill_server) payload["mill_text"] = true;
    return payload;
  };
  auto parse = [&](std::size_t i, const nlohmann::json& response) -> std::variant<nlohmann::json, std::string> {
    auto score = score_echoed_prompt(response, 0, utf8_length(requests[i].text), false, true);
    if (auto* reason = std::get_if<std::string>(&score)) return *reason;
    const auto& value = std::get<EchoScore>(score);
    return nlohmann::json{{"logprob", value.logprob}, {"n_tokens", value.n_tokens}};
  };
  const auto answers = exchange(logical, "/completions", body, parse);
  std::vector<RollingResult> results;
  for (const auto& answer : answers)
    results.push_back({answer.at("logprob").get<double>(), answer.at("n_tokens").get<int>()});
  return results;
}

std::vector<GenerationResult> ApiBackend::generate(const std::vector<GenerationRequest>& requests) {
  const bool chat = config_.endpoint == "chat";
  std::vector<nlohmann::json> logical;
  for (const auto& request : requests) {
    logical.push_back({{"kind", "generation"},
                       {"endpoint", config_.endpoint},
                       {"context", request.context},
                       {"stop", request.stop},
                       {"max_new_tokens", request.max_new_tokens}});
  }
  // Hosted APIs accept at most 4 stop sequences; the rest are applied here (cut_at_stop) after the answer.
  const auto& kind = config_.scores_prompts ? std::string("vllm") : server().kind;
  const std::size_t stop_limit = kind == "mill" || kind == "vllm" ? std::string::npos : 4;
  auto body = [&](std::size_t i) {
    const auto& request = requests[i];
    nlohmann::json payload = {{"model", model_name()}, {"max_tokens", request.max_new_tokens}, {"temperature", 0}};
    if (chat) {
      payload["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", request.context}}});
    } else {
      payload["prompt"] = request.context;
    }
    std::vector<std::string> stop;
    for (const auto& sequence : request.stop) {
      if (!sequence.empty() && stop.size() < stop_limit) stop.push_back(sequence);
    }
    if (!stop.empty()) payload["stop"] = stop;
    // mill serve then runs the backend's own generate(), exactly as evaluating in-process would.
    if (kind == "mill") payload["mill_text"] = true;
    return payload;
  };
  auto parse = [&](std::size_t i, const nlohmann::json& response) -> std::variant<nlohmann::json, std::string> {
    if (!response.is_object() || !response.contains("choices") || !response["choices"].is_array() ||
        response["choices"].empty() || !response["choices"][0].is_object()) {
      return std::string("no choices in the answer");
    }
    const auto& choice = response["choices"][0];
    std::string text;
    if (chat) {
      if (!choice.contains("message") || !choice["message"].is_object())
        return std::string("choices[0].message is missing");
      const auto& content = choice["message"].value("content", nlohmann::json());
      if (!content.is_string() && !content.is_null()) return std::string("choices[0].message.content is not text");
      text = text_or_empty(content);
    } else {
      if (!choice.contains("text") || !choice["text"].is_string()) return std::string("choices[0].text is missing");
      text = choice["text"].get<std::string>();
    }
    bool cut = false;
    text = cut_at_stop(std::move(text), requests[i].stop, &cut);
    const bool length = !cut && string_field(choice, "finish_reason") == "length";
    const auto n_tokens = static_cast<int>(integer_field(member(response, "usage"), "completion_tokens").value_or(0));
    return nlohmann::json{{"text", text}, {"hit_token_limit", length}, {"n_tokens", n_tokens}};
  };
  const auto answers = exchange(logical, chat ? "/chat/completions" : "/completions", body, parse);
  std::vector<GenerationResult> results;
  for (const auto& answer : answers) {
    results.push_back({answer.at("text").get<std::string>(), answer.at("hit_token_limit").get<bool>(),
                       answer.at("n_tokens").get<int>()});
  }
  return results;
}

}  // namespace mill
