#pragma once
// The model interface the evaluation engine talks to: three request kinds, sent in batches so a backend can
// sort them, share contexts and reuse prefixes. Backends: the in-process runtime (a plugin, see
// runtime_plugin.hpp), remote servers (vLLM, OpenAI-compatible APIs) and the built-in demo model.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/model/model_spec.hpp"
#include "mill/tokenizers/tokenizer.hpp"

namespace mill {

// log P(continuation | context). The backend tokenizes context+continuation together and splits at the
// context's token count, as the reference harnesses do.
struct LoglikelihoodRequest {
  std::string context;
  std::string continuation;
};
struct LoglikelihoodResult {
  double logprob = 0;     // sum over the continuation's tokens, natural log
  bool greedy = false;    // greedy decoding from the context would produce exactly the continuation's tokens
  int n_tokens = 0;       // continuation tokens scored
};

// log P(text), windowed over the model's context length.
struct RollingRequest {
  std::string text;
};
struct RollingResult {
  double logprob = 0;
  int n_tokens = 0;
};

// Greedy generation until a stop sequence, end of sequence or max_new_tokens.
struct GenerationRequest {
  std::string context;
  std::vector<std::string> stop;  // the text returned excludes the stop sequence
  int max_new_tokens = 256;
};
struct GenerationResult {
  std::string text;
  bool hit_token_limit = false;  // stopped because of max_new_tokens, not a stop sequence or EOS
  int n_tokens = 0;
};

// How the next token is chosen: temperature 0 is greedy decoding (the most likely token). Otherwise a token is
// drawn from softmax(log-probabilities / temperature), restricted to the smallest set of most likely tokens whose
// probability reaches top_p. The same seed, context and settings give the same tokens.
struct Sampling {
  double temperature = 0;
  double top_p = 1;
  std::uint64_t seed = 0;
};

struct TokenLogprob {
  TokenId id = 0;
  double logprob = 0;
};
// One position of a token sequence: log P(token | the tokens before it), and the `top` most likely tokens there
// (most likely first), all under the model's own distribution (before any temperature).
struct PositionLogprobs {
  double logprob = 0;
  std::vector<TokenLogprob> top;
};

struct TokenGenerationRequest {
  std::vector<TokenId> context;  // never empty
  int max_new_tokens = 16;
  Sampling sampling;
  int top_logprobs = -1;  // >= 0: report each token's log-probability and this many alternatives
  // Called after each generated token (EOS excluded) with the tokens so far, on the backend's thread; returning
  // false ends this request there (a stop sequence was found, the client left).
  std::function<bool(const std::vector<TokenId>& generated)> on_token;
};
struct TokenGenerationResult {
  std::vector<TokenId> tokens;             // EOS excluded
  std::vector<PositionLogprobs> logprobs;  // one per token when top_logprobs >= 0
  std::optional<TokenId> eos;              // the end-of-sequence token that ended the generation
  std::optional<PositionLogprobs> eos_logprobs;  // its log-probabilities, when top_logprobs >= 0
  bool hit_token_limit = false;            // max_new_tokens reached, not EOS and not stopped by on_token
};

// Below the text level, for `mill serve` (per-token log-probabilities, token-id prompts, usage counts, the model's
// chat template, sampling). Backends that only ever see text (remote servers, APIs) have none.
class TokenModel {
 public:
  virtual ~TokenModel() = default;
  // add_special_tokens: BOS/EOS as the tokenizer config says, as the backend does for plain text.
  virtual std::vector<TokenId> encode(const std::string& text, bool add_special_tokens) const = 0;
  // skip_special_tokens false: special tokens appear as their text (e.g. "<|endoftext|>").
  virtual std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const = 0;
  virtual std::size_t vocab_size() const = 0;
  virtual std::size_t max_length() const = 0;  // the most tokens one scored sequence may hold
  // The model's chat template rendered for `messages` with the assistant's turn opened; nullopt when the model
  // has no chat template.
  virtual std::optional<std::string> apply_chat_template(const std::vector<ChatMessage>& messages) const = 0;
  // For each sequence, one entry per position t >= 1: log P(ids[t] | ids[0..t-1]) and the `top` best tokens.
  virtual std::vector<std::vector<PositionLogprobs>> score_positions(const std::vector<std::vector<TokenId>>& sequences,
                                                                     int top) = 0;
  virtual std::vector<TokenGenerationResult> generate_tokens(const std::vector<TokenGenerationRequest>& requests) = 0;
};

struct BackendCapabilities {
  bool loglikelihood = false;
  bool rolling = false;
  bool generation = false;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  virtual BackendCapabilities capabilities() const = 0;
  // Facts for the result's provenance: device, dtype, batch_size, model path/revision, server...
  virtual nlohmann::json provenance() const = 0;
  // Each returns one result per request, in request order. Failures throw mill::Error.
  virtual std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>& requests) = 0;
  virtual std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>& requests) = 0;
  virtual std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& requests) = 0;
  // Below the text level, for checking a runtime against reference log-probabilities: for each sequence of
  // token ids, log P(ids[t+1] | ids[0..t]) for every t (no tokenization, no BOS added, one window). Backends
  // that never see token ids (servers, APIs) throw mill::Error.
  virtual std::vector<std::vector<double>> token_logprobs(const std::vector<std::vector<std::int32_t>>& sequences);
  // Token-level access (see TokenModel), or null for backends that see only text.
  virtual TokenModel* token_model() { return nullptr; }
};

// Creates the backend a spec names (ModelSpec::backend()). Unknown or unavailable backends throw mill::Error.
std::unique_ptr<ModelBackend> make_backend(const ModelSpec& spec);

}  // namespace mill
