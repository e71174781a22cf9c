#pragma once
// How long a job will take: its work (counted at plan time from its data) times a throughput learned from what
// earlier results cost, and the packing of jobs into array elements by that prediction (docs/schedule.md,
// "Cost model" and "Packing"). Pure computation: reading history is the only file access.
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mill/eval/job_work.hpp"
#include "mill/eval/results.hpp"

namespace mill {

// Where a job runs, as far as speed is concerned. `device` is normalised: "cpu", or the GPU type in lower case
// ("a100", "h100"), or "gpu" when the type is unknown.
struct SpeedClass {
  std::string backend;  // runtime, vllm, api, demo
  std::string device;
  std::string dtype;    // "" when the backend has none
  bool operator==(const SpeedClass&) const = default;
  std::string to_string() const;  // e.g. "runtime on a100 in bfloat16"
};

// The speed class of a run, normalised the way read_cost_history reads results, so that plan time and history
// agree: backend `mill-demo` → demo, `local` → runtime, `litellm` → api; device cpu → "cpu", a CUDA device →
// lower-case `gpu_type` or "gpu"; vllm without a device → the GPU type too, api → "remote"; dtype aliases take
// the full name and vllm's `auto` is "" (its results record no dtype).
SpeedClass make_speed_class(std::string_view backend, std::string_view device, std::string_view gpu_type,
                            std::string_view dtype);

// One finished job of an earlier sweep.
struct CostObservation {
  SpeedClass speed;
  std::string task;         // task name: tasks with history get their own correction
  double parameters = 0;    // model parameters; 0 when unknown (api, demo)
  JobWork work;
  double seconds = 0;       // evaluation seconds of the run (model loading excluded)
  double load_seconds = 0;  // model loading of the element that ran it (0 when unknown)
};

// A job's predicted evaluation seconds and where the throughput came from.
struct CostPrediction {
  double seconds = 0;
  bool from_history = false;
  std::string source;  // e.g. "history: 12 results of runtime on a100 in bfloat16" or "default throughput of vllm on gpu"
};

class CostModel {
 public:
  explicit CostModel(std::vector<CostObservation> history = {});

  CostPrediction predict(const SpeedClass& speed, const std::string& task, double parameters, const JobWork& work) const;

  // Expected model loading seconds for one element (history of the same class and size, else a default).
  double load_seconds(const SpeedClass& speed, double parameters) const;

  // Generated tokens per document the task produced in history (nullopt without history): replaces the
  // generation cap in plan-time work.
  std::optional<double> output_tokens_per_document(const std::string& task) const;

  // The factor on predicted seconds that covers the prediction error history shows (leave-one-out over the
  // observations: a high quantile of actual/predicted), never below kMinimumMargin; kDefaultMargin without
  // enough history. `margin_source()` says which.
  double margin() const;
  std::string margin_source() const;

  std::size_t observations() const;

 private:
  std::vector<CostObservation> history_;  // the usable observations (positive seconds and work)
  struct Fitted;                          // sums of the least-squares fits, task corrections, margin
  std::shared_ptr<const Fitted> fitted_;  // shared: copies of a model share its fit
};

inline constexpr double kMinimumMargin = 1.15;
inline constexpr double kDefaultMargin = 1.5;

// The observations the workers recorded in the element status files of the sweeps under <output_dir>/sweeps
// (jobs[].cost), newest sweep first, at most about `max_observations`; plus the lines of `history_file` (JSON
// Lines of cost_observation_json objects) when given. Unreadable files and bad lines are skipped.
std::vector<CostObservation> read_cost_history(const std::filesystem::path& output_dir,
                                               const std::optional<std::filesystem::path>& history_file,
                                               std::size_t max_observations = 2000);

// The observation a result makes (its provenance.work, wall seconds, device, dtype, backend, parameters, load
// seconds); nothing for results written before provenance.work.
std::optional<CostObservation> cost_observation_from_result(const ResultFile& result);
nlohmann::json cost_observation_json(const CostObservation& observation);

// Packing: jobs of one resource shape → array elements.
struct PackItem {
  std::size_t job = 0;     // caller's index
  std::string model;       // elements hold one model only (weights load once per element)
  double seconds = 0;      // predicted evaluation seconds (margin not applied)
};
struct PackedElement {
  std::vector<std::size_t> jobs;  // caller's indices, longest first
  double seconds = 0;             // sum of the jobs' predictions
};
// Groups by model, then fills elements longest job first up to `target_seconds` each (a job longer than the
// target gets an element of its own), never past `max_seconds` when that can be helped, and at most
// `max_jobs_per_element` jobs per element. Elements come out in the models' first-appearance order.
std::vector<PackedElement> pack_elements(const std::vector<PackItem>& items, double target_seconds, double max_seconds,
                                         std::size_t max_jobs_per_element);

}  // namespace mill
