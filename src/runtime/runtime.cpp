#include "runtime.hpp"

#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <algorithm>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <spdlog/spdlog.h>

#include "mill/base/error.hpp"
#include "mill/model/sampling.hpp"

namespace mill::runtime {

namespace {

// A common prefix is computed separately and shared only when it saves at least this many tokens.
constexpr std::int64_t kMinPrefixSaving = 32;
// Logits are computed for at most this many vocabulary entries at once (bounded fp32 memory: 256 MB on a GPU; 8 MB
// on the CPU, where the heap keeps what it once held, so large temporaries raise the peak resident set for good:
// 64 MB chunks cost 180 MB of peak in the llama.cpp side-by-side for no speed), but never fewer than
// kMinLogitRows rows, so a 150k vocabulary still makes a matrix product worth the name.
constexpr std::int64_t kMaxLogitElements = std::int64_t{1} << 26;
constexpr std::int64_t kMaxLogitElementsCpu = std::int64_t{1} << 21;
constexpr std::int64_t kMinLogitRows = 64;

std::size_t common_prefix(const Tokens& a, const Tokens& b) {
  const auto n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

at::Tensor long_tensor(std::vector<std::int64_t>& values, std::vector<std::int64_t> shape, const at::Device& device) {
  return at::from_blob(values.data(), shape, at::TensorOptions().dtype(at::kLong)).to(device);
}

at::Tensor bool_tensor(std::vector<std::uint8_t>& values, std::vector<std::int64_t> shape, const at::Device& device) {
  return at::from_blob(values.data(), shape, at::TensorOptions().dtype(at::kBool)).to(device);
}

// The memory a batch may use: free GPU memory on CUDA, MemAvailable on the CPU (a fraction of either).
std::int64_t available_memory(const at::Device& device) {
  if (device.is_cuda()) {
    // Asked of the CUDA runtime that libtorch already loaded, so the plugin needs no CUDA headers to build.
    using MemGetInfo = int (*)(std::size_t*, std::size_t*);
    for (const char* name : {"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}) {
      void* handle = ::dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
      if (!handle) continue;
      std::size_t free = 0, total = 0;
      auto get_info = reinterpret_cast<MemGetInfo>(::dlsym(handle, "cudaMemGetInfo"));
      const bool ok = get_info && get_info(&free, &total) == 0;
      ::dlclose(handle);
      if (ok) return static_cast<std::int64_t>(free * 0.7);
    }
    return std::int64_t{8} << 30;
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024 * 4 / 10;
  }
  return std::int64_t{2} << 30;
}

}  // namespace

Runtime::Runtime(std::unique_ptr<Transformer> model, RuntimeSettings settings)
    : model_(std::move(model)), settings_(std::move(settings)), device_(model_->options().device()) {
  const auto& config = model_->config();
  max_length_ = std::min<std::int64_t>(settings_.max_context_length, config.max_positions);
  if (config.sliding_window > 0) max_length_ = std::min(max_length_, config.sliding_window);
  for (auto id : config.eos_token_ids) {
    if (std::find(settings_.eos_ids.begin(), settings_.eos_ids.end(), id) == settings_.eos_ids.end()) settings_.eos_ids.push_back(id);
  }
  memory_budget_ = available_memory(device_);
}

std::int64_t Runtime::estimate_bytes(std::int64_t batch, std::int64_t length, std::int64_t keys) const {
  const auto& c = model_->config();
  const std::int64_t element = static_cast<std::int64_t>(c10::elementSize(model_->options().dtype().toScalarType()));
  const std::int64_t per_token = (c.hidden_size * 8 + (c.heads + 2 * c.kv_heads) * c.head_dim * 2 + c.intermediate_size * 4) * element +
                                 c.hidden_size * 8;
  const std::int64_t scores = std::min(batch * c.heads * length * keys, std::int64_t{1} << 27) * (8 + element);
  const std::int64_t cache = 2 * c.layers * batch * c.kv_heads * keys * c.head_dim * element;
  const std::int64_t mask = batch * length * keys * 3;
  return batch * length * per_token + scores + cache + mask;
}

Runtime::Row::Row(Tokens trunk, std::int64_t first_position)
    : tokens(std::move(trunk)), positions(tokens.size()), branch(tokens.size(), 0) {
  std::iota(positions.begin(), positions.end(), first_position);
}

void Runtime::add_forward(std::int64_t real_tokens, std::int64_t padded_tokens) {
  counters_.forward_tokens += real_tokens;
  counters_.padded_tokens += padded_tokens;
  counters_.forwards += 1;
}

const Runtime::Prefix& Runtime::prefix_for(const Tokens& tokens) {
  if (last_prefix_ && last_prefix_->tokens == tokens) {
    counters_.prefix_tokens_reused += static_cast<std::int64_t>(tokens.size());
    return *last_prefix_;
  }
  last_prefix_.reset();
  auto prefix = std::make_unique<Prefix>();
  prefix->tokens = tokens;
  const auto P = static_cast<std::int64_t>(tokens.size());
  prefix->cache = model_->make_cache(1, P);
  std::vector<std::int64_t> ids = tokens, positions(P);
  std::iota(positions.begin(), positions.end(), 0);
  model_->forward(long_tensor(ids, {1, P}, device_), long_tensor(positions, {1, P}, device_), at::Tensor(), &prefix->cache);
  add_forward(P, P);
  last_prefix_ = std::move(prefix);
  return *last_prefix_;
}

void Runtime::run_batch(const std::vector<const Row*>& batch, const Prefix* prefix, std::vector<Score>& slots) {
  const auto B = static_cast<std::int64_t>(batch.size());
  std::int64_t T = 0, real = 0;
  for (const auto* row : batch) {
    T = std::max<std::int64_t>(T, row->tokens.size());
    real += static_cast<std::int64_t>(row->tokens.size());
  }
  const std::int64_t P = prefix ? static_cast<std::int64_t>(prefix->tokens.size()) : 0;
  const std::int64_t S = P + T;
  std::vector<std::int64_t> tokens(B * T, 0), positions(B * T, 0);
  // Without continuation branches every row is plain causal (padding at the end is never seen by a real token,
  // and what padding itself sees is never read), so the model needs no mask tensor.
  bool branched = false;
  for (const auto* row : batch) {
    branched = branched || std::any_of(row->branch.begin(), row->branch.end(), [](std::int32_t b) { return b != 0; });
  }
  std::vector<std::uint8_t> mask(branched ? static_cast<std::size_t>(B * T * S) : 0, 0);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& row = *batch[b];
    const auto L = static_cast<std::int64_t>(row.tokens.size());
    std::copy(row.tokens.begin(), row.tokens.end(), tokens.begin() + b * T);
    std::copy(row.positions.begin(), row.positions.end(), positions.begin() + b * T);
    for (std::int64_t t = 0; branched && t < T; ++t) {
      auto* m = mask.data() + (b * T + t) * S;
      if (t >= L) {
        m[P + t] = 1;  // padding attends to itself only, so its softmax stays finite
        continue;
      }
      std::fill(m, m + P, 1);
      for (std::int64_t j = 0; j <= t; ++j) {
        if (row.branch[j] == 0 || row.branch[j] == row.branch[t]) m[P + j] = 1;
      }
    }
  }
  KVCache cache;
  if (prefix) {
    cache = model_->make_cache(B, S);
    for (std::size_t l = 0; l < cache.keys.size(); ++l) {
      cache.keys[l].narrow(2, 0, P).copy_(prefix->cache.keys[l].expand({B, -1, -1, -1}));
      cache.values[l].narrow(2, 0, P).copy_(prefix->cache.values[l].expand({B, -1, -1, -1}));
    }
    cache.positions.narrow(1, 0, P).copy_(prefix->cache.positions.narrow(1, 0, P).expand({B, -1}));
    cache.length = P;
  }
  const auto hidden = model_->forward(long_tensor(tokens, {B, T}, device_), long_tensor(positions, {B, T}, device_),
                                      branched ? bool_tensor(mask, {B, 1, T, S}, device_) : at::Tensor(), prefix ? &cache : nullptr);
  add_forward(real, B * T);

  // Distinct scoring positions: the four single-token answers of a question share one distribution.
  std::map<std::int64_t, std::int64_t> unique;
  std::vector<std::int64_t> flat;
  struct Pick {
    std::int64_t row;
    std::int64_t token;
    std::int32_t slot;
  };
  std::vector<Pick> picks;
  const auto vocab = model_->config().vocab_size;
  for (std::int64_t b = 0; b < B; ++b) {
    for (const auto& target : batch[b]->targets) {
      if (target.token < 0 || target.token >= vocab) {
        throw Error(fmt::format("token id {} is outside the model's vocabulary of {} (tokenizer and config.json disagree)",
                                target.token, vocab),
                    ExitCode::eval_failed);
      }
      const auto key = b * T + target.index;
      auto [it, inserted] = unique.emplace(key, static_cast<std::int64_t>(flat.size()));
      if (inserted) flat.push_back(key);
      picks.push_back({it->second, target.token, target.slot});
    }
  }
  if (flat.empty()) return;
  const auto gathered = hidden.reshape({B * T, hidden.size(2)}).index_select(0, long_tensor(flat, {static_cast<std::int64_t>(flat.size())}, device_));
  const auto N = static_cast<std::int64_t>(flat.size());
  const auto chunk = std::max<std::int64_t>(kMinLogitRows, (device_.is_cuda() ? kMaxLogitElements : kMaxLogitElementsCpu) / vocab);
  std::vector<double> picked(picks.size());
  std::vector<std::int64_t> argmax(N);
  const bool exact_logits = model_->options().dtype() == at::kFloat;
  for (std::int64_t start = 0; start < N; start += chunk) {
    const auto n = std::min(chunk, N - start);
    const auto rows = gathered.narrow(0, start, n);
    const auto logits = model_->logits(rows);
    std::vector<std::int64_t> flat_index, pick_rows, pick_tokens;
    std::vector<std::size_t> which;
    for (std::size_t p = 0; p < picks.size(); ++p) {
      if (picks[p].row >= start && picks[p].row < start + n) {
        flat_index.push_back((picks[p].row - start) * vocab + picks[p].token);
        pick_rows.push_back(picks[p].row - start);
        pick_tokens.push_back(picks[p].token);
        which.push_back(p);
      }
    }
    const auto M = static_cast<std::int64_t>(which.size());
    const auto best = logits.argmax(-1).cpu();
    at::Tensor values;
    if (top_ > 0) {
      // The full log-softmax, only when the best tokens are asked for: picked values and the top list come from
      // the same tensor, so a token that is its position's best equals top[0].
      const auto log_probs = at::log_softmax(logits, -1);
      values = log_probs.reshape({-1}).index_select(0, long_tensor(flat_index, {M}, device_)).to(at::kDouble).cpu();
      const auto k = std::min<std::int64_t>(top_, vocab);
      const auto best_k = log_probs.topk(k, -1);
      const auto top_values = std::get<0>(best_k).to(at::kDouble).cpu().contiguous();
      const auto top_ids = std::get<1>(best_k).cpu().contiguous();
      const auto* tv = top_values.data_ptr<double>();
      const auto* ti = top_ids.data_ptr<std::int64_t>();
      for (const auto p : which) {
        const auto r = picks[p].row - start;
        auto& top = slots[picks[p].slot].top;
        top.clear();
        for (std::int64_t j = 0; j < k; ++j) top.push_back({static_cast<TokenId>(ti[r * k + j]), tv[r * k + j]});
      }
    } else {
      // log P(token) = its logit - logsumexp of the row: one pass over the logits, no log-softmax tensor.
      const auto row_index = long_tensor(pick_rows, {M}, device_);
      const auto log_norm = at::logsumexp(logits, -1).index_select(0, row_index).to(at::kDouble);
      const auto picked_logits = exact_logits ? logits.reshape({-1}).index_select(0, long_tensor(flat_index, {M}, device_))
                                              : model_->token_logits(rows.index_select(0, row_index), long_tensor(pick_tokens, {M}, device_));
      values = (picked_logits.to(at::kDouble) - log_norm).cpu();
    }
    const auto* v = values.data_ptr<double>();
    for (std::size_t i = 0; i < which.size(); ++i) picked[which[i]] = v[i];
    const auto* a = best.data_ptr<std::int64_t>();
    std::copy(a, a + n, argmax.begin() + start);
  }
  for (std::size_t p = 0; p < picks.size(); ++p) {
    auto& slot = slots[picks[p].slot];
    slot.logprob += picked[p];
    slot.greedy = slot.greedy && argmax[picks[p].row] == picks[p].token;
    slot.n_tokens += 1;
  }
}

void Runtime::run_rows(std::vector<Row>& rows, const Prefix* prefix, std::vector<Score>& slots) {
  std::vector<const Row*> order;
  for (const auto& row : rows) order.push_back(&row);
  // Longest first: rows of similar length share a batch, so little of it is padding.
  std::stable_sort(order.begin(), order.end(), [](const Row* a, const Row* b) { return a->tokens.size() > b->tokens.size(); });
  const std::int64_t P = prefix ? static_cast<std::int64_t>(prefix->tokens.size()) : 0;
  // On the CPU a matrix product of 1,024 rows already runs at full speed; larger batches only add memory, which
  // the heap keeps (2,048 raised the side-by-side's peak from 0.58 to 1.1 GB at the same speed). Rows on a shared
  // prefix each hold a copy of its KV cache, so on the CPU a batch also holds at most 2,048 cached positions: the
  // side-by-side's MMLU ran 1.8x faster in bf16 (1.3x in f32) and 0.2 GB smaller than with 12 rows per batch.
  const std::int64_t max_tokens = device_.is_cuda() ? 65536 : 1024;
  const std::int64_t max_cached = device_.is_cuda() ? std::numeric_limits<std::int64_t>::max() : 2048;
  std::int64_t row_cap = settings_.batch_size > 0 ? settings_.batch_size : std::numeric_limits<std::int64_t>::max();
  std::size_t i = 0;
  while (i < order.size()) {
    const auto T = static_cast<std::int64_t>(order[i]->tokens.size());
    std::size_t B = 1;
    while (i + B < order.size()) {
      const auto next = static_cast<std::int64_t>(B + 1);
      // A row under half the batch's length starts a new batch: padding never exceeds the real tokens.
      if (2 * static_cast<std::int64_t>(order[i + B]->tokens.size()) < T) break;
      const bool fits = next <= row_cap &&
                        (settings_.batch_size > 0 || (next * T <= max_tokens && next * (P + T) <= max_cached &&
                                                      estimate_bytes(next, T, P + T) <= memory_budget_));
      if (!fits) break;
      ++B;
    }
    std::vector<const Row*> batch(order.begin() + i, order.begin() + i + B);
    try {
      run_batch(batch, prefix, slots);
    } catch (const c10::OutOfMemoryError&) {
      if (B == 1) {
        throw Error(fmt::format("out of memory scoring one sequence of {} tokens; lower max_context_length", T + P),
                    ExitCode::eval_failed);
      }
      // Nothing of the failed batch was accumulated (scores are added only after the forward): retry in halves.
      memory_budget_ /= 2;
      row_cap = static_cast<std::int64_t>(B) / 2;
      spdlog::warn("out of memory with a batch of {} × {} tokens; retrying with smaller batches", B, T);
      continue;
    }
    i += B;
  }
}

std::vector<Score> Runtime::score(const std::vector<ScoreRequest>& requests) {
  c10::InferenceMode guard;
  std::vector<Score> results(requests.size());
  // Keep the last max_length + 1 tokens of context + continuation, as the reference harness does.
  std::vector<ScoreRequest> items(requests.size());
  for (std::size_t r = 0; r < requests.size(); ++r) {
    if (requests[r].context.empty()) throw Error("internal: scoring request with an empty context", ExitCode::internal);
    Tokens full = requests[r].context;
    full.insert(full.end(), requests[r].continuation.begin(), requests[r].continuation.end());
    const auto keep = static_cast<std::size_t>(max_length_ + 1);
    auto context_size = requests[r].context.size();
    if (full.size() > keep) {
      const auto drop = full.size() - keep;
      full.erase(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(drop));
      context_size = context_size > drop ? context_size - drop : 1;
    }
    items[r].context.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(context_size));
    items[r].continuation.assign(full.begin() + static_cast<std::ptrdiff_t>(context_size), full.end());
  }
  auto add_branch = [&](Row& row, const Tokens& continuation, std::int32_t branch, std::int32_t slot, std::int64_t context_end) {
    const auto trunk_last = static_cast<std::int32_t>(std::count(row.branch.begin(), row.branch.end(), 0) - 1);
    row.targets.push_back({trunk_last, continuation[0], slot});
    for (std::size_t m = 0; m + 1 < continuation.size(); ++m) {
      row.tokens.push_back(continuation[m]);
      row.positions.push_back(context_end + static_cast<std::int64_t>(m));
      row.branch.push_back(branch);
      row.targets.push_back({static_cast<std::int32_t>(row.tokens.size() - 1), continuation[m + 1], slot});
    }
  };

