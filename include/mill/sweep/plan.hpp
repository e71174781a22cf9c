#pragma once
// The sweep planner: job matrix → result-cache check → array elements → manifest. No SLURM calls here.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/eval/job.hpp"
#include "mill/eval/results.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/sweep/manifest.hpp"

namespace mill {

struct PlanRequest {
  std::vector<std::string> models;          // model specs as typed
  std::vector<std::string> tasks;           // task and benchmark names
  std::optional<std::vector<int>> n_shots;  // absent: each task's default_n_shots
  std::optional<int> limit;
  std::filesystem::path output_dir;
};

struct PlannedJob {
  Job job;
  JobKey key;
  ResultCheck check;  // done jobs are skipped; missing, stale and corrupt ones are (re)run
  std::filesystem::path result;
};

struct Plan {
  std::vector<PlannedJob> jobs;  // the whole matrix, models × tasks × n_shots in the order given
  std::size_t count(ResultState state) const;
  std::vector<const PlannedJob*> pending() const;  // everything not done, except results of a newer scorer
};

// Parses and expands the request, resolves each model's revision once and checks every job's result file.
// Bad input (model spec, task name, n_shot) throws mill::Error before anything is checked.
Plan build_plan(const PlanRequest& request, const TaskRegistry& registry);

// The manifest that workers read (manifest.hpp): one entry per array element with its model and jobs.
// `settings` holds sweep-wide values (extra task paths, data dir...).
Manifest make_manifest(const std::vector<std::vector<const PlannedJob*>>& elements, const nlohmann::json& settings);

}  // namespace mill
