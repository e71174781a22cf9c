#include "mill/eval/fewshot.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"

namespace mill {

FewshotSettings fewshot_settings(const TaskInfo& task) {
  const auto where = fmt::format("task {} ({})", task.name, task.source);
  FewshotSettings settings;
  const auto& definition = task.definition;
  const auto sampler = definition.value("fewshot_sampler", nlohmann::json("first_n"));
  if (sampler != "first_n" && sampler != "random") {
    throw Error(fmt::format("{}: field `fewshot_sampler`: {} is not one of first_n, random", where, sampler.dump()));
  }
  settings.sampler = sampler.get<std::string>();
  if (definition.contains("fewshot_seed")) {
    const auto& seed = definition["fewshot_seed"];
    if (!seed.is_number_integer() || seed.get<long long>() < 0) {
      throw Error(fmt::format("{}: field `fewshot_seed`: {} is not a non-negative integer", where, seed.dump()));
    }
    settings.seed = seed.get<std::uint64_t>();
  }
  if (definition.contains("fewshot_draw_extra")) {
    if (!definition["fewshot_draw_extra"].is_boolean()) {
      throw Error(fmt::format("{}: field `fewshot_draw_extra` must be true or false", where));
    }
    settings.draw_extra = definition["fewshot_draw_extra"].get<bool>();
  }
  if (settings.sampler != "random" && (definition.contains("fewshot_seed") || settings.draw_extra)) {
    throw Error(fmt::format("{}: fields `fewshot_seed` and `fewshot_draw_extra` apply only with `fewshot_sampler: random`",
                            where));
  }
  return settings;
}

std::size_t fewshot_pool_needed(const FewshotSettings& settings, std::size_t n_shot, bool pool_is_eval_split) {
  if (n_shot == 0) return 0;
  if (settings.sampler == "random") return n_shot + (settings.draw_extra ? 1 : 0);
  return n_shot + (pool_is_eval_split ? 1 : 0);
}

FewshotSampler::FewshotSampler(FewshotSettings settings, const std::vector<nlohmann::json>& pool, bool pool_is_eval_split)
    : settings_(std::move(settings)), pool_(pool), pool_is_eval_split_(pool_is_eval_split), random_(settings_.seed) {}

std::vector<const nlohmann::json*> FewshotSampler::next(std::size_t n_shot, std::size_t doc_index, const nlohmann::json& doc) {
  std::vector<const nlohmann::json*> out;
  if (n_shot == 0) return out;
  if (settings_.sampler == "first_n") {
    for (std::size_t k = 0; out.size() < n_shot && k < pool_.size(); ++k) {
      if (pool_is_eval_split_ && k == doc_index) continue;
      out.push_back(&pool_[k]);
    }
    return out;
  }
  const auto drawn = random_.sample(pool_.size(), n_shot + (settings_.draw_extra ? 1 : 0));
  for (const auto index : drawn) {
    if (settings_.draw_extra && pool_[index] == doc) continue;
    if (out.size() < n_shot) out.push_back(&pool_[index]);
  }
  return out;
}

}  // namespace mill