  if (!settings_.share_prefixes) {
    std::vector<Row> rows;
    for (std::size_t r = 0; r < items.size(); ++r) {
      if (items[r].continuation.empty()) continue;
      Row row(items[r].context, 0);
      add_branch(row, items[r].continuation, 1, static_cast<std::int32_t>(r), static_cast<std::int64_t>(items[r].context.size()));
      rows.push_back(std::move(row));
    }
    run_rows(rows, nullptr, results);
    return results;
  }

  // Group by context (sorted, so contexts with a common few-shot prefix are neighbours); one slot per distinct
  // continuation of a context.
  struct Group {
    std::vector<Tokens> continuations;
    std::map<Tokens, std::int32_t> slot_of;
  };
  std::map<Tokens, Group> groups;
  std::vector<Score> slots;
  std::vector<std::int32_t> slot_of_request(items.size(), -1);
  for (std::size_t r = 0; r < items.size(); ++r) {
    if (items[r].continuation.empty()) continue;
    auto& group = groups[items[r].context];
    auto [it, inserted] = group.slot_of.emplace(items[r].continuation, static_cast<std::int32_t>(slots.size()));
    if (inserted) {
      slots.emplace_back();
      group.continuations.push_back(items[r].continuation);
    }
    slot_of_request[r] = it->second;
  }
  struct Run {
    std::vector<std::pair<const Tokens*, const Group*>> groups;
    std::size_t prefix = 0;
  };
  std::vector<Run> runs;
  for (const auto& [context, group] : groups) {
    if (!runs.empty()) {
      auto& run = runs.back();
      const auto shared = std::min({run.prefix, common_prefix(*run.groups.back().first, context), context.size() - 1});
      // Joining must not cut a long shared prefix (a task's few-shot examples) down to a short common header.
      if (static_cast<std::int64_t>(shared) > kMinPrefixSaving / 2 && (run.groups.size() == 1 || 2 * shared >= run.prefix)) {
        run.prefix = shared;
        run.groups.emplace_back(&context, &group);
        continue;
      }
    }
    runs.push_back(Run{{{&context, &group}}, context.size() - 1});
  }
  std::vector<Row> unshared;
  for (auto& run : runs) {
    const auto saving = static_cast<std::int64_t>(run.prefix) * static_cast<std::int64_t>(run.groups.size() - 1);
    const std::size_t P = saving >= kMinPrefixSaving ? run.prefix : 0;
    std::vector<Row> rows;
    for (const auto& [context, group] : run.groups) {
      const auto C = static_cast<std::int64_t>(context->size());
      auto start_row = [&] {
        return Row(Tokens(context->begin() + static_cast<std::ptrdiff_t>(P), context->end()),
                   static_cast<std::int64_t>(P));
      };
      Row row = start_row();
      std::int32_t branch = 0;
      for (const auto& continuation : group->continuations) {
        // Continuations of one context share its row, unless the row would grow past the context window.
        if (branch > 0 && static_cast<std::int64_t>(row.tokens.size() + continuation.size()) > max_length_) {
          rows.push_back(std::move(row));
          row = start_row();
        }
        add_branch(row, continuation, ++branch, group->slot_of.at(continuation), C);
      }
      rows.push_back(std::move(row));
    }
    if (P == 0) {
      for (auto& row : rows) unshared.push_back(std::move(row));
      continue;
    }
    const auto& prefix = prefix_for(Tokens(run.groups.front().first->begin(), run.groups.front().first->begin() + static_cast<std::ptrdiff_t>(P)));
    run_rows(rows, &prefix, slots);
  }
  run_rows(unshared, nullptr, slots);
  for (std::size_t r = 0; r < items.size(); ++r) {
    if (slot_of_request[r] >= 0) results[r] = slots[slot_of_request[r]];
  }
  return results;
}

std::vector<Score> Runtime::score_rolling(const std::vector<Tokens>& texts, std::int64_t prefix_token) {
  c10::InferenceMode guard;
  std::vector<Score> results(texts.size());
  std::vector<Row> rows;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    Tokens full{prefix_token};
    full.insert(full.end(), texts[i].begin(), texts[i].end());
    const auto N = static_cast<std::int64_t>(texts[i].size());
    // Windows predict consecutive blocks of max_length tokens; each sees as much preceding text as fits.
    for (std::int64_t first = 1; first <= N; first += max_length_) {
      const auto last = std::min(N, first + max_length_ - 1);
      const auto window_start = std::max<std::int64_t>(0, last - max_length_);
      Row row(Tokens(full.begin() + window_start, full.begin() + last), 0);
      for (auto target = first; target <= last; ++target) {
        row.targets.push_back({static_cast<std::int32_t>(target - 1 - window_start), full[target], static_cast<std::int32_t>(i)});
      }
      rows.push_back(std::move(row));
    }
  }
  run_rows(rows, nullptr, results);
  return results;
}

