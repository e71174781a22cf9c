#pragma once
// The OpenAI-compatible API backend: `api[model=...,base_url=...]` (also spelled `litellm[...]`), and the client
// half of the vllm backend. One prompt per HTTP request, many in flight; every answer is journaled
// (request_journal.hpp). How the three request kinds map onto /v1/completions is described in docs/backends.md:
//   log-likelihood:  prompt = context + continuation, echo, logprobs=1; the continuation's tokens are those whose
//                    text ends after the context (text_offset); greedy = each is its position's top-1 token.
//   rolling:         prompt = text, echo; the sum over every scored prompt token.
//   generation:      /v1/completions (or /v1/chat/completions with endpoint=chat), temperature 0, stop sequences.
#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "mill/remote/http_client.hpp"
#include "mill/model/model.hpp"
#include "mill/model/model_args.hpp"
#include "mill/remote/request_journal.hpp"

namespace mill {

struct ApiBackendConfig {
  std::string base_url = "https://api.openai.com/v1";  // normalised by normalize_base_url
  std::string model;                                   // empty: the first model the server lists
  std::string api_key;                                 // sent as a bearer token only; never logged or stored
  std::string api_key_env = "OPENAI_API_KEY";          // for provenance and messages (the name, not the value)
  std::string endpoint = "completions";                // or "chat" for generation
  int concurrency = 8;
  RetryPolicy retry;
  std::filesystem::path journal_dir;  // empty: no request journal
  std::string journal_scope;          // the model's identity
  // Whether the server scores prompts (echo + logprobs). Unset: asked from GET /models (owned_by vllm or mill).
  std::optional<bool> scores_prompts;
  std::string backend_name = "api";  // for provenance
};

// The config an `api[...]`/`litellm[...]` spec describes, the key read from the environment variable it names.
ApiBackendConfig api_config_from_spec(const ModelSpec& spec);

// The client arguments the api and vllm backends share (read by read_api_args/read_vllm_args), with this
// backend's default concurrency; also the request journal's directory and scope for `spec`.
void apply_client_args(const ModelSpec& spec, const ClientArgs& args, int default_concurrency, ApiBackendConfig& config);

// Scoring an echoed prompt (exposed for tests). `context_chars`/`prompt_chars` are in characters (text_offset's
// unit). Returns the continuation's score, or why the answer cannot be used.
struct EchoScore {
  double logprob = 0;
  bool greedy = true;
  int n_tokens = 0;
};
std::variant<EchoScore, std::string> score_echoed_prompt(const nlohmann::json& response, std::size_t context_chars,
                                                         std::size_t prompt_chars, bool need_greedy,
                                                         bool allow_unscored);

// Cuts `text` at the earliest occurrence of any stop sequence (servers that ignore `stop` still stop right).
std::string cut_at_stop(std::string text, const std::vector<std::string>& stop, bool* cut = nullptr);

class ApiBackend final : public ModelBackend {
 public:
  explicit ApiBackend(ApiBackendConfig config);

  BackendCapabilities capabilities() const override;
  nlohmann::json provenance() const override;
  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>& requests) override;
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>& requests) override;
  std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& requests) override;

  const HttpStats& http_stats() const { return client_.stats(); }
  std::size_t journal_hits() const { return journal_hits_; }

 private:
  struct ServerInfo {
    std::string kind = "unknown";  // "mill", "vllm" or what owned_by said
    std::string first_model;
    std::string probe_error;
    bool unreachable = false;  // no HTTP answer at all (refused, unresolvable, timed out)
  };
  const ServerInfo& server() const;
  const std::string& model_name() const;
  // Sends what the journal does not already hold; returns one answer per request.
  using Parse =
      std::function<std::variant<nlohmann::json, std::string>(std::size_t index, const nlohmann::json& response)>;
  std::vector<nlohmann::json> exchange(const std::vector<nlohmann::json>& logical, const std::string& path,
                                       const std::function<nlohmann::json(std::size_t)>& body, const Parse& parse);

  ApiBackendConfig config_;
  mutable HttpClient client_;
  RequestJournal journal_;
  mutable std::once_flag probe_once_;
  mutable ServerInfo server_;
  mutable std::string model_;
  std::size_t journal_hits_ = 0;
};

}  // namespace mill
