#pragma once
// The token-level engine behind the backend: scoring with length-sorted, padded batches, shared contexts and a
// shared few-shot prefix; rolling windows; greedy generation with a KV cache. It knows nothing of text.
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "mill/model/model.hpp"
#include "transformer.hpp"

namespace mill::runtime {

using Tokens = std::vector<std::int64_t>;

struct RuntimeSettings {
  std::int64_t max_context_length = 4096;
  std::int64_t batch_size = 0;   // rows per forward; 0 = auto (from the memory available)
  bool share_prefixes = true;    // group requests by context and reuse the common prefix (off: one row per request)
  bool generation_cache = true;  // off: every generated token recomputes the whole sequence (for checking)
  std::vector<std::int64_t> eos_ids;  // generation stops at any of these
};

struct ScoreRequest {
  Tokens context;  // never empty (the backend puts BOS/EOS in front of an empty context)
  Tokens continuation;
};
struct Score {
  double logprob = 0;
  bool greedy = true;
  int n_tokens = 0;
  std::vector<TokenLogprob> top;  // the most likely tokens at the (single) scored position, when asked for
};

struct GenerateRequest {
  Tokens context;
  int max_new_tokens = 256;
  Sampling sampling;      // temperature 0: greedy
  int top_logprobs = -1;  // >= 0: report each generated token's log-probability and this many alternatives
};
struct Generation {
  Tokens tokens;  // generated tokens, the EOS token excluded
  bool hit_token_limit = false;
  std::vector<PositionLogprobs> logprobs;  // one per token when top_logprobs >= 0
  std::optional<std::int64_t> eos;        // the end-of-sequence token that ended it
  std::optional<PositionLogprobs> eos_logprobs;
};
// Called after every generated token with the request index and its tokens so far; true stops that request.
using StopCheck = std::function<bool(std::size_t request, const Tokens& generated)>;

// Work done, for provenance and the P5 benchmark.
struct Counters {
  std::int64_t forward_tokens = 0;  // real (non-padding) tokens run through the model
  std::int64_t padded_tokens = 0;   // batch × length of every forward, padding included
  std::int64_t forwards = 0;
  std::int64_t prefix_tokens_reused = 0;  // shared-prefix tokens served from the KV cache instead of recomputed
};

class Runtime {
 public:
  Runtime(std::unique_ptr<Transformer> model, RuntimeSettings settings);

  std::vector<Score> score(const std::vector<ScoreRequest>& requests);
  // log P(tokens) for each text, with `prefix_token` as the first window's context, in windows of at most
  // max_context_length tokens.
  std::vector<Score> score_rolling(const std::vector<Tokens>& texts, std::int64_t prefix_token);
  std::vector<Generation> generate(const std::vector<GenerateRequest>& requests, const StopCheck& stop);
  // log P(ids[t+1] | ids[0..t]) for every t of each sequence, in one window (for checks against references).
  std::vector<std::vector<double>> score_tokens(const std::vector<Tokens>& sequences);
  // The same, with the `top` most likely tokens at every position.
  std::vector<std::vector<PositionLogprobs>> score_positions(const std::vector<Tokens>& sequences, int top);

  const Counters& counters() const { return counters_; }
  const Transformer& model() const { return *model_; }
  std::int64_t max_length() const { return max_length_; }
  const RuntimeSettings& settings() const { return settings_; }
  // Bytes a forward of `batch` rows × `length` new tokens over `keys` keys needs, roughly (for batch_size=auto).
  std::int64_t estimate_bytes(std::int64_t batch, std::int64_t length, std::int64_t keys) const;

 private:
  // One sequence of a scoring batch. Tokens of branch 0 (the trunk) see the prefix and earlier trunk tokens;
  // tokens of branch k > 0 also see earlier tokens of their own branch only, so several continuations of one
  // context share a single row (tree attention).
  struct Target {
    std::int32_t index;  // the row position whose next-token distribution scores `token`
    std::int64_t token;
    std::int32_t slot;
  };
  struct Row {
    // `trunk` (branch 0) at consecutive positions from `first_position`.
    Row(Tokens trunk, std::int64_t first_position);
    Tokens tokens, positions;
    std::vector<std::int32_t> branch;
    std::vector<Target> targets;
  };
  struct Prefix {
    Tokens tokens;
    KVCache cache;  // batch 1
  };
  void run_rows(std::vector<Row>& rows, const Prefix* prefix, std::vector<Score>& slots);
  void run_batch(const std::vector<const Row*>& batch, const Prefix* prefix, std::vector<Score>& slots);
  const Prefix& prefix_for(const Tokens& tokens);
  void generate_batch(const std::vector<std::size_t>& batch, const std::vector<GenerateRequest>& requests,
                      const StopCheck& stop, std::vector<Generation>& results);
  void add_forward(std::int64_t real_tokens, std::int64_t padded_tokens);

  std::unique_ptr<Transformer> model_;
  RuntimeSettings settings_;
  std::int64_t max_length_;
  std::int64_t memory_budget_;
  at::Device device_;
  Counters counters_;
  std::unique_ptr<Prefix> last_prefix_;  // the most recent shared prefix, kept across calls
  int top_ = 0;  // run_batch also records this many most likely tokens per scored position (score_positions)
};

}  // namespace mill::runtime
