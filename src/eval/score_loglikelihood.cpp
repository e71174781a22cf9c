// Log-likelihood scoring: every choice of a sample is one request (context, continuation); the choice with the
// highest log-probability is the answer (acc), per code point without the delimiter for acc_norm, and the
// probability mass on the true choices for mc2. A target continuation (no choices) gives its nll.
#include <algorithm>

#include "mill/base/text.hpp"
#include "mill/eval/batch_scorer.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/prompt.hpp"

namespace mill {

namespace {

class LoglikelihoodScorer final : public BatchScorer {
 public:
  explicit LoglikelihoodScorer(const TaskInfo& task)
      : prompt(task),
        text_continuations(prompt.continuation_is_text()),
        delimiter_length(code_point_count(task.definition.value("prompt", nlohmann::json::object())
                                         .value("target_delimiter", std::string(" ")))) {}

  std::vector<nlohmann::json> score(ModelBackend& backend, const std::vector<const Sample*>& batch) override {
    std::vector<nlohmann::json> entries;
    std::vector<LoglikelihoodRequest> requests;
    for (std::size_t s = 0; s < batch.size(); ++s) {
      const auto& sample = *batch[s];
      for (std::size_t c = 0; c < sample.continuations.size(); ++c) {
        requests.push_back({sample.contexts[c], sample.continuations[c]});
      }
    }
    const auto results = backend.loglikelihood(requests);
    require_answers(results.size(), requests.size(), "log-likelihoods");
    std::size_t r = 0;
    for (std::size_t s = 0; s < batch.size(); ++s) {
      const auto& sample = *batch[s];
      std::vector<double> logprobs;
      std::vector<std::size_t> lengths;
      std::vector<bool> greedy;
      long long tokens = 0;
      auto response = nlohmann::json::object({{"logprobs", nlohmann::json::array()},
                                              {"greedy", nlohmann::json::array()},
                                              {"n_tokens", nlohmann::json::array()}});
      for (const auto& continuation : sample.continuations) {
        const auto& result = results[r++];
        logprobs.push_back(result.logprob);
        // acc_norm divides by the option's own length, without the target delimiter (lm-eval's len(choice)).
        lengths.push_back(code_point_count(continuation) - std::min(code_point_count(continuation), delimiter_length));
        greedy.push_back(result.greedy);
        tokens += result.n_tokens;
        response["logprobs"].push_back(result.logprob);
        response["greedy"].push_back(result.greedy);
        response["n_tokens"].push_back(result.n_tokens);
      }
      const auto score = score_choices(logprobs, lengths, greedy, sample.golds);
      nlohmann::json scores = {{"greedy_acc", score.greedy_correct ? 1.0 : 0.0}};
      if (prompt.continuation() == ContinuationKind::target) {
        scores["nll"] = -logprobs.front();  // corpus perplexity: exp of the mean over documents (lm-eval's)
      } else {
        scores["acc"] = score.correct ? 1.0 : 0.0;
        scores["mc2"] = score.true_mass;
      }
      if (text_continuations) scores["acc_norm"] = score.correct_norm ? 1.0 : 0.0;
      nlohmann::json request = {{"context", sample.context}, {"continuations", sample.continuations}};
      if (prompt.continuation() == ContinuationKind::suffix) request["contexts"] = sample.contexts;
      nlohmann::json entry = {{"doc_id", sample.doc_id},
                              {"scores", scores},
                              {"target", sample.golds.size() > 1 ? nlohmann::json(sample.golds) : nlohmann::json(sample.gold)},
                              {"target_text", sample.continuations[static_cast<std::size_t>(sample.gold)]},
                              {"prediction", score.predicted},
                              {"request", request},
                              {"response", response},
                              {"n_tokens", tokens}};
      if (text_continuations) entry["prediction_norm"] = score.predicted_norm;
        entries.push_back(std::move(entry));
    }
    return entries;
  }

 private:
  PromptBuilder prompt;
  bool text_continuations;
  std::size_t delimiter_length;
};

}  // namespace

std::unique_ptr<BatchScorer> make_loglikelihood_scorer(const TaskInfo& task) {
  return std::make_unique<LoglikelihoodScorer>(task);
}

}  // namespace mill
