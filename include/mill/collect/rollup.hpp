#pragma once
// Benchmark rollups (micro and macro averages over a benchmark's subject tasks) with standard errors that treat
// the subjects as strata, plus the resampling tools collect uses: a stratified bootstrap and a seeded RNG.
// The formulas are written out in docs/collect.md.
#include <cstdint>
#include <optional>
#include <vector>

#include "mill/eval/metrics.hpp"

namespace mill {

// One subject task's score as its result file states it.
struct StratumEstimate {
  double value = 0;               // the task's mean score
  std::optional<double> standard_error;  // its standard error; absent when the result gives none
  long long n = 0;                // samples it averages
};

struct RollupEstimate {
  double value = 0;
  std::optional<double> standard_error;  // absent when any subject lacks a standard error
  long long n = 0;                // total samples
  int n_tasks = 0;
};

// Sample-weighted mean over subjects: Σ n_t·p_t / N, SE = sqrt(Σ (n_t/N)²·se_t²). Every question counts once.
RollupEstimate micro_average(const std::vector<StratumEstimate>& subjects);
// Subject mean: Σ p_t / K, SE = sqrt(Σ se_t²) / K. Every subject counts once, whatever its size.
RollupEstimate macro_average(const std::vector<StratumEstimate>& subjects);


// A fixed-seed generator whose draws are the same on every platform (std:: distributions are not).
class SeededRng {
 public:
  explicit SeededRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();              // splitmix64
  std::size_t below(std::size_t n);  // uniform in [0, n)
 private:
  std::uint64_t state_;
};

inline constexpr std::uint64_t kRollupBootstrapSeed = 20240229;

struct StratifiedBootstrap {
  double micro_stderr = 0;
  double macro_stderr = 0;
  std::vector<double> micro_replicates;  // kept for percentile intervals
  std::vector<double> macro_replicates;
};

// Resamples each subject's per-sample scores with replacement (subjects are strata: each keeps its size) and
// returns the standard deviation of the micro and macro averages over `replicates` draws.
StratifiedBootstrap stratified_bootstrap(const std::vector<std::vector<double>>& subjects, int replicates,
                                         std::uint64_t seed = kRollupBootstrapSeed);

// Sample standard deviation (n-1) of `values`; 0 for fewer than two.
double sample_stddev(const std::vector<double>& values);

}  // namespace mill
