#include "mill/sweep/cost_model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <limits>
#include <map>
#include <spdlog/spdlog.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/eval/results.hpp"
#include "mill/sweep/element_files.hpp"
#include "mill/sweep/submit.hpp"

namespace fs = std::filesystem;

namespace mill {

std::string SpeedClass::to_string() const {
  auto text = fmt::format("{} on {}", backend, device.empty() ? "?" : device);
  if (!dtype.empty()) text += " in " + dtype;
  return text;
}

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr double kBytesPerToken = 4;         // English prompt text under the common BPE vocabularies
constexpr double kReferenceBillions = 8;     // the default throughputs are those of an 8B model
constexpr double kSameSizeTolerance = 0.05;  // parameter counts within 5% are one model size
constexpr std::size_t kMinimumSizeGroup = 2; // observations of one size before it gets a fit of its own
constexpr std::size_t kMinimumTaskGroup = 2; // observations of one task before it gets a correction
constexpr std::size_t kMinimumMarginObservations = 5;
constexpr double kMarginQuantile = 0.9;
constexpr int kFitRounds = 3;  // fit, correct tasks, refit twice: enough for the corrections to settle

// Speed of a GPU type relative to an H100 (dense bf16 tensor throughput and memory bandwidth, roughly); an unknown
// GPU is assumed slow so that its default limits err long.
double gpu_speed(const std::string& device) {
  static const std::map<std::string, double> speeds = {
      {"b200", 2.0}, {"h200", 1.2}, {"gh200", 1.2}, {"h100", 1.0}, {"a100", 0.5}, {"l40s", 0.4},
      {"l40", 0.35}, {"a6000", 0.25}, {"v100", 0.2}, {"a10", 0.15}, {"a10g", 0.15}, {"t4", 0.06}};
  const auto found = speeds.find(device);
  return found == speeds.end() ? 0.4 : found->second;
}

// seconds = job + P × (input × input_bytes + output × output_tokens), P in billions of parameters (1 when the size
// is unknown: api, demo). `job` is what a job costs whatever its size: reading its data, writing its result.
struct Coefficients {
  double job = 0, input = 0, output = 0;
};

struct Rates {
  double prefill = 0, decode = 0;  // tokens/s
};

// Documented in docs/schedule.md: an 8B model in bfloat16, prefill (prompt scoring) and batched decode.
Rates default_rates(const SpeedClass& speed) {
  if (speed.backend == "demo") return {2.5e6, 1e6};  // a byte-bigram table lookup
  if (speed.backend == "api") return {20000, 1000};  // a hosted endpoint at the default concurrency
  if (speed.device == "cpu") return {50, 3};         // a 32-core server node
  const double factor = gpu_speed(speed.device) * (speed.dtype == "float32" ? 0.5 : 1.0);
  if (speed.backend == "vllm") return {25000 * factor, 4000 * factor};  // continuous batching
  return {15000 * factor, 1000 * factor};
}

// Without a parameter count (`sized` false) the coefficients are those of the 8B model itself.
Coefficients default_coefficients(const SpeedClass& speed, bool sized) {
  const auto rates = default_rates(speed);
  const bool per_parameter = sized && speed.backend != "demo" && speed.backend != "api";
  const double billions = per_parameter ? kReferenceBillions : 1;
  const double job = speed.backend == "demo" ? 0 : 1;
  return {job, 1 / (rates.prefill * kBytesPerToken * billions), 1 / (rates.decode * billions)};
}

double dtype_bytes(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "int8" || dtype == "fp8" || dtype == "float8") return 1;
  return 2;
}

// Loading weights at about 1 GB/s, at least 10 s on a GPU (CUDA context, allocator warm-up); vllm adds its
// server's start-up (CUDA graph capture, profiling). Nothing to load for demo and api.
double default_load_seconds(const SpeedClass& speed, double parameters) {
  if (speed.backend == "demo" || speed.backend == "api") return 0;
  const double seconds = parameters * dtype_bytes(speed.dtype) / 1e9;
  if (speed.device == "cpu") return std::max(1.0, seconds);
  return std::max(10.0, seconds) + (speed.backend == "vllm" ? 60 : 0);
}

