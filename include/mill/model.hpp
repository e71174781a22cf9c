#pragma once
// The model interface the evaluation engine talks to: three request kinds, sent in batches so a backend can
// sort them, share contexts and reuse prefixes. Backends: the in-process runtime (a plugin, see
// runtime_plugin.hpp), remote servers (vLLM, OpenAI-compatible APIs) and the built-in demo model.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/model_spec.hpp"

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
};

// Creates the backend a spec names (ModelSpec::backend()). Unknown or unavailable backends throw mill::Error.
std::unique_ptr<ModelBackend> make_backend(const ModelSpec& spec);

}  // namespace mill
