#include "mill/sweep/plan.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <set>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::size_t Plan::count(ResultState state) const {
  return static_cast<std::size_t>(
      std::count_if(jobs.begin(), jobs.end(), [&](const PlannedJob& job) { return job.check.state == state; }));
}

std::vector<const PlannedJob*> Plan::pending() const {
  std::vector<const PlannedJob*> out;
  for (const auto& job : jobs) {
    // A result from a newer scorer is never overwritten by this mill, so running its job could only fail.
    if (job.check.state != ResultState::done && !job.check.newer_scoring_version) out.push_back(&job);
  }
  return out;
}

Plan build_plan(const PlanRequest& request, const TaskRegistry& registry) {
  if (request.models.empty()) throw Error("no model given (expected a comma-separated list of model specs)");
  if (request.tasks.empty()) throw Error("no task given (expected a comma-separated list of task or benchmark names)");
  std::vector<ModelSpec> models;
  std::set<std::string> identities;  // two spellings of one model are planned once (linear: lists can be long)
  for (const auto& text : request.models) {
    auto spec = ModelSpec::parse(text);
    if (identities.insert(spec.identity()).second) models.push_back(std::move(spec));
  }
  const auto tasks = registry.expand(request.tasks);
  std::vector<int> shots;  // --n_shots without repeats, in the order given
  if (request.n_shots) {
    for (int n : *request.n_shots) {
      if (n < 0 || n > 1000) throw Error(fmt::format("--n_shots: {} is not a number of examples in 0..1000", n));
      if (std::find(shots.begin(), shots.end(), n) == shots.end()) shots.push_back(n);
    }
  }
  if (request.limit && *request.limit <= 0) throw Error(fmt::format("--limit: {} is not a positive integer", *request.limit));

  Plan plan;
  for (const auto& model : models) {
    const auto identity = identify_model(model);
    // A checkpoint folder that cannot be read keeps its path's directory; the preflight reports the folder.
    const auto results_name = results_model(request.output_dir, identity);
    for (const auto* task : tasks) {
      for (int n_shot : request.n_shots ? shots : std::vector<int>{task->default_n_shots}) {
        PlannedJob planned;
        planned.job = Job{model, task, n_shot, request.limit, results_name == identity.spec ? "" : results_name};
        planned.key = make_job_key(planned.job, identity);
        planned.result = result_path(request.output_dir, planned.job);
        planned.check = check_result(planned.result, planned.key);
        plan.jobs.push_back(std::move(planned));
      }
    }
  }
  return plan;
}

Manifest make_manifest(const std::vector<std::vector<const PlannedJob*>>& elements, const nlohmann::json& settings) {
  Manifest manifest{settings, {}};
  for (const auto& element : elements) {
    ManifestElement entry;
    entry.model = element.front()->job.model.to_string();
    // The revision the plan resolved: the worker evaluates that one, so the result's key is the planned key.
    entry.model_revision = element.front()->key.inputs.value("model_revision", kUnresolvedRevision);
    for (const auto* job : element) entry.jobs.push_back({job->job.task->name, job->job.n_shot, job->job.limit, job->key.digest});
    manifest.elements.push_back(std::move(entry));
  }
  return manifest;
}

}  // namespace mill