double scale_of(double parameters) { return parameters > 0 ? parameters / 1e9 : 1.0; }

bool same_size(double a, double b) { return a > 0 && b > 0 && std::abs(a / b - 1) < kSameSizeTolerance; }

double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(position);
  if (below + 1 >= values.size()) return values.back();
  return values[below] + (position - static_cast<double>(below)) * (values[below + 1] - values[below]);
}
double median(std::vector<double> values) { return quantile(std::move(values), 0.5); }

// Sufficient statistics of the relative-error least squares: each row is divided by its observed seconds, so with
// x = (1, P × input_bytes, P × output_tokens) / seconds the fit minimises Σ (coefficients · x − 1)². Sums make
// leaving one observation out (for the margin) a subtraction.
using Row = std::array<double, 3>;
struct Sums {
  std::array<Row, 3> gram{};  // Σ x xᵀ
  Row moment{};               // Σ x
  std::size_t n = 0;
  void add(const Row& x, int sign) {
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) gram[i][j] += sign * x[i] * x[j];
      moment[i] += sign * x[i];
    }
    n = sign > 0 ? n + 1 : n - 1;
  }
};

double determinant(const std::array<Row, 3>& m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
         m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

// The least squares restricted to the coefficients in `mask` (bit i: coefficient i), by Cramer's rule on the normal
// equations scaled to a unit diagonal (an unused coefficient's row is the identity, so it comes out 0); nothing
// when they are (nearly) singular or a coefficient is negative.
std::optional<Row> solve_subset(const Sums& sums, unsigned mask) {
  const auto used = [mask](std::size_t i) { return ((mask >> i) & 1u) != 0; };
  Row norm{}, rhs{};
  for (std::size_t i = 0; i < 3; ++i) {
    if (used(i) && !(sums.gram[i][i] > 0)) return std::nullopt;
    norm[i] = used(i) ? std::sqrt(sums.gram[i][i]) : 1;
    rhs[i] = used(i) ? sums.moment[i] / norm[i] : 0;
  }
  std::array<Row, 3> system{};
  for (std::size_t i = 0; i < 3; ++i) {
    for (std::size_t j = 0; j < 3; ++j) {
      system[i][j] = used(i) && used(j) ? sums.gram[i][j] / (norm[i] * norm[j]) : i == j ? 1 : 0;
    }
  }
  const double whole = determinant(system);
  if (!(whole > 1e-10)) return std::nullopt;  // collinear: a smaller subset explains the rows
  Row solution{};
  for (std::size_t j = 0; j < 3; ++j) {
    auto replaced = system;
    for (std::size_t i = 0; i < 3; ++i) replaced[i][j] = rhs[i];
    solution[j] = determinant(replaced) / whole / norm[j];
    if (!(solution[j] >= 0)) return std::nullopt;
  }
  return solution;
}

double residual(const Sums& sums, const Row& c) {
  double total = static_cast<double>(sums.n);
  for (std::size_t i = 0; i < 3; ++i) {
    total -= 2 * c[i] * sums.moment[i];
    for (std::size_t j = 0; j < 3; ++j) total += c[i] * c[j] * sums.gram[i][j];
  }
  return total;
}

// Non-negative least squares in three unknowns: the best of the subsets whose optimum is non-negative (the
// optimum is one of them); simpler subsets first, so that an exact tie keeps fewer coefficients. A per-token
// coefficient the rows never exercise (no generated tokens in this history) takes the parent's (broader history,
// else the default), scaled as the per-byte one the rows do fit compares with the parent's.
Coefficients solve(const Sums& sums, const Coefficients& parent) {
  std::optional<Row> best;
  double best_residual = std::numeric_limits<double>::infinity();
  for (unsigned mask : {2u, 4u, 6u, 1u, 3u, 5u, 7u}) {
    const auto solution = solve_subset(sums, mask);
    if (!solution) continue;
    const double error = residual(sums, *solution);
    if (error < best_residual - 1e-12 * static_cast<double>(sums.n)) {
      best_residual = error;
      best = solution;
    }
  }
  if (!best) return parent;
  Coefficients fitted{(*best)[0], (*best)[1], (*best)[2]};
  const bool sees_input = sums.gram[1][1] > 0, sees_output = sums.gram[2][2] > 0;
  if (!sees_output) {
    fitted.output = parent.output * (fitted.input > 0 && parent.input > 0 ? fitted.input / parent.input : 1);
  }
  if (!sees_input) {
    fitted.input = parent.input * (fitted.output > 0 && parent.output > 0 ? fitted.output / parent.output : 1);
  }
  return fitted;
}

// The observation's row, its seconds divided by its task's correction.
Row row_of(const CostObservation& o, double correction) {
  const double seconds = o.seconds / correction;
  return {1 / seconds, scale_of(o.parameters) * o.work.input_bytes / seconds,
          scale_of(o.parameters) * o.work.output_tokens / seconds};
}

struct Resolved {
  Coefficients coefficients;
  bool from_history = false;
  std::string source;
};

double base_seconds(const Coefficients& c, double parameters, const JobWork& work) {
  return c.job + scale_of(parameters) * (c.input * work.input_bytes + c.output * work.output_tokens);
}

bool usable(const CostObservation& o) {
  const auto finite_non_negative = [](double x) { return std::isfinite(x) && x >= 0; };
  return std::isfinite(o.seconds) && o.seconds > 0 && finite_non_negative(o.parameters) &&
         finite_non_negative(o.work.input_bytes) && finite_non_negative(o.work.output_tokens) &&
         finite_non_negative(o.work.documents) && o.work.input_bytes + o.work.output_tokens > 0;
}

}  // namespace

