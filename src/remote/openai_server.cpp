#include "mill/remote/openai_server.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <future>
#include <random>

#include "mill/base/error.hpp"
#include "mill/remote/openai_protocol.hpp"
#include "mill/base/text.hpp"
#include "mill/tokenizers/tokenizer.hpp"

namespace mill {

struct OpenAiService::Work {
  enum Kind { loglikelihood, rolling, generation, positions, token_generation } kind;
  std::vector<LoglikelihoodRequest> loglikelihood_requests;
  std::vector<RollingRequest> rolling_requests;
  std::vector<GenerationRequest> generation_requests;
  std::vector<std::vector<TokenId>> position_requests;
  int top = 0;  // alternatives per position (positions)
  std::vector<TokenGenerationRequest> token_generation_requests;
  std::vector<LoglikelihoodResult> loglikelihood_results;
  std::vector<RollingResult> rolling_results;
  std::vector<GenerationResult> generation_results;
  std::vector<std::vector<PositionLogprobs>> position_results;
  std::vector<TokenGenerationResult> token_generation_results;
  std::promise<void> done;
  std::function<void()> notify;  // runs on the batching thread once `done` is set
  std::size_t size() const {
    return loglikelihood_requests.size() + rolling_requests.size() + generation_requests.size() +
           position_requests.size() + token_generation_requests.size();
  }
};

// What a request asks for, read and checked once.
struct OpenAiService::Settings {
  bool chat = false;
  int max_tokens = 16;
  std::vector<std::string> stop;
  bool echo = false;
  bool logprobs = false;  // completions: `logprobs` present; chat: `logprobs: true`
  int top = 0;            // alternatives per token
  Sampling sampling;
  bool seeded = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

struct OpenAiService::Prompt {
  std::string text;            // what `echo` returns
  std::vector<TokenId> ids;    // what the model sees
  std::size_t added = 0;       // leading special tokens the tokenizer added to a text prompt (no characters)
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

// A handler's answer: a BadRequest becomes its error reply, any other failure one that names the model's error.
template <typename Handler>
OpenAiService::Reply answered(const Handler& handler) {
  try {
    return handler();
  } catch (const BadRequest& e) {
    return error_reply(e.status, e.message);
  } catch (const std::exception& e) {
    return error_reply(500, fmt::format("the model failed: {}", one_line(e.what())));
  }
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

bool present(const nlohmann::json& request, const char* name) {
  return request.contains(name) && !request[name].is_null();
}

double number_field(const nlohmann::json& request, const char* name, double fallback, double low, double high,
                    bool low_open = false) {
  if (!present(request, name)) return fallback;
  const auto& value = request[name];
  const double x = value.is_number() ? value.get<double>() : std::nan("");
  if (!value.is_number() || !std::isfinite(x) || x < low || x > high || (low_open && x == low)) {
    throw BadRequest{400, fmt::format("`{}` must be a number in {}{}..{}] (got {})", name, low_open ? "(" : "[", low,
                                      high, value.dump())};
  }
  return x;
}

bool bool_field(const nlohmann::json& request, const char* name) {
  if (!present(request, name)) return false;
  if (!request[name].is_boolean()) {
    throw BadRequest{400, fmt::format("`{}` must be true or false (got {})", name, request[name].dump())};
  }
  return request[name].get<bool>();
}

// Reads everything but the prompt. `token_level`: the backend can sample and report token log-probabilities.
OpenAiService::Settings read_settings(const nlohmann::json& request, bool chat, bool token_level) {
  OpenAiService::Settings settings;
  settings.chat = chat;
  for (const char* name : {"n", "best_of"}) {
    if (present(request, name) && request[name] != 1) {
      throw BadRequest{400, fmt::format("mill serve returns one choice per prompt: `{}` must be 1", name)};
    }
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    if (present(request, name) && request[name] != 0) {
      throw BadRequest{400, fmt::format("mill serve does not apply penalties: `{}` must be 0 or absent", name)};
    }
  }
  if (present(request, "logit_bias") && !request["logit_bias"].empty()) {
    throw BadRequest{400, "mill serve does not apply `logit_bias`: leave it empty or absent"};
  }
  if (present(request, "suffix") && request["suffix"] != "") {
    throw BadRequest{400, "mill serve does not insert text: `suffix` must be empty or absent"};
  }
  settings.stop = stop_sequences(request);
  if (chat) {
    settings.max_tokens =
        int_field(request, "max_completion_tokens", int_field(request, "max_tokens", 256, 0, 1 << 20), 0, 1 << 20);
    settings.logprobs = bool_field(request, "logprobs");
    settings.top = int_field(request, "top_logprobs", 0, 0, 20);
    if (present(request, "top_logprobs") && !settings.logprobs) {
      throw BadRequest{400, "`top_logprobs` needs `logprobs: true`"};
    }
  } else {
    settings.max_tokens = int_field(request, "max_tokens", 16, 0, 1 << 20);
    settings.echo = bool_field(request, "echo");
    settings.logprobs = present(request, "logprobs") && request["logprobs"] != false;
    settings.top = settings.logprobs ? int_field(request, "logprobs", 0, 0, 20) : 0;
  }
  // Absent temperature means greedy here (OpenAI's own default is 1): a scoring server should be deterministic
  // unless asked otherwise.
  settings.sampling.temperature = number_field(request, "temperature", 0, 0, 100);
  settings.sampling.top_p = number_field(request, "top_p", 1, 0, 1, true);
  if (present(request, "seed")) {
    if (!request["seed"].is_number_integer()) {
      throw BadRequest{400, fmt::format("`seed` must be a whole number (got {})", request["seed"].dump())};
    }
    const auto& seed = request["seed"];
    settings.sampling.seed = seed.is_number_unsigned() ? seed.get<std::uint64_t>()
                                                       : static_cast<std::uint64_t>(seed.get<std::int64_t>());
    settings.seeded = true;
  }
  settings.stream = bool_field(request, "stream");
  if (present(request, "stream_options")) {
    const auto& options = request["stream_options"];
    if (!options.is_object()) throw BadRequest{400, "`stream_options` must be an object"};
    if (!settings.stream) throw BadRequest{400, "`stream_options` needs `stream: true`"};
    settings.include_usage = bool_field(options, "include_usage");
  }
  if (!token_level) {
    if (settings.sampling.temperature != 0) {
      throw BadRequest{400, fmt::format("this model's backend only decodes greedily (it has no token-level access): "
                                        "`temperature` must be 0 (got {})",
                                        request["temperature"].dump())};
    }
    if (chat && settings.logprobs) {
      throw BadRequest{400, "this model's backend has no token-level access, so chat `logprobs` cannot be served: use "
                            "/v1/completions with echo and logprobs"};
    }
  }
  if (settings.stream && settings.logprobs) {
    throw BadRequest{400, "`logprobs` cannot be streamed: send `stream: false` to get log-probabilities"};
  }
  return settings;
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

std::vector<ChatMessage> chat_messages(const nlohmann::json& messages) {
  if (!messages.is_array() || messages.empty()) throw BadRequest{400, "`messages` must be a non-empty list"};
  for (const auto& message : messages) {
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
      throw BadRequest{400, "each message needs a `role` and a `content`"};
    }
  }
  std::vector<ChatMessage> out;
  for (const auto& message : messages) {
    out.push_back({message["role"].get<std::string>(), message_text(message.value("content", nlohmann::json()))});
  }
  return out;
}

// A single user message is the prompt as it is; a conversation becomes "Role: content" paragraphs ending with
// "Assistant:" (a backend works on text; mill applies no model-specific chat template here).
std::string render_chat(std::vector<ChatMessage> conversation) {
  if (conversation.size() == 1 && conversation[0].role == "user") return conversation[0].content;
  std::string prompt;
  for (auto& [role, content] : conversation) {
    if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    prompt += role + ": " + content + "\n\n";
  }
  return prompt + "Assistant:";
}

long long unix_seconds() { return static_cast<long long>(std::time(nullptr)); }

// How OpenAI lists a token whose bytes are not text on their own (part of a multi-byte character).
std::string token_display(const std::string& piece) {
  if (is_valid_utf8(piece)) return piece;
  std::string shown = "bytes:";
  for (unsigned char byte : piece) shown += fmt::format("\\x{:02x}", byte);
  return shown;
}

// The text each token of a sequence adds, decoded after up to three tokens before it, so that rules for a
// sequence's first token (SentencePiece drops its leading space) apply only where the sequence starts.
class TokenPieces {
 public:
  TokenPieces(const TokenModel& model, const std::vector<TokenId>& ids) : model_(model), ids_(ids) {}
  // The text `id` adds when it stands at `position` (after ids[0..position)).
  std::string piece(std::size_t position, TokenId id) {
    const std::size_t from = position >= 3 ? position - 3 : 0;
    std::vector<TokenId> window(ids_.begin() + static_cast<std::ptrdiff_t>(from),
                                ids_.begin() + static_cast<std::ptrdiff_t>(position));
    if (position != cached_position_) {
      cached_before_ = model_.decode(window, false);
      cached_position_ = position;
    }
    window.push_back(id);
    const auto after = model_.decode(window, false);
    if (after.compare(0, cached_before_.size(), cached_before_) == 0) return after.substr(cached_before_.size());
    return model_.decode({id}, false);
  }

 private:
  const TokenModel& model_;
  const std::vector<TokenId>& ids_;
  std::size_t cached_position_ = static_cast<std::size_t>(-1);
  std::string cached_before_;
};

// Characters (as utf8_length counts them) in a text built up piece by piece.
class CharCounter {
 public:
  void add(const std::string& bytes) {
    for (unsigned char byte : bytes) {
      if (!started_ || (byte & 0xC0) != 0x80) ++count_;
      started_ = true;
    }
  }
  std::size_t count() const { return count_; }

 private:
  bool started_ = false;
  std::size_t count_ = 0;
};

// How much of a text still being generated is safe to send: not the last (longest stop - 1) bytes, which may start a
// stop sequence, nor an unfinished UTF-8 character or a replacement character that the next token may complete.
std::size_t safe_prefix(const std::string& text, const std::vector<std::string>& stop) {
  std::size_t hold = 0;
  for (const auto& s : stop) hold = std::max(hold, s.empty() ? 0 : s.size() - 1);
  std::size_t end = text.size() > hold ? text.size() - hold : 0;
  const std::string replacement = "\xEF\xBF\xBD";
  while (end >= replacement.size() && text.compare(end - replacement.size(), replacement.size(), replacement) == 0) {
    end -= replacement.size();
  }
  // Back to the start of the last character; keep it only when it is complete.
  std::size_t start = end;
  while (start > 0 && (static_cast<unsigned char>(text[start - 1]) & 0xC0) == 0x80) --start;
  if (start > 0) {
    const auto lead = static_cast<unsigned char>(text[start - 1]);
    const std::size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (end - (start - 1) < length) end = start - 1;
  }
  return end;
}

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
      // One backend call over the requests of all gathered work, the results handed back in the same order.
      auto run = [&batch](auto requests_of, auto results_of, auto call) {
        std::remove_reference_t<decltype(requests_of(*batch.front()))> all;
        for (auto& work : batch) all.insert(all.end(), requests_of(*work).begin(), requests_of(*work).end());
        auto results = call(all);
        std::size_t at = 0;
        for (auto& work : batch) {
          const auto n = requests_of(*work).size();
          results_of(*work).assign(std::make_move_iterator(results.begin() + static_cast<std::ptrdiff_t>(at)),
                                   std::make_move_iterator(results.begin() + static_cast<std::ptrdiff_t>(at + n)));
          at += n;
        }
      };
      switch (batch.front()->kind) {
        case Work::loglikelihood:
          run([](Work& w) -> auto& { return w.loglikelihood_requests; },
              [](Work& w) -> auto& { return w.loglikelihood_results; },
              [this](const auto& all) { return backend_.loglikelihood(all); });
          break;
        case Work::rolling:
          run([](Work& w) -> auto& { return w.rolling_requests; }, [](Work& w) -> auto& { return w.rolling_results; },
              [this](const auto& all) { return backend_.loglikelihood_rolling(all); });
          break;
        case Work::generation:
          run([](Work& w) -> auto& { return w.generation_requests; },
              [](Work& w) -> auto& { return w.generation_results; },
              [this](const auto& all) { return backend_.generate(all); });
          break;
        case Work::positions: {
          int top = 0;
          for (auto& work : batch) top = std::max(top, work->top);
          run([](Work& w) -> auto& { return w.position_requests; }, [](Work& w) -> auto& { return w.position_results; },
              [this, top](const auto& all) { return backend_.token_model()->score_positions(all, top); });
          for (auto& work : batch) {  // each request gets the alternatives it asked for
            for (auto& sequence : work->position_results) {
              for (auto& position : sequence) {
                if (position.top.size() > static_cast<std::size_t>(work->top)) position.top.resize(work->top);
              }
            }
          }
          break;
        }
        case Work::token_generation:
          run([](Work& w) -> auto& { return w.token_generation_requests; },
              [](Work& w) -> auto& { return w.token_generation_results; },
              [this](const auto& all) { return backend_.token_model()->generate_tokens(all); });
          break;
      }
      for (auto& work : batch) work->done.set_value();
    } catch (...) {
      for (auto& work : batch) work->done.set_exception(std::current_exception());
    }
    for (auto& work : batch) {
      if (work->notify) work->notify();
    }
  }
}

void OpenAiService::submit(const std::shared_ptr<Work>& work) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(work);
  }
  wake_.notify_one();
}

