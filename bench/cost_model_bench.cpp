// Walltime from measured cost (issue 14) against the flat per-eval policies, on a simulated sweep: 10 models from
// 0.5B to 70B (vllm on H100; the 70B on 4 GPUs) × MMLU (57 subjects, 0- and 5-shot) + MMLU-Pro (14 categories,
// 5-shot chain of thought) + GSM8K (5-shot, generative). A hidden "truth" gives every job its seconds: per-job
// overhead, prefill and decode throughputs, small models' lower efficiency per parameter, tensor-parallel speed-up,
// per-model verbosity of generations and lognormal noise (σ 0.15). An earlier sweep (every model's 0-shot MMLU,
// and 5 models' whole matrix) is the history; the other 5 models' 5-shot MMLU, MMLU-Pro and GSM8K are predicted,
// packed and given limits, then "run" with fresh noise. Seeded: the output is the same on every run.
// Usage: cost_model_bench [seed]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fmt/format.h>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mill/sweep/cost_model.hpp"
#include "mill/sweep/walltime.hpp"  // kStartupMinutes

using namespace mill;

namespace {

struct Model {
  double billions;
  int gpus;
  double verbosity;  // how much longer than the average model it generates (drawn per model)
};

struct Task {
  std::string name;
  int n_shot;
  double documents;
  double bytes_per_document;
  double tokens_per_document;  // truth for an average model; 0 for log-likelihood tasks
};

class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return (static_cast<double>(engine_() >> 11) + 0.5) / 9007199254740992.0; }
  double normal() { return std::sqrt(-2 * std::log(uniform())) * std::cos(2 * std::numbers::pi * uniform()); }
  double lognormal(double sigma) { return std::exp(sigma * normal() - sigma * sigma / 2); }  // mean 1

 private:
  std::mt19937_64 engine_;
};

std::vector<Task> sweep_tasks() {
  // MMLU test sizes and typical question bytes (the long-passage history subjects, law and medicine stand out).
  const std::vector<std::pair<const char*, double>> subjects = {
      {"abstract_algebra", 100}, {"anatomy", 135}, {"astronomy", 152}, {"business_ethics", 100},
      {"clinical_knowledge", 265}, {"college_biology", 144}, {"college_chemistry", 100},
      {"college_computer_science", 100}, {"college_mathematics", 100}, {"college_medicine", 173},
      {"college_physics", 102}, {"computer_security", 100}, {"conceptual_physics", 235}, {"econometrics", 114},
      {"electrical_engineering", 145}, {"elementary_mathematics", 378}, {"formal_logic", 126}, {"global_facts", 100},
      {"high_school_biology", 310}, {"high_school_chemistry", 203}, {"high_school_computer_science", 100},
      {"high_school_european_history", 165}, {"high_school_geography", 198},
      {"high_school_government_and_politics", 193}, {"high_school_macroeconomics", 390},
      {"high_school_mathematics", 270}, {"high_school_microeconomics", 238}, {"high_school_physics", 151},
      {"high_school_psychology", 545}, {"high_school_statistics", 216}, {"high_school_us_history", 204},
      {"high_school_world_history", 237}, {"human_aging", 223}, {"human_sexuality", 131}, {"international_law", 121},
      {"jurisprudence", 108}, {"logical_fallacies", 163}, {"machine_learning", 112}, {"management", 103},
      {"marketing", 234}, {"medical_genetics", 100}, {"miscellaneous", 783}, {"moral_disputes", 346},
      {"moral_scenarios", 895}, {"nutrition", 306}, {"philosophy", 311}, {"prehistory", 324},
      {"professional_accounting", 282}, {"professional_law", 1534}, {"professional_medicine", 272},
      {"professional_psychology", 612}, {"public_relations", 110}, {"security_studies", 245}, {"sociology", 201},
      {"us_foreign_policy", 100}, {"virology", 166}, {"world_religions", 171}};
  const std::map<std::string, double> long_questions = {
      {"high_school_european_history", 2600}, {"high_school_us_history", 2000}, {"high_school_world_history", 2200},
      {"professional_law", 1400}, {"professional_medicine", 1100}, {"security_studies", 900},
      {"moral_scenarios", 520}, {"professional_accounting", 600}};
  std::vector<Task> tasks;
  for (int n_shot : {0, 5}) {
    for (const auto& [subject, documents] : subjects) {
      const auto found = long_questions.find(subject);
      const double question = found == long_questions.end() ? 450 : found->second;
      // Header, the shots (dev questions with their answers), the question, and four one-letter continuations.
      tasks.push_back({std::string("mmlu_") + subject, n_shot, documents, 90 + (n_shot + 1) * question + 8, 0});
    }
  }
  const std::vector<std::tuple<const char*, double, double>> categories = {
      {"biology", 717, 260}, {"business", 789, 380}, {"chemistry", 1132, 520}, {"computer_science", 410, 380},
      {"economics", 844, 300}, {"engineering", 969, 480}, {"health", 818, 230}, {"history", 381, 250},
      {"law", 1101, 280}, {"math", 1351, 550}, {"other", 924, 230}, {"philosophy", 499, 260},
      {"physics", 1299, 500}, {"psychology", 798, 220}};
  for (const auto& [category, documents, tokens] : categories) {
    // Five worked examples (question, options, chain of thought) before each question.
    tasks.push_back({std::string("mmlu_pro_") + category, 5, documents, 5 * (700 + 4 * tokens) + 700, tokens});
  }
  tasks.push_back({"gsm8k", 5, 1319, 5 * 700 + 250, 130});
  return tasks;
}