SpeedClass make_speed_class(std::string_view backend, std::string_view device, std::string_view gpu_type,
                            std::string_view dtype) {
  SpeedClass speed;
  const auto name = lower(backend);
  speed.backend = name == "mill-demo" ? "demo" : name == "local" ? "runtime" : name == "litellm" ? "api" : name;
  const auto device_name = lower(device);
  const auto gpu = gpu_type.empty() ? std::string("gpu") : lower(gpu_type);
  if (device_name == "cpu") {
    speed.device = "cpu";
  } else if (device_name.rfind("cuda", 0) == 0 || device_name == "gpu") {
    speed.device = gpu;
  } else if (device_name.empty()) {
    speed.device = speed.backend == "api" ? "remote" : speed.backend == "demo" ? "cpu" : gpu;
  } else {
    speed.device = device_name;
  }
  static const std::map<std::string, std::string> aliases = {
      {"bf16", "bfloat16"}, {"fp16", "float16"}, {"half", "float16"}, {"fp32", "float32"}, {"float", "float32"},
      {"auto", ""}};
  speed.dtype = lower(dtype);
  if (const auto alias = aliases.find(speed.dtype); alias != aliases.end()) speed.dtype = alias->second;
  return speed;
}

// Observations are grouped by speed class and whether their size is known (an unknown size cannot be scaled
// to a known one), then by model size inside a class.
struct CostModel::Fitted {
  struct SizeGroup {
    double parameters = 0;
    Sums sums;
  };
  struct ClassGroup {
    SpeedClass speed;
    bool sized = false;
    Sums sums;
    std::vector<SizeGroup> sizes;
  };
  struct Observed {
    std::size_t group = 0, size = 0;  // indices into classes and their sizes
    Row x{};
    double ratio = 1;  // actual / in-sample prediction before the task correction
  };
  std::vector<ClassGroup> classes;
  std::vector<Observed> rows;  // one per observation of history_
  std::map<std::string, std::vector<std::size_t>> task_rows;
  double margin = kDefaultMargin;
  std::string margin_source;

  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  std::size_t class_index(const SpeedClass& speed, bool sized) const {
    for (std::size_t i = 0; i < classes.size(); ++i) {
      if (classes[i].speed == speed && classes[i].sized == sized) return i;
    }
    return kNone;
  }