std::vector<std::vector<double>> Runtime::score_tokens(const std::vector<Tokens>& sequences) {
  const auto positions = score_positions(sequences, 0);
  std::vector<std::vector<double>> out(positions.size());
  for (std::size_t i = 0; i < positions.size(); ++i) {
    for (const auto& position : positions[i]) out[i].push_back(position.logprob);
  }
  return out;
}

std::vector<std::vector<PositionLogprobs>> Runtime::score_positions(const std::vector<Tokens>& sequences, int top) {
  c10::InferenceMode guard;
  std::vector<Row> rows;
  std::vector<std::size_t> first_slot(sequences.size() + 1, 0);
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    const auto& ids = sequences[i];
    const auto predicted = ids.empty() ? 0 : ids.size() - 1;
    first_slot[i + 1] = first_slot[i] + predicted;
    if (static_cast<std::int64_t>(predicted) > max_length_) {
      throw Error(fmt::format("token sequence {} has {} tokens; at most max_context_length + 1 = {} are scored in one window", i,
                              ids.size(), max_length_ + 1),
                  ExitCode::eval_failed);
    }
    if (predicted == 0) continue;
    Row row(Tokens(ids.begin(), ids.end() - 1), 0);
    for (std::size_t t = 0; t < predicted; ++t) {
      row.targets.push_back({static_cast<std::int32_t>(t), ids[t + 1], static_cast<std::int32_t>(first_slot[i] + t)});
    }
    rows.push_back(std::move(row));
  }
  std::vector<Score> slots(first_slot.back());
  top_ = std::max(0, top);
  try {
    run_rows(rows, nullptr, slots);
  } catch (...) {
    top_ = 0;
    throw;
  }
  top_ = 0;
  std::vector<std::vector<PositionLogprobs>> out(sequences.size());
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    for (auto s = first_slot[i]; s < first_slot[i + 1]; ++s) out[i].push_back({slots[s].logprob, std::move(slots[s].top)});
  }
  return out;
}