template <typename Request, typename Result>
std::vector<Result> OpenAiService::run_queued(int kind, std::vector<Request> requests, std::vector<Request> Work::*in,
                                              std::vector<Result> Work::*out, int top) {
  if (requests.empty()) return {};
  auto work = std::make_shared<Work>();
  work->kind = static_cast<Work::Kind>(kind);
  (*work).*in = std::move(requests);
  work->top = top;
  auto done = work->done.get_future();
  submit(work);
  done.get();
  return std::move((*work).*out);
}

std::vector<LoglikelihoodResult> OpenAiService::loglikelihood(std::vector<LoglikelihoodRequest> requests) {
  return run_queued(Work::loglikelihood, std::move(requests), &Work::loglikelihood_requests, &Work::loglikelihood_results);
}

std::vector<RollingResult> OpenAiService::rolling(std::vector<RollingRequest> requests) {
  return run_queued(Work::rolling, std::move(requests), &Work::rolling_requests, &Work::rolling_results);
}

std::vector<GenerationResult> OpenAiService::generate(std::vector<GenerationRequest> requests) {
  return run_queued(Work::generation, std::move(requests), &Work::generation_requests, &Work::generation_results);
}

std::vector<std::vector<PositionLogprobs>> OpenAiService::score_positions(std::vector<std::vector<TokenId>> sequences,
                                                                         int top) {
  return run_queued(Work::positions, std::move(sequences), &Work::position_requests, &Work::position_results, top);
}

