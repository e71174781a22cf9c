#pragma once
// The evaluation engine: turns one job (model × task × n_shot) into requests, sends them to a backend in batches,
// scores the responses, journals every sample and writes the final result (schemas in docs/results.md).
#include <atomic>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/eval/job.hpp"
#include "mill/model/model.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

// One evaluated document and what is asked about it.
struct Sample {
  long long doc_id = 0;  // 0-based index in the evaluation split after the task's filter
  nlohmann::json doc;
  std::string context;                     // logprobs and generative (partial evaluation: the first option's)
  std::vector<std::string> contexts;       // logprobs: one per request (partial evaluation: each option's own)
  std::vector<std::string> continuations;  // logprobs: one per request
  int gold = -1;                           // index of the correct option (the first, with several), where there are options
  std::vector<int> golds;                  // every correct option (several with multiple true targets)
  std::string target;                      // generative, and logprobs with `continuation: target`: the expected answer
  std::string text;                        // perplexity: the text scored
};

struct PreparedTask {
  std::vector<Sample> samples;
  nlohmann::json data;  // {"eval": {"split","origin","fingerprint","documents"}, "fewshot": {...}}
};


// Loads the task's data and builds every sample's prompt. Few-shot examples come from the few-shot split (or the
// task's inline `fewshot_documents`) as its `fewshot_sampler` picks them (fewshot.hpp). `limit` keeps the first N.
PreparedTask prepare_task(const TaskInfo& task, int n_shot, std::optional<int> limit,
                          const std::optional<std::filesystem::path>& data_dir);

// The task's inline few-shot pool (`fewshot_documents`, used as written); the task must have one.
std::vector<nlohmann::json> fewshot_documents(const TaskInfo& task);

// Throws mill::Error (usage) when the backend cannot serve the task's request kind.
void require_capability(const BackendCapabilities& capabilities, const TaskInfo& task, const std::string& model);


struct EvalProgress {
  std::size_t done_samples = 0;
  std::size_t total_samples = 0;
};

struct EvalSettings {
  std::filesystem::path output_dir;
  std::optional<std::filesystem::path> data_dir;
  std::size_t docs_per_batch = 32;
  // Set from a signal handler (SIGUSR1/SIGTERM): the current batch finishes and is journaled, then run_job returns
  // `preempted`.
  const std::atomic<bool>* stop = nullptr;
  std::function<void(const EvalProgress&)> on_progress;  // after every batch (and once before the first)
  // The checkpoint folder read and its fingerprint (ModelIdentity::checkpoint_record), recorded in the result.
  nlohmann::json model_checkpoint;
  // Recorded in provenance for the cost model: the profile's GPU type (from the manifest) and how long loading the
  // model of this element took.
  std::string gpu_type;
  double model_load_seconds = 0;
};

enum class JobState { completed, preempted };

struct JobOutcome {
  JobState state = JobState::completed;
  std::filesystem::path result_path;
  nlohmann::json result;      // the final result document (completed only)
  std::size_t resumed = 0;    // samples taken from an earlier run's journal
  std::size_t evaluated = 0;  // samples evaluated by this call
  std::size_t total = 0;
};

// Runs one job end to end. Failures throw mill::Error; what was journaled stays for the next attempt.
JobOutcome run_job(ModelBackend& backend, const Job& job, const JobKey& key, const EvalSettings& settings);

// Aggregates per-sample scores (journal entries, in doc_id order) into {"metric": {"value","stderr","n"}}.
nlohmann::json aggregate_scores(const std::vector<std::string>& metrics, const std::vector<nlohmann::json>& entries);

}  // namespace mill