std::vector<Generation> Runtime::generate(const std::vector<GenerateRequest>& requests, const StopCheck& stop) {
  c10::InferenceMode guard;
  std::vector<Generation> results(requests.size());
  std::vector<GenerateRequest> items(requests.size());
  std::vector<std::size_t> order;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    if (requests[r].context.empty()) throw Error("internal: generation request with an empty context", ExitCode::internal);
    auto& item = items[r];
    item.sampling = requests[r].sampling;
    item.top_logprobs = requests[r].top_logprobs;
    item.max_new_tokens = static_cast<int>(std::clamp<std::int64_t>(requests[r].max_new_tokens, 0, max_length_ - 1));
    const auto keep = static_cast<std::size_t>(max_length_ - item.max_new_tokens);
    const auto& context = requests[r].context;
    item.context.assign(context.size() > keep ? context.end() - static_cast<std::ptrdiff_t>(keep) : context.begin(), context.end());
    if (item.max_new_tokens == 0) {
      results[r].hit_token_limit = true;
      continue;
    }
    order.push_back(r);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return items[a].context.size() > items[b].context.size(); });
  std::int64_t row_cap = settings_.batch_size > 0 ? settings_.batch_size : 256;
  std::size_t i = 0;
  while (i < order.size()) {
    const auto T0 = static_cast<std::int64_t>(items[order[i]].context.size());
    std::int64_t capacity = 0;
    std::size_t B = 0;
    while (i + B < order.size()) {
      const auto next_capacity = std::max<std::int64_t>(capacity, T0 + items[order[i + B]].max_new_tokens);
      const auto next = static_cast<std::int64_t>(B + 1);
      const bool fits = B == 0 || (next <= row_cap && (settings_.batch_size > 0 ||
                                                       estimate_bytes(next, T0, next_capacity) <= memory_budget_));
      if (!fits) break;
      capacity = next_capacity;
      ++B;
    }
    std::vector<std::size_t> batch(order.begin() + i, order.begin() + i + B);
    try {
      generate_batch(batch, items, stop, results);
    } catch (const c10::OutOfMemoryError&) {
      if (B == 1) throw Error(fmt::format("out of memory generating from {} tokens; lower max_context_length", T0), ExitCode::eval_failed);
      memory_budget_ /= 2;
      row_cap = static_cast<std::int64_t>(B) / 2;
      for (auto r : batch) results[r] = Generation{};
      spdlog::warn("out of memory generating with a batch of {}; retrying with smaller batches", B);
      continue;
    }
    i += B;
  }
  return results;
}

