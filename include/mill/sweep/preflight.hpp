#pragma once
// Plan-time checks of everything a worker will need that can be seen from the login node (docs/schedule.md,
// "Preflight"): task definitions, data files and few-shot pools, model arguments and checkpoints, a writable
// results tree. `mill schedule` runs them once over the whole plan and submits nothing when any fails, because
// on a cluster a job that can only fail costs its whole queue wait. Reads directory entries, small JSON files and
// the first records of data files, never weights or whole datasets.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mill/sweep/cluster.hpp"
#include "mill/model/model_spec.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

struct PreflightProblem {
  std::string area;     // "task", "data", "model" or "environment"
  std::string model;    // the model spec (ModelSpec::to_string) it concerns, or empty
  std::vector<std::string> tasks;  // the tasks it concerns, if any
  std::string message;  // one line: what is wrong and what would be valid
};

struct PreflightRequest {
  std::vector<ModelSpec> models;
  std::vector<const TaskInfo*> tasks;
  std::optional<std::vector<int>> n_shots;  // absent: each task's default
  std::optional<std::filesystem::path> data_dir;  // the one the workers will use
  std::filesystem::path output_dir;
  // The profile the sweep runs on (absent for --local): each model's GPUs must fit on its nodes and in their memory.
  const ClusterProfile* profile = nullptr;
  bool check_model_files = true;  // false: --skip_model_check (the compute nodes see other files than this host)
};

// Every problem found, in the order areas are checked (tasks, data, models, environment); empty when all is well.
std::vector<PreflightProblem> run_preflight(const PreflightRequest& request);

}  // namespace mill