  Sums without(Sums sums, std::size_t excluded, std::size_t group, std::size_t size) const {
    if (excluded != kNone && rows[excluded].group == group && (size == kNone || rows[excluded].size == size)) {
      sums.add(rows[excluded].x, -1);
    }
    return sums;
  }

  // The most specific history that covers this class and size, leaving out observation `excluded`.
  Resolved resolve(const SpeedClass& speed, double parameters, std::size_t excluded) const {
    Resolved out{default_coefficients(speed, parameters > 0), false,
                 fmt::format("default throughput of {}", speed.to_string())};
    const auto group = class_index(speed, parameters > 0);
    if (group == kNone) return out;
    const auto& cls = classes[group];
    const auto class_sums = without(cls.sums, excluded, group, kNone);
    if (class_sums.n == 0) return out;
    out.coefficients = solve(class_sums, out.coefficients);
    out.from_history = true;
    out.source = fmt::format("history: {} result(s) of {}{}", class_sums.n, speed.to_string(),
                             cls.sized ? ", scaled by parameters" : "");
    for (std::size_t size = 0; size < cls.sizes.size(); ++size) {
      if (!same_size(cls.sizes[size].parameters, parameters)) continue;
      const auto size_sums = without(cls.sizes[size].sums, excluded, group, size);
      if (size_sums.n >= kMinimumSizeGroup) {
        out.coefficients = solve(size_sums, out.coefficients);
        out.source = fmt::format("history: {} result(s) of {} at this model size", size_sums.n, speed.to_string());
      }
      break;
    }
    return out;
  }

  // Median actual/predicted of the task's other observations; 1 with fewer than kMinimumTaskGroup.
  double task_correction(const std::string& task, std::size_t excluded, std::size_t& count) const {
    count = 0;
    const auto found = task_rows.find(task);
    if (found == task_rows.end()) return 1;
    std::vector<double> ratios;
    for (const auto row : found->second) {
      if (row != excluded) ratios.push_back(rows[row].ratio);
    }
    if (ratios.size() < kMinimumTaskGroup) return 1;
    count = ratios.size();
    return median(std::move(ratios));
  }
};