std::vector<TokenGenerationResult> OpenAiService::generate_tokens(std::vector<TokenGenerationRequest> requests) {
  return run_queued(Work::token_generation, std::move(requests), &Work::token_generation_requests,
                    &Work::token_generation_results);
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

namespace {

void check_model(const nlohmann::json& request, const std::string& served) {
  if (present(request, "model") && request["model"] != served) {
    throw BadRequest{
        404, fmt::format("The model `{}` does not exist; this server serves `{}`",
                         request["model"].is_string() ? request["model"].get<std::string>() : request["model"].dump(),
                         served)};
  }
}

nlohmann::json parse_object(const std::string& body) {
  auto request = nlohmann::json::parse(body, nullptr, false);
  if (request.is_discarded() || !request.is_object()) throw BadRequest{400, "the request body is not a JSON object"};
  return request;
}

bool is_id_list(const nlohmann::json& value) {
  return value.is_array() && !value.empty() &&
         std::all_of(value.begin(), value.end(), [](const auto& v) { return v.is_number_integer(); });
}

nlohmann::json usage(long long prompt_tokens, long long completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

std::string dump_event(const nlohmann::json& body) {
  return "data: " + body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

}  // namespace

OpenAiService::Reply OpenAiService::completions(const std::string& body) {
  return answered([&]() -> Reply {
    const auto request = parse_object(body);
    check_model(request, model_name_);
    const auto prompt = request.value("prompt", nlohmann::json());
    auto* tokens = backend_.token_model();
    // mill's own client asks for text segments scored by the backend's loglikelihood (see the header).
    if (!tokens || present(request, "mill_context_chars") || bool_field(request, "mill_text")) {
      std::vector<std::string> prompts;
      if (prompt.is_string()) {
        prompts.push_back(prompt.get<std::string>());
      } else if (prompt.is_array() && !prompt.empty() &&
                 std::all_of(prompt.begin(), prompt.end(), [](const auto& p) { return p.is_string(); })) {
        prompts = prompt.get<std::vector<std::string>>();
      } else if (prompt.is_array() && !prompt.empty() && (prompt[0].is_number_integer() || prompt[0].is_array())) {
        return error_reply(400, "token-id prompts are not supported for this model (its backend sees only text): "
                                "send `prompt` as text");
      } else {
        return error_reply(400, "`prompt` must be a string or a non-empty list of strings");
      }
      return complete_text(request, prompts, false);
    }
    // Text, a list of texts, a list of token ids, or a list of such lists.
    std::vector<nlohmann::json> items;
    if (prompt.is_string() || is_id_list(prompt)) {
      items.push_back(prompt);
    } else if (prompt.is_array() && !prompt.empty() && std::all_of(prompt.begin(), prompt.end(), [](const auto& p) {
                 return p.is_string() || is_id_list(p);
               })) {
      items.assign(prompt.begin(), prompt.end());
    } else {
      return error_reply(400, "`prompt` must be a string, a list of token ids, or a non-empty list of strings or of "
                              "token-id lists");
    }
    std::vector<Prompt> prompts;
    for (std::size_t i = 0; i < items.size(); ++i) {
      Prompt p;
      if (items[i].is_string()) {
        p.text = items[i].get<std::string>();
        p.ids = tokens->encode(p.text, true);
        const auto plain = tokens->encode(p.text, false);
        if (p.ids.size() > plain.size() &&
            std::equal(plain.begin(), plain.end(), p.ids.end() - static_cast<std::ptrdiff_t>(plain.size()))) {
          p.added = p.ids.size() - plain.size();
        }
      } else {
        for (const auto& id : items[i]) {
          const auto value = id.get<long long>();
          if (value < 0 || static_cast<std::size_t>(value) >= tokens->vocab_size()) {
            return error_reply(400, fmt::format("`prompt` holds token id {}, outside the model's vocabulary 0..{}",
                                                value, tokens->vocab_size() - 1));
          }
          p.ids.push_back(static_cast<TokenId>(value));
        }
        p.text = tokens->decode(p.ids, false);
      }
      if (p.ids.size() > tokens->max_length()) {
        return error_reply(400, fmt::format("`prompt`{} has {} tokens; the model's context holds at most {}",
                                            items.size() > 1 ? fmt::format(" {}", i) : std::string(), p.ids.size(),
                                            tokens->max_length()));
      }
      prompts.push_back(std::move(p));
    }
    return complete_tokens(request, std::move(prompts), false);
  });
}

OpenAiService::Reply OpenAiService::chat_completions(const std::string& body) {
  return answered([&]() -> Reply {
    const auto request = parse_object(body);
    check_model(request, model_name_);
    const auto messages = request.value("messages", nlohmann::json());
    auto* tokens = backend_.token_model();
    if (!tokens || bool_field(request, "mill_text")) {
      return complete_text(request, {render_chat(chat_messages(messages))}, true);
    }
    const auto conversation = chat_messages(messages);
    std::optional<std::string> rendered;
    try {
      rendered = tokens->apply_chat_template(conversation);
    } catch (const Error& e) {  // the template's raise_exception(): e.g. roles that do not alternate
      return error_reply(400, fmt::format("the model's chat template refused the messages: {}", one_line(e.what())));
    }
    Prompt p;
    if (rendered) {
      // The template writes the special tokens it wants (BOS included), as transformers' apply_chat_template does.
      p.text = *rendered;
      p.ids = tokens->encode(p.text, false);
    } else {
      static std::once_flag warned;
      std::call_once(warned, [] {
        spdlog::warn("the served model has no chat template: chat requests are rendered as plain text (a single user "
                     "message verbatim, else `Role: content` paragraphs and `Assistant:`)");
      });
      p.text = render_chat(conversation);
      p.ids = tokens->encode(p.text, true);
    }
    if (p.ids.size() > tokens->max_length()) {
      return error_reply(400, fmt::format("`messages` make a prompt of {} tokens; the model's context holds at most {}",
                                          p.ids.size(), tokens->max_length()));
    }
    return complete_tokens(request, {std::move(p)}, true);
  });
}

namespace {

// An answer computed whole, sent as server-sent events: one text chunk and one closing chunk per choice.
OpenAiService::Reply stream_whole(OpenAiService::Reply reply, bool chat, bool include_usage) {
  if (reply.status != 200) return reply;
  auto body = std::make_shared<nlohmann::json>(std::move(reply.body));
  reply.stream = [body, chat, include_usage](const OpenAiService::StreamWriter& write) {
    nlohmann::json head = {{"id", (*body)["id"]},
                           {"object", chat ? "chat.completion.chunk" : "text_completion"},
                           {"created", (*body)["created"]},
                           {"model", (*body)["model"]}};
    for (const auto& choice : (*body)["choices"]) {
      auto chunk = head;
      if (chat) {
        chunk["choices"] = {{{"index", choice["index"]},
                             {"delta", {{"role", "assistant"}, {"content", choice["message"]["content"]}}},
                             {"logprobs", nullptr},
                             {"finish_reason", nullptr}}};
      } else {
        chunk["choices"] = {
            {{"index", choice["index"]}, {"text", choice["text"]}, {"logprobs", nullptr}, {"finish_reason", nullptr}}};
      }
      if (!write(dump_event(chunk))) return;
      chunk["choices"][0][chat ? "delta" : "text"] = chat ? nlohmann::json::object() : nlohmann::json("");
      chunk["choices"][0]["finish_reason"] = choice["finish_reason"];
      if (!write(dump_event(chunk))) return;
    }
    if (include_usage) {
      auto chunk = head;
      chunk["choices"] = nlohmann::json::array();
      chunk["usage"] = (*body)["usage"];
      if (!write(dump_event(chunk))) return;
    }
    write("data: [DONE]\n\n");
  };
  return reply;
}

}  // namespace

OpenAiService::Reply OpenAiService::completion_reply(bool chat, nlohmann::json choices, long long prompt_tokens,
                                                     long long completion_tokens) {
  return {200,
          {{"id", fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", next_id_.fetch_add(1))},
           {"object", chat ? "chat.completion" : "text_completion"},
           {"created", unix_seconds()},
           {"model", model_name_},
           {"choices", std::move(choices)},
           {"usage", usage(prompt_tokens, completion_tokens)}}};
}

OpenAiService::Reply OpenAiService::complete_text(const nlohmann::json& request,
                                                  const std::vector<std::string>& prompts, bool chat) {
  const auto settings = read_settings(request, chat, false);
  auto reply = answered([&]() -> Reply {
    // Present (even 0): score the prompt after that many characters as a continuation. Absent: score it whole.
    const bool split_prompt = present(request, "mill_context_chars");
    const auto hint = static_cast<std::size_t>(int_field(request, "mill_context_chars", 0, 0, 1 << 30));

    // 1. Generation.
    std::vector<GenerationResult> generated(prompts.size());
    if (settings.max_tokens > 0) {
      std::vector<GenerationRequest> asks;
      for (const auto& p : prompts) asks.push_back({p, settings.stop, settings.max_tokens});
      generated = generate(std::move(asks));
    }

    // 2. Scores of the echoed prompt's segments and of the generated text.
    struct Segment {
      std::string text;
      std::optional<double> logprob;
      std::optional<int> n_tokens;
      nlohmann::json top = nullptr;
      std::size_t offset = 0;
    };
    std::vector<std::vector<Segment>> segments(prompts.size());
    std::vector<LoglikelihoodRequest> ll_asks;
    std::vector<std::pair<std::size_t, std::size_t>> ll_where;  // (prompt, segment)
    std::vector<RollingRequest> rolling_asks;
    std::vector<std::pair<std::size_t, std::size_t>> rolling_where;
    if (settings.logprobs) {
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        const auto& p = prompts[i];
        auto& list = segments[i];
        const std::size_t prompt_chars = utf8_length(p);
        if (settings.echo && !p.empty()) {
          const std::size_t context_chars = std::min(hint, prompt_chars);
          if (split_prompt) {
            const auto split = utf8_prefix_bytes(p, context_chars);
            if (split > 0) list.push_back({p.substr(0, split)});
            if (split < p.size()) {
              list.push_back({.text = p.substr(split), .offset = context_chars});
              ll_asks.push_back({p.substr(0, split), p.substr(split)});
              ll_where.emplace_back(i, list.size() - 1);
            }
          } else {
            list.push_back({p});
            rolling_asks.push_back({p});
            rolling_where.emplace_back(i, list.size() - 1);
          }
        }
        if (!generated[i].text.empty()) {
          list.push_back({.text = generated[i].text, .offset = prompt_chars});
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
        if (settings.top >= 1) {
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
      const std::string finish = settings.max_tokens == 0 || generated[i].hit_token_limit ? "length" : "stop";
      nlohmann::json choice = {{"index", i}, {"finish_reason", finish}};
      if (chat) {
        choice["message"] = {{"role", "assistant"}, {"content", generated[i].text}};
      } else {
        choice["text"] = (settings.echo ? prompts[i] : std::string()) + generated[i].text;
        if (settings.logprobs) {
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
    return completion_reply(chat, std::move(choices), prompt_tokens, completion_tokens);
  });
  return settings.stream ? stream_whole(std::move(reply), chat, settings.include_usage) : reply;
}

namespace {

// Each choice draws from its own generator: seed + choice index when the request has a seed, else a fresh one.
Sampling sampling_for(const OpenAiService::Settings& settings, std::size_t choice) {
  Sampling sampling = settings.sampling;
  if (settings.seeded) {
    sampling.seed = settings.sampling.seed + choice;
  } else {
    static std::mutex mutex;
    static std::random_device device;
    std::lock_guard lock(mutex);
    sampling.seed = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }
  return sampling;
}

// One generation request per prompt, as the settings ask (on_token is the caller's).
std::vector<TokenGenerationRequest> token_asks(const std::vector<OpenAiService::Prompt>& prompts,
                                               const OpenAiService::Settings& settings) {
  std::vector<TokenGenerationRequest> asks(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    asks[i].context = prompts[i].ids;
    asks[i].max_new_tokens = settings.max_tokens;
    asks[i].sampling = sampling_for(settings, i);
    asks[i].top_logprobs = settings.logprobs ? settings.top : -1;
  }
  return asks;
}

// The generated tokens' text, cut before the first stop sequence; `stopped` says whether one was found.
std::string generated_text(const TokenModel& model, const TokenGenerationResult& result,
                           const std::vector<std::string>& stop, bool* stopped) {
  auto text = model.decode(result.tokens, true);
  const auto cut = find_first_stop(text, stop);
  *stopped = cut != std::string::npos;
  if (*stopped) text.resize(cut);
  return text;
}

std::string finish_reason(const TokenGenerationResult& result, bool stopped, int max_tokens) {
  if (max_tokens == 0) return "length";
  return !stopped && result.hit_token_limit ? "length" : "stop";
}

}  // namespace

OpenAiService::Reply OpenAiService::complete_tokens(const nlohmann::json& request, std::vector<Prompt> prompts,
                                                    bool chat) {
  const auto settings = read_settings(request, chat, true);
  if (settings.stream) return stream_tokens(settings, std::move(prompts), chat);
  auto& model = *backend_.token_model();
  const bool echo_scores = settings.echo && settings.logprobs;

  std::vector<std::vector<PositionLogprobs>> prompt_scores(prompts.size());
  if (echo_scores) {
    std::vector<std::vector<TokenId>> sequences;
    for (const auto& p : prompts) sequences.push_back(p.ids);
    prompt_scores = score_positions(std::move(sequences), settings.top);
  }

  std::vector<TokenGenerationResult> generated(prompts.size());
  if (settings.max_tokens > 0) {
    auto asks = token_asks(prompts, settings);
    for (auto& ask : asks) {
      if (settings.stop.empty()) continue;
      // Stop sequences are looked for in the decoded text, so one split across tokens is still found.
      ask.on_token = [&model, &settings](const std::vector<TokenId>& so_far) {
        return find_first_stop(model.decode(so_far, true), settings.stop) == std::string::npos;
      };
    }
    generated = generate_tokens(std::move(asks));
  }

  nlohmann::json choices = nlohmann::json::array();
  long long prompt_tokens = 0, completion_tokens = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    const auto& result = generated[i];
    bool stopped = false;
    const auto text = generated_text(model, result, settings.stop, &stopped);
    prompt_tokens += static_cast<long long>(p.ids.size());
    completion_tokens += static_cast<long long>(result.tokens.size() + (result.eos ? 1 : 0));
    nlohmann::json choice = {{"index", i}, {"finish_reason", finish_reason(result, stopped, settings.max_tokens)}};

    // The generated tokens that make up the answer (those starting before a stop sequence), and the EOS token.
    std::vector<TokenId> sequence = p.ids;
    sequence.insert(sequence.end(), result.tokens.begin(), result.tokens.end());
    if (result.eos) sequence.push_back(*result.eos);
    TokenPieces pieces(model, sequence);
    struct Listed {
      std::size_t position;
      const PositionLogprobs* scores;  // null: unscored (a prompt's first token)
    };
    std::vector<Listed> listed;
    if (settings.logprobs) {
      if (echo_scores) {
        for (std::size_t t = 0; t < p.ids.size(); ++t) {
          listed.push_back({t, t == 0 ? nullptr : &prompt_scores[i][t - 1]});
        }
      }
      std::size_t bytes = 0;
      for (std::size_t g = 0; g < result.tokens.size() && g < result.logprobs.size(); ++g) {
        if (stopped && bytes >= text.size()) break;
        bytes += pieces.piece(p.ids.size() + g, result.tokens[g]).size();
        listed.push_back({p.ids.size() + g, &result.logprobs[g]});
      }
      if (result.eos && result.eos_logprobs && !stopped) listed.push_back({sequence.size() - 1, &*result.eos_logprobs});
    }

    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
      if (settings.logprobs) {
        nlohmann::json content = nlohmann::json::array();
        auto entry = [](const std::string& piece, double logprob) {
          nlohmann::json bytes = nlohmann::json::array();
          for (unsigned char byte : piece) bytes.push_back(static_cast<int>(byte));
          return nlohmann::json{{"token", token_display(piece)}, {"logprob", logprob}, {"bytes", bytes}};
        };
        for (const auto& item : listed) {
          const auto piece = pieces.piece(item.position, sequence[item.position]);
          auto token = entry(piece, item.scores->logprob);
          token["top_logprobs"] = nlohmann::json::array();
          for (const auto& alternative : item.scores->top) {
            token["top_logprobs"].push_back(entry(pieces.piece(item.position, alternative.id), alternative.logprob));
          }
          content.push_back(std::move(token));
        }
        choice["logprobs"] = {{"content", content}};
      } else {
        choice["logprobs"] = nullptr;
      }
    } else {
      choice["text"] = (settings.echo ? p.text : std::string()) + text;
      if (settings.logprobs) {
        nlohmann::json tokens = nlohmann::json::array(), logprobs = nlohmann::json::array(),
                       top = nlohmann::json::array(), offsets = nlohmann::json::array();
        // Offsets count characters of the prompt text (special tokens the tokenizer added take none), then of the
        // generated text after the whole prompt, echoed or not.
        CharCounter chars;
        std::size_t base = 0;
        bool in_prompt = true;
        for (const auto& item : listed) {
          const auto piece = pieces.piece(item.position, sequence[item.position]);
          if (in_prompt && item.position >= p.ids.size()) {  // the first generated token
            in_prompt = false;
            base = utf8_length(p.text);
            chars = CharCounter();
          }
          offsets.push_back(base + chars.count());
          if (item.position >= p.added) chars.add(piece);
          tokens.push_back(token_display(piece));
          if (!item.scores) {
            logprobs.push_back(nullptr);
            top.push_back(nullptr);
            continue;
          }
          logprobs.push_back(item.scores->logprob);
          nlohmann::json alternatives = nlohmann::json::object();
          for (const auto& alternative : item.scores->top) {
            const auto key = token_display(pieces.piece(item.position, alternative.id));
            if (!alternatives.contains(key)) alternatives[key] = alternative.logprob;
          }
          top.push_back(std::move(alternatives));
        }
        choice["logprobs"] = {
            {"tokens", tokens}, {"token_logprobs", logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
      } else {
        choice["logprobs"] = nullptr;
      }
    }
    choices.push_back(std::move(choice));
  }
  return completion_reply(chat, std::move(choices), prompt_tokens, completion_tokens);
}

OpenAiService::Reply OpenAiService::stream_tokens(const Settings& settings, std::vector<Prompt> prompts, bool chat) {
  Reply reply;
  const auto id = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", next_id_.fetch_add(1));
  const auto created = unix_seconds();
  auto shared_prompts = std::make_shared<std::vector<Prompt>>(std::move(prompts));
  reply.stream = [this, settings, chat, id, created, shared_prompts](const StreamWriter& write) {
    auto& model = *backend_.token_model();
    const auto& prompts = *shared_prompts;
    auto chunk = [&](nlohmann::json choices) {
      return nlohmann::json{{"id", id},
                            {"object", chat ? "chat.completion.chunk" : "text_completion"},
                            {"created", created},
                            {"model", model_name_},
                            {"choices", std::move(choices)}};
    };
    auto event = [&](std::size_t index, const std::string& text, const nlohmann::json& finish, bool first) {
      nlohmann::json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish}};
      if (chat) {
        choice["delta"] = nlohmann::json::object();
        if (first) choice["delta"]["role"] = "assistant";
        if (!text.empty() || first) choice["delta"]["content"] = text;
      } else {
        choice["text"] = text;
      }
      return dump_event(chunk(nlohmann::json::array({choice})));
    };
    bool open = true;
    auto send = [&](const std::string& data) { open = open && write(data); };
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      if (chat || settings.echo) send(event(i, chat ? std::string() : prompts[i].text, nullptr, true));
    }

    // Pieces of text go from the backend's thread (on_token) to this one through the channel.
    struct Channel {
      std::mutex mutex;
      std::condition_variable changed;
      std::deque<std::pair<std::size_t, std::string>> pieces;
      std::vector<std::string> sent;  // per choice: the text handed over so far
      bool finished = false;
      std::atomic<bool> gone{false};
    };
    auto channel = std::make_shared<Channel>();
    channel->sent.resize(prompts.size());
    std::vector<TokenGenerationResult> results(prompts.size());
    if (settings.max_tokens > 0) {
      auto work = std::make_shared<Work>();
      work->kind = Work::token_generation;
      work->token_generation_requests = token_asks(prompts, settings);
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        auto& ask = work->token_generation_requests[i];
        ask.on_token = [channel, &model, stop = settings.stop, i](const std::vector<TokenId>& so_far) {
          if (channel->gone.load()) return false;
          const auto text = model.decode(so_far, true);
          const auto cut = find_first_stop(text, stop);
          const auto end = cut != std::string::npos ? cut : safe_prefix(text, stop);
          std::lock_guard lock(channel->mutex);
          auto& sent = channel->sent[i];
          if (end > sent.size() && text.compare(0, sent.size(), sent) == 0) {
            channel->pieces.emplace_back(i, text.substr(sent.size(), end - sent.size()));
            sent = text.substr(0, end);
            channel->changed.notify_all();
          }
          return cut == std::string::npos;
        };
      }
      work->notify = [channel] {
        std::lock_guard lock(channel->mutex);
        channel->finished = true;
        channel->changed.notify_all();
      };
      auto done = work->done.get_future();
      submit(work);
      while (true) {
        std::unique_lock lock(channel->mutex);
        channel->changed.wait(lock, [&] { return channel->finished || !channel->pieces.empty(); });
        auto pieces = std::move(channel->pieces);
        channel->pieces.clear();
        const bool finished = channel->finished;
        lock.unlock();
        for (const auto& [index, text] : pieces) send(event(index, text, nullptr, false));
        if (!open) channel->gone.store(true);
        if (finished) break;
      }
      try {
        done.get();
      } catch (const std::exception& e) {
        const auto message = fmt::format("the model failed: {}", one_line(e.what()));
        send(dump_event(error_body(message, "InternalServerError", 500)));
        send("data: [DONE]\n\n");
        return;
      }
      results = std::move(work->token_generation_results);
    }
    long long prompt_tokens = 0, completion_tokens = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      bool stopped = false;
      const auto text = generated_text(model, results[i], settings.stop, &stopped);
      const auto& sent = channel->sent[i];
      const auto rest = text.compare(0, sent.size(), sent) == 0 ? text.substr(sent.size()) : std::string();
      if (!rest.empty()) send(event(i, rest, nullptr, false));
      send(event(i, "", finish_reason(results[i], stopped, settings.max_tokens), false));
      prompt_tokens += static_cast<long long>(prompts[i].ids.size());
      completion_tokens += static_cast<long long>(results[i].tokens.size() + (results[i].eos ? 1 : 0));
    }
    if (settings.include_usage) {
      auto last = chunk(nlohmann::json::array());
      last["usage"] = usage(prompt_tokens, completion_tokens);
      send(dump_event(last));
    }
    send("data: [DONE]\n\n");
  };
  return reply;
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
    if (reply.stream) {
      // Server-sent events, written as the answer is generated (chunked transfer encoding).
      response.set_header("Cache-Control", "no-cache");
      auto stream = reply.stream;
      response.set_chunked_content_provider("text/event-stream", [stream](std::size_t, httplib::DataSink& sink) {
        stream([&sink](const std::string& data) { return sink.write(data.data(), data.size()); });
        sink.done();
        return true;
      });
      return;
    }
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
