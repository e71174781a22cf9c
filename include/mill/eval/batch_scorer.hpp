#pragma once
// One unit per output type of a task: sends a batch of samples to the backend and scores each answer into a
// journal entry (doc_id, scores, target, prediction, request, response, n_tokens). The engine (engine.hpp) drives
// them batch by batch and aggregates the journal; docs/results.md describes the entries.
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "mill/eval/engine.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/model/model.hpp"

namespace mill {

class BatchScorer {
 public:
  virtual ~BatchScorer() = default;
  // One journal entry per sample, in order. Throws mill::Error (eval_failed) when the backend answers a different
  // number of requests than it was sent.
  virtual std::vector<nlohmann::json> score(ModelBackend& backend, const std::vector<const Sample*>& batch) = 0;
};

// Log-likelihood of each choice (multiple choice, mc2, target perplexity).
std::unique_ptr<BatchScorer> make_loglikelihood_scorer(const TaskInfo& task);
// Generation with the task's stop sequences, answers extracted by its patterns or filters.
std::unique_ptr<BatchScorer> make_generation_scorer(const TaskInfo& task);
// Rolling log-likelihood of whole texts (perplexity tasks).
std::unique_ptr<BatchScorer> make_perplexity_scorer(const TaskInfo& task);

// Fails with ExitCode::eval_failed when a backend returned `got` answers for `sent` requests.
void require_answers(std::size_t got, std::size_t sent, const char* what);

}  // namespace mill