CostModel::CostModel(std::vector<CostObservation> history) {
  for (auto& observation : history) {
    if (usable(observation)) history_.push_back(std::move(observation));
  }
  auto fitted = std::make_shared<Fitted>();
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const auto& o = history_[i];
    const bool sized = o.parameters > 0;
    auto group = fitted->class_index(o.speed, sized);
    if (group == Fitted::kNone) {
      group = fitted->classes.size();
      fitted->classes.push_back({o.speed, sized, {}, {}});
    }
    auto& sizes = fitted->classes[group].sizes;
    auto size = static_cast<std::size_t>(std::find_if(sizes.begin(), sizes.end(), [&](const auto& s) {
                                           return same_size(s.parameters, o.parameters);
                                         }) - sizes.begin());
    if (size == sizes.size()) sizes.push_back({o.parameters, {}});
    fitted->rows.push_back({group, size, {}, 1});
    fitted->task_rows[o.task].push_back(i);
  }
  // The fit and the task corrections alternate: each round fits seconds divided by the corrections of the round
  // before, so that one slow task (chains of thought) does not bend the throughput every other task is given.
  std::vector<double> corrections(history_.size(), 1.0);
  for (int round = 0; round < kFitRounds; ++round) {
    for (auto& cls : fitted->classes) {
      cls.sums = {};
      for (auto& size : cls.sizes) size.sums = {};
    }
    for (std::size_t i = 0; i < history_.size(); ++i) {
      auto& row = fitted->rows[i];
      row.x = row_of(history_[i], corrections[i]);
      fitted->classes[row.group].sums.add(row.x, 1);
      fitted->classes[row.group].sizes[row.size].sums.add(row.x, 1);
    }
    for (std::size_t i = 0; i < history_.size(); ++i) {
      const auto& o = history_[i];
      const auto resolved = fitted->resolve(o.speed, o.parameters, Fitted::kNone);
      const double predicted = base_seconds(resolved.coefficients, o.parameters, o.work);
      fitted->rows[i].ratio = predicted > 0 ? o.seconds / predicted : 1;
    }
    for (std::size_t i = 0; i < history_.size(); ++i) {
      std::size_t count = 0;
      corrections[i] = fitted->task_correction(history_[i].task, Fitted::kNone, count);
    }
    // Relative to the typical observation's: the throughput stays that of ordinary tasks (and of tasks without
    // history), and only tasks that differ from them carry a correction.
    const double typical = history_.empty() ? 1 : median(corrections);
    for (auto& correction : corrections) correction /= typical;
  }
  // Leave-one-out: each observation predicted from the rest, as a future job is predicted from all of them.
  std::vector<double> ratios;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const auto& o = history_[i];
    const auto resolved = fitted->resolve(o.speed, o.parameters, i);
    if (!resolved.from_history) continue;
    std::size_t task_count = 0;
    const double predicted = base_seconds(resolved.coefficients, o.parameters, o.work) *
                             fitted->task_correction(o.task, i, task_count);
    if (predicted > 0) ratios.push_back(o.seconds / predicted);
  }
  if (ratios.size() < kMinimumMarginObservations) {
    fitted->margin_source = fmt::format("default margin ×{}: {} result(s) predictable from other history, fewer "
                                        "than {}", kDefaultMargin, ratios.size(), kMinimumMarginObservations);
  } else {
    const double observed = quantile(ratios, kMarginQuantile);
    fitted->margin = std::max(kMinimumMargin, observed);
    const auto raised = observed < kMinimumMargin ? fmt::format(" (raised to the minimum ×{})", kMinimumMargin) : "";
    fitted->margin_source = fmt::format("history: ×{:.2f}, the 90th percentile of actual/predicted over {} result(s), "
                                        "each predicted from the others{}", observed, ratios.size(), raised);
  }
  fitted_ = std::move(fitted);
}

CostPrediction CostModel::predict(const SpeedClass& speed, const std::string& task, double parameters,
                                  const JobWork& work) const {
  const auto resolved = fitted_->resolve(speed, parameters, Fitted::kNone);
  std::size_t task_count = 0;
  const double correction = fitted_->task_correction(task, Fitted::kNone, task_count);
  CostPrediction prediction{base_seconds(resolved.coefficients, parameters, work) * correction,
                            resolved.from_history, resolved.source};
  if (task_count > 0) {
    prediction.source += fmt::format("; ×{:.2f} for {} ({} result(s))", correction, task, task_count);
  }
  return prediction;
}

double CostModel::load_seconds(const SpeedClass& speed, double parameters) const {
  std::vector<double> same, relative;  // same size: seconds; other sizes: seconds relative to the default
  for (const auto& o : history_) {
    if (!(o.speed == speed) || !(o.load_seconds > 0)) continue;
    if (same_size(o.parameters, parameters) || (o.parameters == 0 && parameters == 0)) same.push_back(o.load_seconds);
    const double expected = default_load_seconds(o.speed, o.parameters);
    if (expected > 0) relative.push_back(o.load_seconds / expected);
  }
  if (!same.empty()) return median(std::move(same));
  const double fallback = default_load_seconds(speed, parameters);
  return relative.empty() ? fallback : fallback * median(std::move(relative));
}

