#pragma once
// Scoring and aggregation: multiple-choice argmax, answer extraction for generated text, means with bootstrap
// standard errors (fixed seed, so a rerun reports the same numbers), corpus perplexity.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mill/base/regex.hpp"

namespace mill {

// Log-likelihood multiple choice, as lm-evaluation-harness scores it: the prediction is the first option with the
// highest log-likelihood (ties go to the lowest index); acc_norm divides each log-likelihood by the option's length
// in characters (Unicode code points, Python's len) first. With several correct options (multiple true targets) a
// prediction is correct when it is any of them.
struct ChoiceScore {
  int predicted = -1;
  int predicted_norm = -1;
  bool correct = false;
  bool correct_norm = false;
  bool greedy_correct = false;  // greedy decoding would have produced a correct continuation exactly
  double true_mass = 0;         // TruthfulQA MC2: softmax of the log-likelihoods summed over the correct options
};
ChoiceScore score_choices(const std::vector<double>& logprobs, const std::vector<std::size_t>& lengths,
                          const std::vector<bool>& greedy, const std::vector<int>& golds);
ChoiceScore score_choices(const std::vector<double>& logprobs, const std::vector<std::size_t>& lengths,
                          const std::vector<bool>& greedy, int gold);

// Ordered regexes (PCRE2, UTF-8, Unicode \b and \w as in Python): the first pattern that matches wins; its first
// capture group (or the whole match when it has none) is the answer. nullopt when none matches: the answer is unparsed.
class AnswerExtractor {
 public:
  explicit AnswerExtractor(const std::vector<std::string>& patterns);
  struct Match {
    std::string answer;
    std::size_t pattern = 0;  // which pattern matched
  };
  std::optional<Match> extract(const std::string& text) const;

 private:
  std::vector<Regex> patterns_;
};

// The MMLU-Pro extraction cascade of TIGER-Lab's evaluate_from_local.py (docs/tasks.md).
const std::vector<std::string>& mmlu_pro_answer_patterns();

double mean(const std::vector<double>& values);

// Standard error of a statistic by the bootstrap: `resamples` resamples with replacement drawn from a
// SplitMix64/xoshiro stream seeded with `seed`. Deterministic for given inputs.
inline constexpr std::uint64_t kBootstrapSeed = 1234;
inline constexpr int kBootstrapResamples = 1000;
double bootstrap_stderr_of_mean(const std::vector<double>& values, int resamples = kBootstrapResamples,
                                std::uint64_t seed = kBootstrapSeed);
// Same for a ratio of sums, sum(numerator)/sum(denominator) over resampled items, mapped through `transform`
// (perplexity = exp(nll/tokens)).
double bootstrap_stderr_of_ratio(const std::vector<double>& numerator, const std::vector<double>& denominator,
                                 double (*transform)(double), int resamples = kBootstrapResamples,
                                 std::uint64_t seed = kBootstrapSeed);

// sqrt(p(1-p)/(n-1)): the sample standard error of a mean of 0/1 values.
double binomial_stderr(double p, std::size_t n);

// What a metric's name says about its values: the one table the engine's tasks, collect, the report and the
// lm-eval export read. Fractions (acc, exact_match, ...) show as percentages; perplexities, nll, bits per byte and
// counts (tokens, bytes, lengths, seconds) as numbers. Higher is better for fractions except rates of failure
// (`*_rate`), lower for perplexity, nll and bits per byte, neither for counts (nullopt).
struct MetricKind {
  bool fraction = true;
  std::optional<bool> higher_is_better;
};
MetricKind metric_kind(std::string_view name);
inline bool is_fraction_metric(std::string_view name) { return metric_kind(name).fraction; }

}  // namespace mill
