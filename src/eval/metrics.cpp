#include "mill/eval/metrics.hpp"

#include <algorithm>
#include <cmath>

namespace mill {

ChoiceScore score_choices(const std::vector<double>& logprobs, const std::vector<std::size_t>& lengths,
                          const std::vector<bool>& greedy, const std::vector<int>& golds) {
  ChoiceScore score;
  if (logprobs.empty()) return score;
  double best = 0;
  double best_norm = 0;
  for (std::size_t i = 0; i < logprobs.size(); ++i) {
    const double norm = logprobs[i] / static_cast<double>(std::max<std::size_t>(1, lengths.at(i)));
    if (score.predicted < 0 || logprobs[i] > best) {
      best = logprobs[i];
      score.predicted = static_cast<int>(i);
    }
    if (score.predicted_norm < 0 || norm > best_norm) {
      best_norm = norm;
      score.predicted_norm = static_cast<int>(i);
    }
  }
  auto is_gold = [&](int index) { return std::find(golds.begin(), golds.end(), index) != golds.end(); };
  score.correct = is_gold(score.predicted);
  score.correct_norm = is_gold(score.predicted_norm);
  for (int gold : golds) {
    if (gold >= 0 && static_cast<std::size_t>(gold) < greedy.size() && greedy[static_cast<std::size_t>(gold)]) {
      score.greedy_correct = true;
    }
  }
  // exp(ll) / sum(exp(ll)) computed from the largest log-likelihood: the same value as lm-eval's direct form, which
  // underflows to 0/0 only for continuations far less likely than any float64 can hold.
  double total = 0;
  double mass = 0;
  for (std::size_t i = 0; i < logprobs.size(); ++i) {
    const double weight = std::exp(logprobs[i] - best);
    total += weight;
    if (is_gold(static_cast<int>(i))) mass += weight;
  }
  score.true_mass = total > 0 ? mass / total : 0;
  return score;
}

ChoiceScore score_choices(const std::vector<double>& logprobs, const std::vector<std::size_t>& lengths,
                          const std::vector<bool>& greedy, int gold) {
  return score_choices(logprobs, lengths, greedy, std::vector<int>{gold});
}

AnswerExtractor::AnswerExtractor(const std::vector<std::string>& patterns) {
  for (const auto& pattern : patterns) patterns_.emplace_back(pattern, "answer extraction pattern");
}

std::optional<AnswerExtractor::Match> AnswerExtractor::extract(const std::string& text) const {
  for (std::size_t p = 0; p < patterns_.size(); ++p) {
    // No match (or a match-time limit): try the next pattern.
    if (auto answer = patterns_[p].first(text)) return Match{std::move(*answer), p};
  }
  return std::nullopt;
}

const std::vector<std::string>& mmlu_pro_answer_patterns() {
  static const std::vector<std::string> patterns = {
      R"(answer is \(?([A-J])\)?)",
      R"(.*[aA]nswer:\s*([A-J]))",
      R"((?s)\b[A-J]\b(?!.*\b[A-J]\b))",
  };
  return patterns;
}

double mean(const std::vector<double>& values) {
  if (values.empty()) return std::nan("");
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

namespace {

// xoshiro256** seeded by SplitMix64: small, fast and identical on every platform (std::mt19937's distributions
// are not specified bit for bit across standard libraries).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& word : state_) {
      seed += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      word = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const auto result = rotl(state_[1] * 5, 7) * 9;
    const auto t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-40 for any n here).
  std::size_t below(std::size_t n) {
    return static_cast<std::size_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

double sample_stddev(const std::vector<double>& values) {
  if (values.size() < 2) return std::nan("");
  const double m = mean(values);
  double sum = 0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size() - 1));
}

}  // namespace

double bootstrap_stderr_of_mean(const std::vector<double>& values, int resamples, std::uint64_t seed) {
  if (values.size() < 2 || resamples < 2) return std::nan("");
  Rng rng(seed);
  std::vector<double> means;
  means.reserve(static_cast<std::size_t>(resamples));
  for (int r = 0; r < resamples; ++r) {
    double sum = 0;
    for (std::size_t i = 0; i < values.size(); ++i) sum += values[rng.below(values.size())];
    means.push_back(sum / static_cast<double>(values.size()));
  }
  return sample_stddev(means);
}

double bootstrap_stderr_of_ratio(const std::vector<double>& numerator, const std::vector<double>& denominator,
                                 double (*transform)(double), int resamples, std::uint64_t seed) {
  const auto n = numerator.size();
  if (n < 2 || denominator.size() != n || resamples < 2) return std::nan("");
  Rng rng(seed);
  std::vector<double> stats;
  stats.reserve(static_cast<std::size_t>(resamples));
  for (int r = 0; r < resamples; ++r) {
    double top = 0;
    double bottom = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto k = rng.below(n);
      top += numerator[k];
      bottom += denominator[k];
    }
    const double ratio = bottom > 0 ? top / bottom : std::nan("");
    stats.push_back(transform ? transform(ratio) : ratio);
  }
  return sample_stddev(stats);
}

double binomial_stderr(double p, std::size_t n) {
  if (n < 2) return std::nan("");
  return std::sqrt(p * (1 - p) / static_cast<double>(n - 1));
}

MetricKind metric_kind(std::string_view name) {
  const auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  if (has("perplexity") || has("bits_per") || name == "nll") return {false, false};
  for (const char* count : {"nll", "bytes", "tokens", "length", "seconds", "count"}) {
    if (has(count)) return {false, std::nullopt};
  }
  const bool failure_rate = name.size() >= 5 && name.substr(name.size() - 5) == "_rate";
  return {true, !failure_rate};
}

}  // namespace mill