void Runtime::generate_batch(const std::vector<std::size_t>& batch, const std::vector<GenerateRequest>& requests,
                             const StopCheck& stop, std::vector<Generation>& results) {
  const auto B = static_cast<std::int64_t>(batch.size());
  std::int64_t T0 = 0, max_new = 0;
  for (auto r : batch) {
    T0 = std::max<std::int64_t>(T0, requests[r].context.size());
    max_new = std::max<std::int64_t>(max_new, requests[r].max_new_tokens);
  }
  std::vector<std::int64_t> pad(B);
  for (std::int64_t b = 0; b < B; ++b) pad[b] = T0 - static_cast<std::int64_t>(requests[batch[b]].context.size());
  std::vector<Tokens> generated(B);
  const bool cached = settings_.generation_cache;
  KVCache cache;
  if (cached) cache = model_->make_cache(B, T0 + max_new);

  // Left padding: every row's newest token sits in the same column. Padding keys are never attended to.
  auto full_forward = [&](const std::vector<std::int64_t>& rows, std::int64_t length, KVCache* into) {
    const auto R = static_cast<std::int64_t>(rows.size());
    std::vector<std::int64_t> tokens(R * length, 0), positions(R * length, 0);
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(R * length * length), 0);
    std::int64_t real = 0;
    for (std::int64_t k = 0; k < R; ++k) {
      const auto b = rows[k];
      const auto& context = requests[batch[b]].context;
      for (std::int64_t t = pad[b]; t < length; ++t) {
        const auto j = t - pad[b];
        tokens[k * length + t] = j < static_cast<std::int64_t>(context.size()) ? context[j] : generated[b][j - context.size()];
        positions[k * length + t] = j;
        std::fill(mask.begin() + (k * length + t) * length + pad[b], mask.begin() + (k * length + t) * length + t + 1, 1);
        ++real;
      }
      for (std::int64_t t = 0; t < pad[b]; ++t) mask[(k * length + t) * length + t] = 1;
    }
    const auto hidden = model_->forward(long_tensor(tokens, {R, length}, device_), long_tensor(positions, {R, length}, device_),
                                        bool_tensor(mask, {R, 1, length, length}, device_), into);
    add_forward(real, R * length);
    return hidden.select(1, length - 1);
  };
  // Greedy rows without log-probabilities take the argmax on the device; rows that sample or report log-probabilities
  // bring their distribution to the CPU.
  std::vector<std::int64_t> active(B);
  std::iota(active.begin(), active.end(), 0);
  std::vector<TokenSampler> samplers;
  bool needs_rows = false;
  for (auto r : batch) {
    samplers.emplace_back(requests[r].sampling);
    needs_rows = needs_rows || requests[r].sampling.temperature > 0 || requests[r].top_logprobs >= 0;
  }
  auto choose = [&](const at::Tensor& last_hidden) {
    const auto log_probs = model_->log_probs(last_hidden);
    const auto best = log_probs.argmax(-1).cpu();
    std::vector<std::int64_t> chosen(best.data_ptr<std::int64_t>(), best.data_ptr<std::int64_t>() + best.numel());
    if (!needs_rows) return chosen;
    const auto rows = log_probs.to(at::kFloat).cpu().contiguous();
    const auto vocab = static_cast<std::size_t>(rows.size(1));
    for (std::size_t a = 0; a < chosen.size(); ++a) {
      const auto b = active[a];
      const auto& request = requests[batch[b]];
      const float* row = rows.data_ptr<float>() + a * vocab;
      if (request.sampling.temperature > 0) chosen[a] = samplers[b].next(row, vocab);
      if (request.top_logprobs >= 0) {
        results[batch[b]].logprobs.push_back({static_cast<double>(row[chosen[a]]), top_logprobs(row, vocab, request.top_logprobs)});
      }
    }
    return chosen;
  };

  auto next = choose(full_forward(active, T0, cached ? &cache : nullptr));
  for (std::int64_t step = 1;; ++step) {
    std::vector<std::int64_t> still, kept;
    for (std::size_t a = 0; a < active.size(); ++a) {
      const auto b = active[a];
      const auto token = next[a];
      const auto r = batch[b];
      if (std::find(settings_.eos_ids.begin(), settings_.eos_ids.end(), token) != settings_.eos_ids.end()) {
        results[r].eos = token;
        if (requests[r].top_logprobs >= 0) {  // reported apart from the generated tokens
          results[r].eos_logprobs = std::move(results[r].logprobs.back());
          results[r].logprobs.pop_back();
        }
        continue;
      }
      generated[b].push_back(token);
      if (stop(r, generated[b])) continue;
      if (static_cast<std::int64_t>(generated[b].size()) >= requests[r].max_new_tokens) {
        results[r].hit_token_limit = true;
        continue;
      }
      still.push_back(b);
      kept.push_back(static_cast<std::int64_t>(a));
    }
    if (still.empty()) break;
    if (cached && still.size() < active.size()) cache.select_rows(long_tensor(kept, {static_cast<std::int64_t>(kept.size())}, device_));
    active = std::move(still);
    const auto R = static_cast<std::int64_t>(active.size());
    if (cached) {
      const auto S = T0 + step;  // keys after this step's token is written
      std::vector<std::int64_t> tokens(R), positions(R);
      std::vector<std::uint8_t> mask(static_cast<std::size_t>(R * S), 0);
      for (std::int64_t k = 0; k < R; ++k) {
        const auto b = active[k];
        tokens[k] = generated[b].back();
        positions[k] = S - 1 - pad[b];
        std::fill(mask.begin() + k * S + pad[b], mask.begin() + (k + 1) * S, 1);
      }
      const auto hidden = model_->forward(long_tensor(tokens, {R, 1}, device_), long_tensor(positions, {R, 1}, device_),
                                          bool_tensor(mask, {R, 1, 1, S}, device_), &cache);
      add_forward(R, R);
      next = choose(hidden.select(1, 0));
    } else {
      next = choose(full_forward(active, T0 + step, nullptr));
    }
  }
  for (std::int64_t b = 0; b < B; ++b) results[batch[b]].tokens = std::move(generated[b]);
}

}  // namespace mill::runtime
