#include "mill/collect/rollup.hpp"

#include <cmath>

namespace mill {

RollupEstimate micro_average(const std::vector<StratumEstimate>& subjects) {
  RollupEstimate out;
  out.n_tasks = static_cast<int>(subjects.size());
  for (const auto& s : subjects) out.n += s.n;
  if (subjects.empty() || out.n <= 0) {
    // Without sample counts the only honest weighting is none at all; report nothing rather than guess.
    out.value = std::nan("");
    return out;
  }
  const double total = static_cast<double>(out.n);
  double sum = 0, variance = 0;
  bool have_stderr = true;
  for (const auto& s : subjects) {
    const double weight = static_cast<double>(s.n) / total;
    sum += weight * s.value;
    if (s.standard_error) {
      variance += weight * weight * (*s.standard_error) * (*s.standard_error);
    } else {
      have_stderr = false;
    }
  }
  out.value = sum;
  if (have_stderr) out.standard_error = std::sqrt(variance);
  return out;
}

RollupEstimate macro_average(const std::vector<StratumEstimate>& subjects) {
  RollupEstimate out;
  out.n_tasks = static_cast<int>(subjects.size());
  if (subjects.empty()) {
    out.value = std::nan("");
    return out;
  }
  const double k = static_cast<double>(subjects.size());
  double sum = 0, variance = 0;
  bool have_stderr = true;
  for (const auto& s : subjects) {
    out.n += s.n;
    sum += s.value;
    if (s.standard_error) {
      variance += (*s.standard_error) * (*s.standard_error);
    } else {
      have_stderr = false;
    }
  }
  out.value = sum / k;
  if (have_stderr) out.standard_error = std::sqrt(variance) / k;
  return out;
}

std::uint64_t SeededRng::next() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::size_t SeededRng::below(std::size_t n) {
  // Multiply-shift maps 64 random bits onto [0, n); the bias is below 2^-40 for any n a benchmark has.
  return static_cast<std::size_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
}

double sample_stddev(const std::vector<double>& values) {
  if (values.size() < 2) return 0;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double sum = 0;
  for (double v : values) sum += (v - mean) * (v - mean);
  return std::sqrt(sum / static_cast<double>(values.size() - 1));
}

StratifiedBootstrap stratified_bootstrap(const std::vector<std::vector<double>>& subjects, int replicates,
                                         std::uint64_t seed) {
  StratifiedBootstrap out;
  SeededRng rng(seed);
  std::size_t total = 0;
  std::size_t non_empty = 0;
  for (const auto& s : subjects) {
    total += s.size();
    if (!s.empty()) ++non_empty;
  }
  if (total == 0 || replicates < 2) return out;
  out.micro_replicates.reserve(static_cast<std::size_t>(replicates));
  out.macro_replicates.reserve(static_cast<std::size_t>(replicates));
  for (int r = 0; r < replicates; ++r) {
    double micro_sum = 0, macro_sum = 0;
    for (const auto& s : subjects) {
      if (s.empty()) continue;
      double sum = 0;
      for (std::size_t i = 0; i < s.size(); ++i) sum += s[rng.below(s.size())];
      micro_sum += sum;
      macro_sum += sum / static_cast<double>(s.size());
    }
    out.micro_replicates.push_back(micro_sum / static_cast<double>(total));
    out.macro_replicates.push_back(macro_sum / static_cast<double>(non_empty));
  }
  out.micro_stderr = sample_stddev(out.micro_replicates);
  out.macro_stderr = sample_stddev(out.macro_replicates);
  return out;
}

}  // namespace mill
