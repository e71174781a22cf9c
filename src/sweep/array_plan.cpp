#include "mill/sweep/array_plan.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>

#include "mill/base/error.hpp"
#include "mill/model/model_args.hpp"
#include "mill/sweep/walltime.hpp"

namespace mill {

namespace {

// Jobs per element when --evals_per_element does not say: packing by predicted time decides, within reason.
constexpr std::size_t kMaxJobsPerElement = 256;

struct ModelFacts {
  ModelResources resources;
  SpeedClass speed;
  double parameters = 0;
};

// --minutes_per_eval is a budget for one name the user typed: a task, or a whole benchmark whose subtasks share
// it by document count.
std::map<const PlannedJob*, double> budget_seconds(const std::vector<const PlannedJob*>& jobs,
                                                   const std::map<const PlannedJob*, JobWork>& work,
                                                   const ArrayPlanRequest& request) {
  std::map<std::string, std::string> group_of_task;  // task name → the requested name that brought it in
  for (const auto& name : request.requested_tasks) {
    for (const auto* task : request.registry->expand({name})) group_of_task.emplace(task->name, name);
  }
  // Documents per (model, n_shot, group): each model's and each n_shot's run of a benchmark gets the whole budget.
  auto group_key = [&](const PlannedJob* job) {
    const auto it = group_of_task.find(job->job.task->name);
    return fmt::format("{}\n{}\n{}", job->job.model.to_string(), job->job.n_shot,
                       it == group_of_task.end() ? job->job.task->name : it->second);
  };
  std::map<std::string, double> documents;
  std::map<std::string, int> members;
  for (const auto* job : jobs) {
    documents[group_key(job)] += work.at(job).documents;
    members[group_key(job)] += 1;
  }
  std::map<const PlannedJob*, double> seconds;
  for (const auto* job : jobs) {
    const auto key = group_key(job);
    const double share = documents[key] > 0 ? work.at(job).documents / documents[key] : 1.0 / members[key];
    seconds[job] = *request.minutes_per_eval * 60 * share;
  }
  return seconds;
}

// The speed class a model runs in on `profile` (backend, device, dtype), for the cost model.
SpeedClass speed_class_of(const ModelSpec& spec, const ModelResources& resources, const ClusterProfile& profile) {
  // Spelled as the results' provenance spells them, so that a plan finds the history of its own kind of run.
  const auto device = resources.gpus > 0 ? "cuda" : "cpu";
  if (spec.name == "mill-demo") return make_speed_class("mill-demo", "cpu", "", "float64");
  if (spec.backend() == "api") return make_speed_class("api", "", "", "");
  if (spec.backend() == "vllm") return make_speed_class("vllm", device, profile.gpu_type, "auto");
  return make_speed_class("local", device, profile.gpu_type, read_runtime_args(spec).dtype);
}

}  // namespace

std::vector<std::vector<const PlannedJob*>> ArrayPlan::all_elements() const {
  std::vector<std::vector<const PlannedJob*>> all;
  for (const auto& array : arrays) all.insert(all.end(), array.elements.begin(), array.elements.end());
  return all;
}

ArrayPlan plan_arrays(const std::vector<const PlannedJob*>& jobs, const ArrayPlanRequest& request) {
  const auto& profile = *request.profile;
  const bool budgeted = request.minutes_per_eval.has_value();
  std::map<std::string, ModelFacts> models;  // by spec: each model's checkpoint is read once
  std::map<const PlannedJob*, const ModelFacts*> facts_of;
  std::map<const PlannedJob*, JobWork> work;
  for (const auto* job : jobs) {
    const auto [entry, added] = models.try_emplace(job->job.model.to_string());
    auto& facts = entry->second;
    if (added) {
      try {
        facts.resources = model_resources(job->job.model, profile, request.read_checkpoints);
        facts.speed = speed_class_of(job->job.model, facts.resources, profile);
      } catch (const Error&) {
        // Arguments the preflight refused (a dry run still shows the plan): the profile's default shape.
        facts.resources.gpus = profile.gpus_per_task;
        facts.resources.shape = resource_shape(profile.gpus_per_task, profile);
        facts.speed = make_speed_class("local", "cuda", profile.gpu_type, "bfloat16");
      }
      facts.parameters = facts.resources.footprint ? facts.resources.footprint->parameters : 0;
    }
    facts_of[job] = &facts;
    JobWork estimate;
    try {
      estimate = request.work->estimate(*job->job.task, job->job.n_shot, job->job.limit);
    } catch (const Error&) {
      // Unreadable data is a preflight problem, reported there; this job is planned as if it had no work.
    }
    if (const auto tokens = request.cost->output_tokens_per_document(job->job.task->name);
        tokens && job->job.task->output_type == OutputType::generative) {
      estimate.output_tokens = *tokens * estimate.documents;
    }
    work[job] = estimate;
  }
  std::map<const PlannedJob*, double> seconds;
  std::map<const PlannedJob*, CostPrediction> predictions;
  if (budgeted) {
    seconds = budget_seconds(jobs, work, request);
  } else {
    for (const auto* job : jobs) {
      const auto& facts = *facts_of[job];
      predictions[job] = request.cost->predict(facts.speed, job->job.task->name, facts.parameters, work[job]);
      seconds[job] = predictions[job].seconds;
    }
  }
  // The margin history shows covers predictions made from history; a default throughput gets at least the
  // default margin.
  bool all_from_history = !budgeted;
  for (const auto& [job, prediction] : predictions) all_from_history &= prediction.from_history;
  const double margin = budgeted           ? 1.0
                        : all_from_history ? request.cost->margin()
                                           : std::max(request.cost->margin(), kDefaultMargin);

  // One array per shape, in the order the shapes first appear.
  std::vector<std::pair<ResourceShape, std::vector<const PlannedJob*>>> by_shape;
  for (const auto* job : jobs) {
    const auto& shape = facts_of[job]->resources.shape;
    auto it = std::find_if(by_shape.begin(), by_shape.end(), [&](const auto& group) { return group.first == shape; });
    if (it == by_shape.end()) it = by_shape.insert(by_shape.end(), {shape, {}});
    it->second.push_back(job);
  }

  ArrayPlan plan;
  const double startup_seconds = kStartupMinutes * 60.0;
  const double max_seconds = profile.max_time_minutes * 60.0;
  for (const auto& [shape, members] : by_shape) {
    double load = 0;
    std::vector<PackItem> items;
    for (std::size_t i = 0; i < members.size(); ++i) {
      const auto& facts = *facts_of[members[i]];
      if (!budgeted) load = std::max(load, request.cost->load_seconds(facts.speed, facts.parameters));
      items.push_back({i, members[i]->job.model.to_string(), seconds[members[i]]});
    }
    const double fits =
        std::max(60.0, (max_seconds - startup_seconds - profile.signal_minutes * 60.0 - load) / margin);
    const auto packed = pack_elements(items, std::min(profile.target_element_minutes * 60.0, fits), fits,
                                      request.evals_per_element ? static_cast<std::size_t>(*request.evals_per_element)
                                                                : kMaxJobsPerElement);
    if (packed.empty()) continue;
    PlannedArray array;
    array.shape = shape;
    std::size_t longest = 0;
    for (std::size_t e = 0; e < packed.size(); ++e) {
      // Packing chose the members; they run in plan order (models × tasks × n_shots as typed), as logs expect.
      auto indices = packed[e].jobs;
      std::sort(indices.begin(), indices.end());
      std::vector<const PlannedJob*> element;
      for (const auto index : indices) element.push_back(members[index]);
      array.elements.push_back(std::move(element));
      array.predicted_gpu_hours += (packed[e].seconds + load) / 3600 * shape.gpus;
      if (packed[e].seconds > packed[longest].seconds) longest = e;
    }
    const double longest_seconds = packed[longest].seconds;
    // The pre-walltime signal comes signal_minutes before the limit: the work's allowance ends before it.
    const int wanted = static_cast<int>(std::ceil((longest_seconds * margin + load) / 60.0)) + kStartupMinutes +
                       profile.signal_minutes;
    array.time_minutes = std::min(wanted, profile.max_time_minutes);
    const auto* sample = array.elements[longest].front();
    if (budgeted) {
      array.explanation = fmt::format(
          "--minutes_per_eval {} per task or benchmark, split among its subtasks by documents: longest element {} "
          "job(s) of {} = {:.1f} min + {} min start-up + {} min before the stop signal = {} min",
          *request.minutes_per_eval, array.elements[longest].size(), sample->job.model.to_string(), longest_seconds / 60,
          kStartupMinutes, profile.signal_minutes, wanted);
    } else {
      const auto& prediction = predictions[sample];
      array.from_history = prediction.from_history;
      array.explanation = fmt::format(
          "longest element {} job(s) of {}: predicted {:.1f} min ({}) × margin {:.2f} ({}) + {:.1f} min loading + {} "
          "min start-up + {} min before the stop signal = {} min",
          array.elements[longest].size(), sample->job.model.to_string(), longest_seconds / 60, prediction.source, margin,
          all_from_history || request.cost->margin() >= kDefaultMargin
              ? request.cost->margin_source()
              : std::string("the default margin: the throughput is not from history"),
          load / 60, kStartupMinutes, profile.signal_minutes, wanted);
    }
    if (wanted > profile.max_time_minutes) {
      array.explanation += fmt::format("; clamped to the partition maximum {}: progress is journaled and requeued",
                                       format_slurm_time(profile.max_time_minutes));
    }
    array.explanation += fmt::format(" → --time={}", format_slurm_time(array.time_minutes));
    array.requested_gpu_hours = array.elements.size() * array.time_minutes / 60.0 * shape.gpus;
    plan.predicted_gpu_hours += array.predicted_gpu_hours;
    plan.requested_gpu_hours += array.requested_gpu_hours;
    plan.arrays.push_back(std::move(array));
  }
  return plan;
}

}  // namespace mill
