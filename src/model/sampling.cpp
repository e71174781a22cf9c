#include "mill/model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mill {

TokenSampler::TokenSampler(const Sampling& settings) : settings_(settings), generator_(settings.seed) {}

template <typename T>
TokenId TokenSampler::next(const T* logprobs, std::size_t vocab) {
  if (vocab == 0) return 0;
  if (settings_.temperature <= 0) {
    return static_cast<TokenId>(std::max_element(logprobs, logprobs + vocab) - logprobs);
  }
  // Probabilities at the temperature, largest first; then the nucleus: the fewest tokens whose mass reaches top_p.
  std::vector<TokenId> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](TokenId a, TokenId b) { return logprobs[a] > logprobs[b]; });
  const double largest = static_cast<double>(logprobs[order[0]]);
  std::vector<double> weights(vocab);
  double total = 0;
  for (std::size_t i = 0; i < vocab; ++i) {
    weights[i] = std::exp((static_cast<double>(logprobs[order[i]]) - largest) / settings_.temperature);
    total += weights[i];
  }
  std::size_t kept = vocab;
  if (settings_.top_p < 1) {
    double mass = 0;
    for (std::size_t i = 0; i < vocab; ++i) {
      mass += weights[i] / total;
      if (mass >= settings_.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  const double kept_total = std::accumulate(weights.begin(), weights.begin() + static_cast<std::ptrdiff_t>(kept), 0.0);
  // 53 random bits as a uniform number in [0, 1): the same on every platform, unlike std::uniform_real_distribution.
  const double draw = static_cast<double>(generator_() >> 11) * 0x1.0p-53 * kept_total;
  double cumulative = 0;
  for (std::size_t i = 0; i < kept; ++i) {
    cumulative += weights[i];
    if (draw < cumulative) return order[i];
  }
  return order[kept - 1];
}
template TokenId TokenSampler::next(const float*, std::size_t);
template TokenId TokenSampler::next(const double*, std::size_t);

template <typename T>
std::vector<TokenLogprob> top_logprobs(const T* logprobs, std::size_t vocab, int top) {
  const auto n = std::min<std::size_t>(vocab, static_cast<std::size_t>(std::max(0, top)));
  std::vector<TokenId> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(), [&](TokenId a, TokenId b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  });
  std::vector<TokenLogprob> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back({ids[i], static_cast<double>(logprobs[ids[i]])});
  return out;
}
template std::vector<TokenLogprob> top_logprobs(const float*, std::size_t, int);
template std::vector<TokenLogprob> top_logprobs(const double*, std::size_t, int);

}  // namespace mill
