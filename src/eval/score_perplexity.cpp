// Perplexity scoring: each sample's whole text is one rolling log-likelihood request; the entry keeps its nll,
// tokens and bytes so that word, byte and token perplexities aggregate over the corpus.
#include <cmath>

#include "mill/eval/batch_scorer.hpp"

namespace mill {

namespace {

class PerplexityScorer final : public BatchScorer {
 public:
  std::vector<nlohmann::json> score(ModelBackend& backend, const std::vector<const Sample*>& batch) override {
    std::vector<nlohmann::json> entries;
    std::vector<RollingRequest> requests;
    for (const auto* sample : batch) requests.push_back({sample->text});
    const auto results = backend.loglikelihood_rolling(requests);
    require_answers(results.size(), requests.size(), "rolling log-likelihoods");
    for (std::size_t s = 0; s < batch.size(); ++s) {
      const auto& sample = *batch[s];
      const auto& result = results[s];
      const double nll = -result.logprob;
      nlohmann::json entry = {
          {"doc_id", sample.doc_id},
          {"scores",
           {{"nll", nll},
            {"tokens", result.n_tokens},
            {"bytes", sample.text.size()},
            {"perplexity", result.n_tokens > 0 ? std::exp(nll / result.n_tokens) : 0.0}}},
          {"request", {{"text", sample.text}}},
          {"response", {{"logprob", result.logprob}, {"n_tokens", result.n_tokens}}},
          {"n_tokens", result.n_tokens}};
        entries.push_back(std::move(entry));
    }
    return entries;
  }
};

}  // namespace

std::unique_ptr<BatchScorer> make_perplexity_scorer(const TaskInfo&) { return std::make_unique<PerplexityScorer>(); }

}  // namespace mill
