#pragma once
// Choosing the next token from a model's log-probabilities (greedy, or temperature/top-p sampling with a seeded
// generator), and the `top` most likely tokens of a distribution. Shared by the demo model and the runtime so
// both sample the same way.
#include <cstdint>
#include <random>
#include <vector>

#include "mill/model/model.hpp"

namespace mill {

class TokenSampler {
 public:
  explicit TokenSampler(const Sampling& settings);
  // `logprobs` holds one natural-log probability per vocabulary entry. Greedy (temperature 0) takes the first
  // largest; sampling draws from softmax(logprobs / temperature) over the top_p nucleus.
  TokenId next(const float* logprobs, std::size_t vocab);
  TokenId next(const double* logprobs, std::size_t vocab);

 private:
  template <typename T>
  TokenId pick(const T* logprobs, std::size_t vocab);
  Sampling settings_;
  std::mt19937_64 generator_;
};

// The `top` entries of largest log-probability, largest first (ties: lower id first).
std::vector<TokenLogprob> top_logprobs(const float* logprobs, std::size_t vocab, int top);
std::vector<TokenLogprob> top_logprobs(const double* logprobs, std::size_t vocab, int top);

}  // namespace mill
