#pragma once
// `mill-demo`: a tiny, deterministic language model built into mill so that the whole pipeline (planner, SLURM
// workers, results, collect) runs without downloads or libtorch. It is a byte-level bigram model whose weights are
// pseudo-random numbers drawn from a seed: a real LM that answers all three request kinds honestly, but its
// scores mean nothing.
//   mill-demo[seed=N,batch_size=B,delay_ms=D]   (delay_ms slows each batch down, for interruption tests)
#include <array>
#include <memory>
#include <vector>

#include "mill/model/model.hpp"

namespace mill {

// Its tokens are the bytes (ids 0..255) and end-of-sequence (256, "<|endoftext|>", also the start-of-text row).
class DemoBackend final : public ModelBackend, public TokenModel {
 public:
  static constexpr int kVocab = 257;  // bytes 0..255 and end-of-sequence
  static constexpr int kEos = 256;
  static constexpr int kBos = 256;    // the row used before the first byte

  explicit DemoBackend(const ModelSpec& spec);

  BackendCapabilities capabilities() const override { return {true, true, true}; }
  nlohmann::json provenance() const override;
  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>& requests) override;
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>& requests) override;
  std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& requests) override;
  TokenModel* token_model() override { return this; }

  // TokenModel: add_special_tokens puts the start-of-text token in front; there is no chat template.
  std::vector<TokenId> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const override;
  std::size_t vocab_size() const override { return kVocab; }
  std::size_t max_length() const override { return std::size_t{1} << 20; }
  std::optional<std::string> apply_chat_template(const std::vector<ChatMessage>&) const override { return std::nullopt; }
  std::vector<std::vector<PositionLogprobs>> score_positions(const std::vector<std::vector<TokenId>>& sequences,
                                                             int top) override;
  std::vector<TokenGenerationResult> generate_tokens(const std::vector<TokenGenerationRequest>& requests) override;

  // log P(next | previous), previous in 0..256 (256 = start of text).
  double logprob(int previous, int next) const { return table_[static_cast<std::size_t>(previous) * kVocab + next]; }
  int greedy_next(int previous) const { return argmax_[static_cast<std::size_t>(previous)]; }

 private:
  void pause() const;
  unsigned long long seed_ = 0;
  int batch_size_ = 16;
  int delay_ms_ = 0;
  std::vector<double> table_;
  std::vector<int> argmax_;
};

}  // namespace mill