// The hidden truth: vllm on one H100 prefills 20,000 and decodes 3,000 tokens/s of an 8B model; smaller models
// get less out of a GPU per parameter; tensor parallelism over n GPUs is 0.8 n times as fast; 2 s per job of
// data preparation; model loading 45 s plus the weights at 1.5 GB/s.
constexpr double kPrefillPerBillionByte = 1 / (20000.0 * 4 * 8);
constexpr double kDecodePerBillionToken = 1 / (3000.0 * 8);
constexpr double kJobOverheadSeconds = 2;
constexpr double kNoiseSigma = 0.15;

double efficiency_penalty(double billions) { return 1 + 0.6 / std::sqrt(billions); }
double parallel_speedup(int gpus) { return gpus == 1 ? 1 : 0.8 * gpus; }

struct Run {
  JobWork work;           // what was sent (output tokens: what this model generated)
  double seconds = 0;
  double expected = 0;    // the truth without noise: what a perfect predictor would say
};

Run run_job(const Model& model, const Task& task, Random& random) {
  Run run;
  run.work = {task.documents, task.documents * task.bytes_per_document,
              task.documents * task.tokens_per_document * model.verbosity};
  const double per_billion =
      kPrefillPerBillionByte * run.work.input_bytes + kDecodePerBillionToken * run.work.output_tokens;
  const double compute =
      model.billions * efficiency_penalty(model.billions) * per_billion / parallel_speedup(model.gpus);
  run.expected = kJobOverheadSeconds + compute;
  run.seconds = run.expected * random.lognormal(kNoiseSigma);
  return run;
}

double true_load_seconds(const Model& model, Random& random) {
  return (45 + model.billions * 2 / 1.5) * random.lognormal(0.1);
}

struct Job {
  std::size_t model;
  const Task* task;
  double predicted = 0;
  double actual = 0;
};

struct PolicyResult {
  std::string name;
  std::size_t elements = 0;
  double requested_gpu_hours = 0, used_gpu_hours = 0;
  std::size_t killed = 0;
  std::size_t elements_within = 0;  // element predictions within ±25% (cost model only)
};