std::optional<double> CostModel::output_tokens_per_document(const std::string& task) const {
  double documents = 0, tokens = 0;
  for (const auto& o : history_) {
    if (o.task != task || !(o.work.documents > 0)) continue;
    documents += o.work.documents;
    tokens += o.work.output_tokens;
  }
  if (documents == 0) return std::nullopt;
  return tokens / documents;
}

double CostModel::margin() const { return fitted_->margin; }
std::string CostModel::margin_source() const { return fitted_->margin_source; }
std::size_t CostModel::observations() const { return history_.size(); }

namespace {

double number_of(const nlohmann::json& object, std::string_view name) {
  return finite_number_field(object, name).value_or(0.0);
}

std::optional<JobWork> work_of(const nlohmann::json& work) {
  const auto documents = finite_number_field(work, "documents");
  const auto input_bytes = finite_number_field(work, "input_bytes");
  const auto output_tokens = finite_number_field(work, "output_tokens");
  if (!documents || !input_bytes || !output_tokens) return std::nullopt;
  return JobWork{*documents, *input_bytes, *output_tokens};
}

}  // namespace

std::optional<CostObservation> cost_observation_from_result(const ResultFile& result) {
  const auto& provenance = result.provenance;
  const auto work = work_of(member(provenance, "work"));
  if (!work) return std::nullopt;
  const auto& backend = member(provenance, "backend");
  CostObservation o;
  o.task = result.task;
  o.speed = make_speed_class(string_field(backend, "backend"), string_field(provenance, "device"),
                             string_field(provenance, "gpu_type"), string_field(provenance, "dtype"));
  o.work = *work;
  o.seconds = number_of(provenance, "wall_seconds");
  o.parameters = number_of(backend, "parameters");
  o.load_seconds = number_of(backend, "load_seconds");
  // vllm reports its server's start-up instead: loading the weights is most of it.
  if (o.load_seconds == 0) o.load_seconds = number_of(backend, "server_startup_seconds");
  if (o.task.empty() || o.speed.backend.empty() || !usable(o)) return std::nullopt;
  return o;
}

namespace {

std::optional<CostObservation> observation_from_json(const nlohmann::json& line, std::string& problem) {
  CostObservation o;
  o.task = string_field(line, "task");
  o.speed = {string_field(line, "backend"), string_field(line, "device"), string_field(line, "dtype")};
  const auto work = work_of(member(line, "work"));
  o.parameters = number_of(line, "parameters");
  o.seconds = number_of(line, "seconds");
  o.load_seconds = number_of(line, "load_seconds");
  if (o.task.empty() || o.speed.backend.empty() || o.speed.device.empty()) {
    problem = "needs `task`, `backend` and `device`";
  } else if (!work) {
    problem = "needs `work` with numeric `documents`, `input_bytes` and `output_tokens`";
  } else if (o.work = *work; !usable(o)) {
    problem = "needs positive `seconds` and work";
  } else {
    return o;
  }
  return std::nullopt;
}

}  // namespace

nlohmann::json cost_observation_json(const CostObservation& o) {
  const nlohmann::json work = {
      {"documents", o.work.documents}, {"input_bytes", o.work.input_bytes}, {"output_tokens", o.work.output_tokens}};
  return {{"task", o.task},         {"backend", o.speed.backend}, {"device", o.speed.device},
          {"dtype", o.speed.dtype}, {"parameters", o.parameters},  {"work", work},
          {"seconds", o.seconds},   {"load_seconds", o.load_seconds}};
}

