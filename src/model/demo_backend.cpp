#include "mill/model/demo_backend.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <thread>

#include "mill/base/error.hpp"
#include "mill/model/model_args.hpp"
#include "mill/model/sampling.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void check_token_id(TokenId id) {
  if (id < 0 || id >= DemoBackend::kVocab)
    throw Error(fmt::format("token id {} is outside mill-demo's vocabulary 0..{}", id, DemoBackend::kVocab - 1));
}

}  // namespace

DemoBackend::DemoBackend(const ModelSpec& spec) {
  const auto args = read_demo_args(spec);
  seed_ = args.seed;
  batch_size_ = args.batch_size;
  delay_ms_ = args.delay_ms;

  // Logits: uniform noise in [-3, 3) plus a preference for printable ASCII and newlines, so that greedy text looks
  // like text rather than control bytes. Then a log-softmax per row.
  table_.assign(static_cast<std::size_t>(kVocab) * kVocab, 0.0);
  argmax_.assign(kVocab, 0);
  for (int previous = 0; previous < kVocab; ++previous) {
    double* row = &table_[static_cast<std::size_t>(previous) * kVocab];
    double largest = -1e300;
    for (int next = 0; next < kVocab; ++next) {
      const auto bits = mix(seed_ * 0x100000001B3ull ^ mix(static_cast<std::uint64_t>(previous) * 1000 + next));
      double logit = (static_cast<double>(bits >> 11) / 9007199254740992.0) * 6.0 - 3.0;
      if ((next >= 32 && next < 127) || next == '\n') logit += 4.0;
      row[next] = logit;
      if (logit > largest) {
        largest = logit;
        argmax_[static_cast<std::size_t>(previous)] = next;
      }
    }
    double sum = 0;
    for (int next = 0; next < kVocab; ++next) sum += std::exp(row[next] - largest);
    const double log_sum = largest + std::log(sum);
    for (int next = 0; next < kVocab; ++next) row[next] -= log_sum;
  }
}

nlohmann::json DemoBackend::provenance() const {
  return {{"backend", "mill-demo"},
          {"device", "cpu"},
          {"dtype", "float64"},
          {"batch_size", batch_size_},
          {"seed", seed_},
          {"note", "deterministic byte-bigram demo model with pseudo-random weights; its scores are meaningless"}};
}

void DemoBackend::pause() const {
  if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
}

std::vector<LoglikelihoodResult> DemoBackend::loglikelihood(const std::vector<LoglikelihoodRequest>& requests) {
  pause();
  std::vector<LoglikelihoodResult> results;
  results.reserve(requests.size());
  for (const auto& request : requests) {
    LoglikelihoodResult result;
    result.greedy = true;
    int previous = request.context.empty() ? kBos : static_cast<unsigned char>(request.context.back());
    for (unsigned char byte : request.continuation) {
      result.logprob += logprob(previous, byte);
      if (greedy_next(previous) != byte) result.greedy = false;
      previous = byte;
      ++result.n_tokens;
    }
    results.push_back(result);
  }
  return results;
}

std::vector<RollingResult> DemoBackend::loglikelihood_rolling(const std::vector<RollingRequest>& requests) {
  pause();
  std::vector<RollingResult> results;
  for (const auto& request : requests) {
    RollingResult result;
    int previous = kBos;
    for (unsigned char byte : request.text) {
      result.logprob += logprob(previous, byte);
      previous = byte;
      ++result.n_tokens;
    }
    results.push_back(result);
  }
  return results;
}

std::vector<GenerationResult> DemoBackend::generate(const std::vector<GenerationRequest>& requests) {
  pause();
  std::vector<GenerationResult> results;
  for (const auto& request : requests) {
    GenerationResult result;
    int previous = request.context.empty() ? kBos : static_cast<unsigned char>(request.context.back());
    bool stopped = false;
    while (!stopped && result.n_tokens < request.max_new_tokens) {
      const int next = greedy_next(previous);
      ++result.n_tokens;
      if (next == kEos) {
        stopped = true;
        break;
      }
      result.text += static_cast<char>(next);
      previous = next;
      for (const auto& stop : request.stop) {
        if (!stop.empty() && result.text.ends_with(stop)) {
          result.text.resize(result.text.size() - stop.size());
          stopped = true;
          break;
        }
      }
    }
    result.hit_token_limit = !stopped;
    results.push_back(result);
  }
  return results;
}

std::vector<TokenId> DemoBackend::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<TokenId> ids;
  if (add_special_tokens) ids.push_back(kBos);
  for (unsigned char byte : text) ids.push_back(byte);
  return ids;
}

std::string DemoBackend::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  std::string text;
  for (const auto id : ids) {
    if (id >= 0 && id < 256) {
      text += static_cast<char>(id);
    } else if (!skip_special_tokens) {
      text += id == kEos ? "<|endoftext|>" : "<|unknown|>";
    }
  }
  return text;
}

std::vector<std::vector<PositionLogprobs>> DemoBackend::score_positions(
    const std::vector<std::vector<TokenId>>& sequences, int top) {
  pause();
  std::vector<std::vector<PositionLogprobs>> results;
  for (const auto& ids : sequences) {
    for (const auto id : ids) check_token_id(id);
    std::vector<PositionLogprobs> positions;
    for (std::size_t t = 1; t < ids.size(); ++t) {
      const double* row = &table_[static_cast<std::size_t>(ids[t - 1]) * kVocab];
      positions.push_back({row[ids[t]], top_logprobs(row, kVocab, top)});
    }
    results.push_back(std::move(positions));
  }
  return results;
}

std::vector<TokenGenerationResult> DemoBackend::generate_tokens(const std::vector<TokenGenerationRequest>& requests) {
  pause();
  std::vector<TokenGenerationResult> results;
  for (const auto& request : requests) {
    TokenGenerationResult result;
    TokenSampler sampler(request.sampling);
    int previous = request.context.empty() ? kBos : request.context.back();
    check_token_id(previous);
    bool stopped = false;
    while (!stopped && static_cast<int>(result.tokens.size()) < request.max_new_tokens) {
      const double* row = &table_[static_cast<std::size_t>(previous) * kVocab];
      const TokenId next = sampler.next(row, kVocab);
      if (next == kEos) {
        result.eos = next;
        if (request.top_logprobs >= 0) {
          result.eos_logprobs = PositionLogprobs{row[next], top_logprobs(row, kVocab, request.top_logprobs)};
        }
        stopped = true;
        break;
      }
      result.tokens.push_back(next);
      if (request.top_logprobs >= 0) {
        result.logprobs.push_back({row[next], top_logprobs(row, kVocab, request.top_logprobs)});
      }
      previous = next;
      if (request.on_token && !request.on_token(result.tokens)) stopped = true;
    }
    result.hit_token_limit = !stopped;
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace mill
