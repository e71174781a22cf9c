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
  // `logprobs` (float or double) holds one natural-log probability per vocabulary entry. Greedy (temperature 0)
  // takes the first largest; sampling draws from softmax(logprobs / temperature) over the top_p nucleus.
  template <typename T>
  TokenId next(const T* logprobs, std::size_t vocab);

 private:
  Sampling settings_;
  std::mt19937_64 generator_;
};

// The `top` entries of largest log-probability (float or double), largest first (ties: lower id first).
template <typename T>
std::vector<TokenLogprob> top_logprobs(const T* logprobs, std::size_t vocab, int top);

}  // namespace mill
