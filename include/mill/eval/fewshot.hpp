#pragma once
// Which few-shot examples each evaluated document gets (docs/tasks.md, `fewshot_sampler`):
// - first_n: the first n documents of the pool in order, skipping the document itself when the pool is the
//   evaluation split (lm-eval's first_n sampler, MMLU);
// - random: lm-eval's default sampler, Python's random.Random(fewshot_seed).sample(pool, n), one call per evaluated
//   document in document order; with `fewshot_draw_extra` it draws n + 1 and drops the evaluated document if drawn,
//   else the last (lm-eval does so when a task's few-shot split is its test split, which includes every task
//   without a test split, such as HellaSwag).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/base/python_random.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

struct FewshotSettings {
  std::string sampler = "first_n";
  std::uint64_t seed = 1234;
  bool draw_extra = false;
};
// Reads and checks `fewshot_sampler`, `fewshot_seed`, `fewshot_draw_extra`; a bad value throws mill::Error.
FewshotSettings fewshot_settings(const TaskInfo& task);

// How many pool documents n shots need (n + 1 when the evaluated document may be drawn and is dropped).
std::size_t fewshot_pool_needed(const FewshotSettings& settings, std::size_t n_shot, bool pool_is_eval_split);

class FewshotSampler {
 public:
  FewshotSampler(FewshotSettings settings, const std::vector<nlohmann::json>& pool, bool pool_is_eval_split);
  // The examples of the next evaluated document; documents must be asked for in order, from the first.
  std::vector<const nlohmann::json*> next(std::size_t n_shot, std::size_t doc_index, const nlohmann::json& doc);

 private:
  FewshotSettings settings_;
  const std::vector<nlohmann::json>& pool_;
  bool pool_is_eval_split_;
  PythonRandom random_;
};

}  // namespace mill
