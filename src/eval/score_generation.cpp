// Generative scoring: each sample's context is generated from until a stop sequence or the token cap; the
// answer is extracted by the task's patterns (exact_match, unparsed_rate) or by each of its answer filters (one
// exact_match_<filter> per filter, as lm-eval's strict-match and flexible-extract).
#include <optional>

#include "mill/base/text.hpp"
#include "mill/eval/answer_filter.hpp"
#include "mill/eval/batch_scorer.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/eval/metrics.hpp"

namespace mill {

namespace {

class GenerationScorer final : public BatchScorer {
 public:
  explicit GenerationScorer(const TaskInfo& task)
      : generation(generation_settings(task)), filters(answer_filters(task)), normalizer(task) {
    if (filters.empty()) extractor.emplace(extraction_patterns(task));
  }

  std::vector<nlohmann::json> score(ModelBackend& backend, const std::vector<const Sample*>& batch) override {
    std::vector<nlohmann::json> entries;
    std::vector<GenerationRequest> requests;
    for (const auto* sample : batch) requests.push_back({sample->context, generation.stop, generation.max_new_tokens});
    const auto results = backend.generate(requests);
    require_answers(results.size(), requests.size(), "generations");
    for (std::size_t s = 0; s < batch.size(); ++s) {
      const auto& sample = *batch[s];
      const auto& result = results[s];
      nlohmann::json scores = {{"hit_token_limit_rate", result.hit_token_limit ? 1.0 : 0.0}};
      nlohmann::json prediction;
      nlohmann::json extracted_by;
      if (filters.empty()) {
        const auto match = extractor->extract(result.text);
        scores["exact_match"] = match && normalizer.same(trim(match->answer), sample.target) ? 1.0 : 0.0;
        scores["unparsed_rate"] = match ? 0.0 : 1.0;
        if (match) {
          prediction = match->answer;
          extracted_by = match->pattern;
        }
      } else {
        // Every filter gives its own answer and its own metrics (lm-eval's strict-match and flexible-extract).
        prediction = nlohmann::json::object();
        for (const auto& filter : filters) {
          const auto answer = filter.apply(result.text);
          scores["exact_match_" + filter.name] = answer && normalizer.same(*answer, sample.target) ? 1.0 : 0.0;
          scores["unparsed_rate_" + filter.name] = answer ? 0.0 : 1.0;
          prediction[filter.name] = answer ? nlohmann::json(*answer) : nlohmann::json();
        }
      }
      nlohmann::json entry = {
          {"doc_id", sample.doc_id},
          {"scores", scores},
          {"target", sample.target},
          {"prediction", prediction},
          {"extracted_by", extracted_by},
          {"request",
           {{"context", sample.context}, {"stop", generation.stop}, {"max_new_tokens", generation.max_new_tokens}}},
          {"response", {{"text", result.text}, {"hit_token_limit", result.hit_token_limit}, {"n_tokens", result.n_tokens}}},
          {"n_tokens", result.n_tokens}};
        entries.push_back(std::move(entry));
    }
    return entries;
  }

 private:
  GenerationSettings generation;
  std::vector<AnswerFilter> filters;
  std::optional<AnswerExtractor> extractor;
  AnswerNormalizer normalizer;
};

}  // namespace

std::unique_ptr<BatchScorer> make_generation_scorer(const TaskInfo& task) {
  return std::make_unique<GenerationScorer>(task);
}

}  // namespace mill