std::vector<CostObservation> read_cost_history(const fs::path& output_dir, const std::optional<fs::path>& history_file,
                                               std::size_t max_observations) {
  // The workers put each done job's observation into their element's status file: reading the sweeps newest first
  // (their ids sort by time) costs one small file per element, however many results the tree holds.
  const auto sweeps = list_sweeps(output_dir);
  std::vector<CostObservation> observations;
  for (auto sweep = sweeps.rbegin(); sweep != sweeps.rend() && observations.size() < max_observations; ++sweep) {
    for (const auto& status : read_element_statuses(sweep->dir)) {
      for (const auto& job : status.jobs) {
        if (job.cost.is_null()) continue;
        std::string problem;
        if (auto observation = observation_from_json(job.cost, problem)) observations.push_back(std::move(*observation));
      }
    }
  }

  if (history_file) {
    std::ifstream in(*history_file);
    if (!in) {
      // A shared history file that no sweep has written yet is normal; one that exists but cannot be read is not.
      if (std::error_code error; fs::exists(*history_file, error)) {
        spdlog::warn("cannot read the cost history file {}", history_file->string());
      }
      return observations;
    }
    std::string line;
    for (std::size_t number = 1; std::getline(in, line); ++number) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      std::string problem = "not valid JSON";
      auto observation = parsed.is_discarded() ? std::nullopt : observation_from_json(parsed, problem);
      if (observation) {
        observations.push_back(std::move(*observation));
      } else {
        spdlog::warn("{}:{}: not a cost observation ({}); line skipped", history_file->string(), number, problem);
      }
    }
  }
  return observations;
}

std::vector<PackedElement> pack_elements(const std::vector<PackItem>& items, double target_seconds, double max_seconds,
                                         std::size_t max_jobs_per_element) {
  double capacity = std::numeric_limits<double>::infinity();
  if (target_seconds > 0) capacity = target_seconds;
  if (max_seconds > 0) capacity = std::min(capacity, max_seconds);
  const std::size_t job_limit = max_jobs_per_element > 0 ? max_jobs_per_element : items.size() + 1;

  std::vector<std::string> models;  // first-appearance order
  std::map<std::string, std::vector<const PackItem*>> by_model;
  for (const auto& item : items) {
    auto& group = by_model[item.model];
    if (group.empty()) models.push_back(item.model);
    group.push_back(&item);
  }
  std::vector<PackedElement> elements;
  for (const auto& model : models) {
    auto& group = by_model[model];
    std::sort(group.begin(), group.end(), [](const PackItem* a, const PackItem* b) {
      return a->seconds != b->seconds ? a->seconds > b->seconds : a->job < b->job;
    });
    double total = 0;
    for (const auto* item : group) total += std::max(0.0, item->seconds);
    // As few elements as the capacity and the job limit allow, then balanced: each job, longest first, goes to
    // the least loaded element. One array has one --time for all its elements, so even elements waste least.
    std::size_t count = std::max<std::size_t>(
        {1, std::isfinite(capacity) ? static_cast<std::size_t>(std::ceil(total / capacity * (1 - 1e-12))) : 1,
         (group.size() + job_limit - 1) / job_limit});
    std::vector<PackedElement> bins;
    for (;; ++count) {
      bins.assign(std::min(count, group.size()), PackedElement{});
      for (const auto* item : group) {
        PackedElement* lightest = nullptr;
        for (auto& bin : bins) {
          if (bin.jobs.size() < job_limit && (!lightest || bin.seconds < lightest->seconds)) lightest = &bin;
        }
        lightest->jobs.push_back(item->job);
        lightest->seconds += std::max(0.0, item->seconds);
      }
      // Over capacity is only acceptable for a job alone (it is longer than the capacity by itself).
      const bool fits = std::all_of(bins.begin(), bins.end(), [&](const PackedElement& bin) {
        return bin.jobs.size() == 1 || bin.seconds <= capacity * (1 + 1e-12);
      });
      if (fits || count >= group.size()) break;
    }
    for (auto& bin : bins) {
      if (!bin.jobs.empty()) elements.push_back(std::move(bin));
    }
  }
  return elements;
}

}  // namespace mill
