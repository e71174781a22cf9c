#pragma once
// `mill serve`: any ModelBackend behind the OpenAI-compatible protocol (docs/backends.md, "mill serve"):
//   GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions.
// Concurrent HTTP requests are gathered into batches for the backend.
//
// Backends with token-level access (ModelBackend::token_model(): the demo model, the in-process runtime) are served
// as an OpenAI server serves a model: prompts as text or token ids, per-token `logprobs` (with `echo`, the prompt's
// tokens too, the first one unscored), `usage` from the model's tokenizer, chat requests rendered with the model's
// chat template, sampling (`temperature`, `top_p`, `seed`) and `stream`.
//
// Text-only backends (a remote api/vllm backend behind mill serve), and requests carrying mill's own fields
// (`mill_text: true`, `mill_context_chars`; mill's api client sends them so that its numbers are exactly the
// backend's loglikelihood/loglikelihood_rolling/generate) go through the backend's text interface: greedy only, and
// log-probabilities of text *segments*: the fields OpenAI uses for tokens hold segments, plus mill_token_counts
// (model tokens per segment):
//   - mill_context_chars = C splits the prompt after C characters (the context): segment 1 = the context, unscored
//     (null), as OpenAI leaves a prompt's first token (absent when C = 0); segment 2 = the rest, scored as
//     loglikelihood(context, rest); its top_logprobs entry holds the greedy continuation of the same token count and
//     its log-probability (so "greedy" = the segment is its own top-1);
//   - otherwise one segment, the whole prompt, scored as loglikelihood_rolling(prompt);
//   - generated text (max_tokens > 0) is one more segment scored as loglikelihood(prompt, text).
// A client that sums the logprobs of the segments after the context gets exactly the backend's numbers.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "mill/model/model.hpp"
#include "mill/model/remote_plugin.hpp"

namespace mill {

// The protocol without the sockets: handlers that take a request body and give a status and a JSON answer. The
// tests put it behind their own (misbehaving) HTTP servers.
class OpenAiService {
 public:
  OpenAiService(ModelBackend& backend, std::string model_name, int max_batch = 64);
  ~OpenAiService();
  OpenAiService(const OpenAiService&) = delete;
  OpenAiService& operator=(const OpenAiService&) = delete;

  // Writes one piece of a streamed answer; false when the client has gone.
  using StreamWriter = std::function<bool(const std::string& data)>;
  struct Reply {
    int status = 200;
    nlohmann::json body;
    // Set for `stream: true` (then `body` is unused): sends the server-sent events through the writer and returns
    // when the answer is complete or the client has gone.
    std::function<void(const StreamWriter& write)> stream;
  };
  Reply completions(const std::string& body);
  Reply chat_completions(const std::string& body);
  Reply models() const;
  Reply health() const;

  const std::string& model_name() const { return model_name_; }

  // Backend calls, batched across concurrent HTTP requests (one backend call at a time).
  std::vector<LoglikelihoodResult> loglikelihood(std::vector<LoglikelihoodRequest> requests);
  std::vector<RollingResult> rolling(std::vector<RollingRequest> requests);
  std::vector<GenerationResult> generate(std::vector<GenerationRequest> requests);
  std::vector<std::vector<PositionLogprobs>> score_positions(std::vector<std::vector<TokenId>> sequences, int top);
  std::vector<TokenGenerationResult> generate_tokens(std::vector<TokenGenerationRequest> requests);

  struct Settings;  // a request's decoding and answer settings
  struct Prompt;    // one prompt as text and token ids

 private:
  struct Work;
  void batch_loop();
  // Queues `work` for the batching thread; `notify` (if any) runs when it is done.
  void submit(const std::shared_ptr<Work>& work);
  // Queues one kind of work (a Work::Kind) with its requests, waits until it is done (rethrowing its failure) and
  // returns its results.
  template <typename Request, typename Result>
  std::vector<Result> run_queued(int kind, std::vector<Request> requests, std::vector<Request> Work::*in,
                                 std::vector<Result> Work::*out, int top = 0);
  // A whole (not streamed) completion answer around its choices.
  Reply completion_reply(bool chat, nlohmann::json choices, long long prompt_tokens, long long completion_tokens);
  Reply complete_text(const nlohmann::json& request, const std::vector<std::string>& prompts, bool chat);
  Reply complete_tokens(const nlohmann::json& request, std::vector<Prompt> prompts, bool chat);
  Reply stream_tokens(const Settings& settings, std::vector<Prompt> prompts, bool chat);

  ModelBackend& backend_;
  std::string model_name_;
  int max_batch_;
  std::atomic<long long> next_id_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Work>> queue_;
  bool closing_ = false;
  std::thread worker_;
};

// Listens on options.host:options.port (0: a free port) until SIGINT or SIGTERM (or `*stop`), then returns.
// Binding failures throw mill::Error.
void run_openai_server(ModelBackend& backend, const ServeOptions& options, const std::atomic<bool>* stop = nullptr);

}  // namespace mill
