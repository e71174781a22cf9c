#pragma once
// A job's work (job_work.hpp) at plan time, as estimated from the task's
// data: the evaluation split's document count times the mean request of its first documents, rendered exactly as
// the worker renders them. Plan-time estimates are cached in <cache_dir>/work-estimates.json, keyed by the task's
// definition, n_shot, limit and the data files' size and modification time, so a plan reads a task's data once.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "mill/sweep/cost_model.hpp"
#include "mill/eval/engine.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

class WorkEstimator {
 public:
  WorkEstimator(std::filesystem::path cache_dir, std::optional<std::filesystem::path> data_dir);

  // Documents and input bytes from the data; output_tokens is the generation cap per document for generative
  // tasks (the cost model replaces it with what history shows). Throws mill::Error when the data cannot be read.
  JobWork estimate(const TaskInfo& task, int n_shot, std::optional<int> limit);

  // Writes the cache file when estimates were added (best effort: a read-only cache dir only costs the next plan
  // a re-read).
  void save() const;

 private:
  std::filesystem::path cache_file_;
  std::optional<std::filesystem::path> data_dir_;
  nlohmann::json cache_ = nlohmann::json::object();
  std::map<std::tuple<const TaskInfo*, int, int>, JobWork> answered_;  // this process's answers
  bool changed_ = false;
};

}  // namespace mill
