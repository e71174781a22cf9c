#pragma once
// From the jobs to run to the SLURM arrays that run them (docs/schedule.md, "Resources per model", "Cost model and
// packing"): one array per resource shape, jobs packed into elements by predicted cost (one model per element),
// and each array's time limit from its longest element, the prediction's margin, model loading and start-up.
#include <optional>
#include <string>
#include <vector>

#include "mill/sweep/cluster.hpp"
#include "mill/sweep/cost_model.hpp"
#include "mill/sweep/plan.hpp"
#include "mill/sweep/resources.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/sweep/work_estimate.hpp"

namespace mill {

struct PlannedArray {
  ResourceShape shape;
  std::vector<std::vector<const PlannedJob*>> elements;
  int time_minutes = 0;
  bool from_history = false;   // the prediction used measured throughput
  std::string explanation;     // how the limit was derived, one line
  double predicted_gpu_hours = 0;  // Σ elements (prediction + loading) × GPUs (CPU-only arrays count CPU elements)
  double requested_gpu_hours = 0;  // elements × limit × GPUs
};

struct ArrayPlanRequest {
  const ClusterProfile* profile = nullptr;
  const TaskRegistry* registry = nullptr;
  std::vector<std::string> requested_tasks;  // as typed: a budget of --minutes_per_eval covers one name
  std::optional<double> minutes_per_eval;    // explicit budget per task or benchmark (replaces the cost model)
  std::optional<int> evals_per_element;      // at most this many jobs per element
  bool read_checkpoints = true;              // false: --skip_model_check (sizes unknown, no memory estimate)
  WorkEstimator* work = nullptr;
  const CostModel* cost = nullptr;
};

struct ArrayPlan {
  std::vector<PlannedArray> arrays;
  double predicted_gpu_hours = 0;
  double requested_gpu_hours = 0;
  // Every element of every array, in manifest order (arrays one after another).
  std::vector<std::vector<const PlannedJob*>> all_elements() const;
};

ArrayPlan plan_arrays(const std::vector<const PlannedJob*>& jobs, const ArrayPlanRequest& request);

}  // namespace mill
