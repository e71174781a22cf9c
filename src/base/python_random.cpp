#include "mill/base/python_random.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <unordered_set>

#include "mill/base/error.hpp"

namespace mill {

namespace {
constexpr int kN = 624;
constexpr int kM = 397;
constexpr std::uint32_t kMatrixA = 0x9908b0dfU;
constexpr std::uint32_t kUpperMask = 0x80000000U;
constexpr std::uint32_t kLowerMask = 0x7fffffffU;
}  // namespace

PythonRandom::PythonRandom(std::uint64_t seed) {
  // CPython's random_seed(): the key is the absolute value's 32-bit words, least significant first ([0] for 0).
  std::vector<std::uint32_t> key = {static_cast<std::uint32_t>(seed)};
  if (seed >> 32) key.push_back(static_cast<std::uint32_t>(seed >> 32));
  // init_genrand(19650218) followed by init_by_array(key), as in the reference mt19937ar.c.
  auto& mt = state_;
  mt[0] = 19650218U;
  for (int i = 1; i < kN; ++i) mt[i] = 1812433253U * (mt[i - 1] ^ (mt[i - 1] >> 30)) + static_cast<std::uint32_t>(i);
  int i = 1;
  std::size_t j = 0;
  for (int k = std::max<int>(kN, static_cast<int>(key.size())); k > 0; --k) {
    mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<std::uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      mt[0] = mt[kN - 1];
      i = 1;
    }
    if (j >= key.size()) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - static_cast<std::uint32_t>(i);
    ++i;
    if (i >= kN) {
      mt[0] = mt[kN - 1];
      i = 1;
    }
  }
  mt[0] = 0x80000000U;
  index_ = kN;
}

std::uint32_t PythonRandom::next_word() {
  auto& mt = state_;
  if (index_ >= kN) {
    auto twist = [&](int at, int next, int far) {
      const std::uint32_t y = (mt[at] & kUpperMask) | (mt[next] & kLowerMask);
      mt[at] = mt[far] ^ (y >> 1) ^ ((y & 1U) ? kMatrixA : 0U);
    };
    int kk = 0;
    for (; kk < kN - kM; ++kk) twist(kk, kk + 1, kk + kM);
    for (; kk < kN - 1; ++kk) twist(kk, kk + 1, kk + (kM - kN));
    twist(kN - 1, 0, kM - 1);
    index_ = 0;
  }
  std::uint32_t y = mt[index_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= (y >> 18);
  return y;
}

std::uint64_t PythonRandom::getrandbits(int k) {
  if (k < 0 || k > 64) throw Error(fmt::format("getrandbits({}): only 0..64 bits are supported", k));
  if (k == 0) return 0;
  if (k <= 32) return next_word() >> (32 - k);
  // Wider requests fill 32-bit words least significant first; the last word keeps its top bits.
  const std::uint64_t low = next_word();
  const std::uint64_t high = next_word() >> (64 - k);
  return low | (high << 32);
}

std::uint64_t PythonRandom::randbelow(std::uint64_t n) {
  if (n == 0) return 0;
  int bits = 0;
  for (auto v = n; v; v >>= 1) ++bits;  // n.bit_length()
  auto r = getrandbits(bits);
  while (r >= n) r = getrandbits(bits);
  return r;
}

std::vector<std::size_t> PythonRandom::sample(std::size_t population, std::size_t k) {
  if (k > population) {
    throw Error(fmt::format("cannot sample {} examples from a pool of {} (Python: sample larger than population)", k,
                            population));
  }
  std::vector<std::size_t> result(k);
  // CPython keeps a pool list when it is small compared to a set of k picks (the set's size is 21 plus the
  // next power of 4 above 3k for k > 5); otherwise it draws indices and redraws repeats.
  std::size_t setsize = 21;
  if (k > 5) setsize += static_cast<std::size_t>(std::pow(4.0, std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0))));
  if (population <= setsize) {
    std::vector<std::size_t> pool(population);
    for (std::size_t i = 0; i < population; ++i) pool[i] = i;
    for (std::size_t i = 0; i < k; ++i) {
      const auto j = static_cast<std::size_t>(randbelow(population - i));
      result[i] = pool[j];
      pool[j] = pool[population - i - 1];
    }
  } else {
    std::unordered_set<std::size_t> selected;
    for (std::size_t i = 0; i < k; ++i) {
      auto j = static_cast<std::size_t>(randbelow(population));
      while (selected.count(j)) j = static_cast<std::size_t>(randbelow(population));
      selected.insert(j);
      result[i] = j;
    }
  }
  return result;
}

}  // namespace mill
