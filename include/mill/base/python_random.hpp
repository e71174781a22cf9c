#pragma once
// CPython's `random.Random` for the draws lm-evaluation-harness makes when it picks few-shot examples: seeding with
// a non-negative integer (init_by_array over the integer's 32-bit words), getrandbits, _randbelow (rejection on
// getrandbits) and sample() with its choice between a shrinking pool and a set of picked indices. The same seed
// gives the same draws as Python, so few-shot prompts match lm-eval's.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mill {

class PythonRandom {
 public:
  // random.Random(seed).
  explicit PythonRandom(std::uint64_t seed);

  // The Mersenne Twister's next 32-bit output (genrand_uint32).
  std::uint32_t next_word();
  // random.getrandbits(k) for 0 <= k <= 64.
  std::uint64_t getrandbits(int k);
  // random._randbelow(n) for n >= 1: uniform in [0, n).
  std::uint64_t randbelow(std::uint64_t n);
  // random.sample(range(population), k): k distinct indices in draw order. k > population throws mill::Error.
  std::vector<std::size_t> sample(std::size_t population, std::size_t k);

 private:
  static constexpr int kStateSize = 624;
  std::array<std::uint32_t, kStateSize> state_{};
  int index_ = kStateSize;
};

}  // namespace mill