bool within(double predicted, double actual, double tolerance) {
  return std::abs(predicted - actual) <= tolerance * actual;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t seed = argc > 1 ? std::stoull(argv[1]) : 14;
  Random random(seed);
  const SpeedClass speed{"vllm", "h100", "bfloat16"};
  const std::vector<double> sizes = {0.5, 1.5, 3, 7, 8, 9, 14, 27, 32, 70};
  std::vector<Model> models;
  for (double billions : sizes) models.push_back({billions, billions > 40 ? 4 : 1, random.lognormal(0.15)});
  const auto tasks = sweep_tasks();
  auto in_history = [](std::size_t m) { return m == 0 || m == 3 || m == 4 || m == 7 || m == 9; };  // 0.5 7 8 27 70B

  // The earlier sweep: every model's 0-shot MMLU, and the whole matrix of five models.
  std::vector<CostObservation> history;
  std::vector<Job> jobs;
  for (std::size_t m = 0; m < models.size(); ++m) {
    const double load = true_load_seconds(models[m], random);
    for (const auto& task : tasks) {
      const bool earlier = in_history(m) || (task.n_shot == 0 && task.name.rfind("mmlu_", 0) == 0);
      if (!earlier) {
        jobs.push_back({m, &task});
        continue;
      }
      const auto run = run_job(models[m], task, random);
      history.push_back({speed, task.name, models[m].billions * 1e9, run.work, run.seconds, load});
    }
  }
  const CostModel cost(history);

  // Plan time: input from the data, generated tokens from history (the task's mean per document).
  std::vector<double> errors;
  std::size_t jobs_within = 0, oracle_within = 0;
  for (auto& job : jobs) {
    const auto& model = models[job.model];
    const double expected_tokens = cost.output_tokens_per_document(job.task->name).value_or(2048);
    const JobWork planned{job.task->documents, job.task->documents * job.task->bytes_per_document,
                          job.task->documents * expected_tokens};
    job.predicted = cost.predict(speed, job.task->name, model.billions * 1e9, planned).seconds;
    const auto run = run_job(model, *job.task, random);
    job.actual = run.seconds;
    oracle_within += within(run.expected, run.seconds, 0.25);
    errors.push_back(std::abs(job.predicted / job.actual - 1));
    jobs_within += within(job.predicted, job.actual, 0.25);
  }
  std::sort(errors.begin(), errors.end());
  std::vector<double> loads(models.size());
  for (std::size_t m = 0; m < models.size(); ++m) loads[m] = true_load_seconds(models[m], random);

  constexpr double kMaxSeconds = 18 * 3600;
  constexpr double kTargetSeconds = 2 * 3600;
  constexpr double kSignalMinutes = 5;  // a profile's default signal_minutes
  std::vector<PolicyResult> results;
  auto account = [&](PolicyResult& result, const Model& model, double limit, double actual) {
    ++result.elements;
    result.requested_gpu_hours += limit * model.gpus / 3600;
    result.used_gpu_hours += std::min(limit, actual) * model.gpus / 3600;
    result.killed += actual > limit;
  };

  {  // Cost model: pack by prediction, limit = (load + predicted) × margin + start-up, clamped to max_time.
    PolicyResult result{"cost model (target 2 h)"};
    std::vector<PackItem> items;
    for (std::size_t j = 0; j < jobs.size(); ++j) {
      items.push_back({j, fmt::format("{}B", models[jobs[j].model].billions), jobs[j].predicted});
    }
    for (const auto& element : pack_elements(items, kTargetSeconds, kMaxSeconds, 64)) {
      const auto& model = models[jobs[element.jobs.front()].model];
      const double predicted = cost.load_seconds(speed, model.billions * 1e9) + element.seconds;
      double actual = loads[jobs[element.jobs.front()].model];
      for (const auto job : element.jobs) actual += jobs[job].actual;
      // As mill schedule computes it: start-up and the stop signal's minutes on top (docs/schedule.md).
      const double limit =
          std::min(kMaxSeconds, std::ceil(predicted * cost.margin() / 60 + kStartupMinutes + kSignalMinutes) * 60);
      account(result, model, limit, actual);
      result.elements_within += within(predicted, actual, 0.25);
    }
    results.push_back(result);
  }
  for (double minutes_per_eval : {10.0, 60.0}) {  // flat: the model's jobs in plan order, 8 per element
    PolicyResult result{fmt::format("flat {} min/eval, max 18 h", minutes_per_eval)};
    // The flat policy mill had before issue 14: ceil(evals × minutes × 1.25) + 5 min, fewer evals per element when
    // that passes max_time, then clamped to it.
    const int max_minutes = static_cast<int>(kMaxSeconds / 60);
    auto flat_minutes = [&](int evals) { return static_cast<int>(std::ceil(evals * minutes_per_eval * 1.25)) + 5; };
    int evals = 8;
    while (evals > 1 && flat_minutes(evals) > max_minutes) --evals;
    const int limit_minutes = std::min(flat_minutes(evals), max_minutes);
    const auto per_element = static_cast<std::size_t>(evals);
    for (std::size_t start = 0; start < jobs.size();) {
      std::size_t end = start;
      double actual = loads[jobs[start].model];
      while (end < jobs.size() && end - start < per_element && jobs[end].model == jobs[start].model) {
        actual += jobs[end++].actual;
      }
      account(result, models[jobs[start].model], limit_minutes * 60.0, actual);
      start = end;
    }
    results.push_back(result);
  }

  auto quantile = [&](double q) {
    return errors[static_cast<std::size_t>(q * static_cast<double>(errors.size() - 1))];
  };
  fmt::print("seed {}: {} history results, {} predicted jobs of 5 models; margin ×{:.2f} ({})\n\n", seed,
             history.size(), jobs.size(), cost.margin(), cost.margin_source());
  fmt::print("job predictions within ±25%: {:.1f}% (median error {:.1f}%, 90th percentile {:.1f}%); the noiseless "
             "truth itself: {:.1f}%\n\n",
             100.0 * static_cast<double>(jobs_within) / static_cast<double>(jobs.size()), 100 * quantile(0.5),
             100 * quantile(0.9), 100.0 * static_cast<double>(oracle_within) / static_cast<double>(jobs.size()));
  fmt::print("| policy | elements | element within ±25% | GPU-h requested | GPU-h used | used/requested | "
             "killed by limit |\n");
  fmt::print("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (const auto& r : results) {
    const auto within_text = r.name.rfind("cost", 0) == 0
                                 ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(r.elements_within) /
                                                              static_cast<double>(r.elements))
                                 : std::string("–");
    fmt::print("| {} | {} | {} | {:.1f} | {:.1f} | {:.2f} | {} |\n", r.name, r.elements, within_text,
               r.requested_gpu_hours, r.used_gpu_hours, r.used_gpu_hours / r.requested_gpu_hours, r.killed);
  }
  return 0;
}
