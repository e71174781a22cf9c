#include "mill/collect/compare.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <tuple>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/eval/job.hpp"
#include "mill/eval/journal.hpp"
#include "mill/eval/metrics.hpp"

namespace mill {

JournalScores read_journal_scores(const std::filesystem::path& journal, const std::string& metric,
                                  const std::string& expected_key) {
  JournalScores out;
  std::optional<std::string> content;
  try {
    content = read_file_if_exists(journal);
  } catch (const Error&) {
    return out;  // unreadable: reported like a missing journal
  }
  if (!content) return out;
  out.found = true;
  auto parsed = parse_journal(*content);
  out.bad_lines = static_cast<long long>(parsed.damaged);
  for (const auto& line : parsed.lines) {
    if (!expected_key.empty() && line.entry["key"] != expected_key) {
      ++out.other_key_lines;
      continue;
    }
    const auto& scores = line.entry["scores"];
    const auto it = scores.find(metric);
    if (it == scores.end()) {
      ++out.bad_lines;
      continue;
    }
    out.by_doc.emplace(line.entry["doc_id"].get<long long>(), it->get<double>());
  }
  return out;
}

McNemarTest mcnemar_test(long long a_only, long long b_only) {
  McNemarTest out{a_only, b_only, 1.0};
  const long long n = a_only + b_only;
  if (n == 0) return out;
  const long long k = std::min(a_only, b_only);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so large n neither overflows nor underflows early.
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  const double log_n_fact = std::lgamma(static_cast<double>(n) + 1);
  double tail = 0;
  for (long long i = 0; i <= k; ++i) {
    tail += std::exp(log_n_fact - std::lgamma(static_cast<double>(i) + 1) - std::lgamma(static_cast<double>(n - i) + 1) +
                     log_half_n);
  }
  out.p_value = std::min(1.0, 2 * tail);
  return out;
}

namespace {

bool all_binary(const std::vector<double>& values) {
  return std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0 || v == 1.0; });
}

// Fills interval and bootstrap p-value from the replicates of an estimate.
void summarise_replicates(std::vector<double> replicates, PairedDifference& out) {
  if (replicates.empty()) return;
  out.stderr_bootstrap = sample_stddev(replicates);
  std::sort(replicates.begin(), replicates.end());
  const auto at = [&](double q) {
    const auto index = static_cast<std::size_t>(std::floor(q * static_cast<double>(replicates.size() - 1) + 0.5));
    return replicates[std::min(index, replicates.size() - 1)];
  };
  out.ci_low = at(0.025);
  out.ci_high = at(0.975);
  const auto at_or_below = std::upper_bound(replicates.begin(), replicates.end(), 0.0) - replicates.begin();
  const auto at_or_above = replicates.end() - std::lower_bound(replicates.begin(), replicates.end(), 0.0);
  const double count = static_cast<double>(replicates.size());
  // The +1s keep the p-value honest when no replicate crosses zero: it is below 1/B, never exactly 0.
  const double tail = static_cast<double>(std::min(at_or_below, at_or_above));
  out.p_bootstrap = std::min(1.0, 2 * (tail + 1) / (count + 1));
}

void decide(PairedDifference& out) {
  out.p_value = out.mcnemar ? out.mcnemar->p_value : out.p_bootstrap;
  out.significant = out.p_value < kSignificanceLevel;
}

McNemarTest count_discordant(const std::vector<const PairedScores*>& tasks) {
  long long a_only = 0, b_only = 0;
  for (const auto* task : tasks) {
    for (std::size_t i = 0; i < task->a.size(); ++i) {
      if (task->a[i] > task->b[i]) ++a_only;
      if (task->b[i] > task->a[i]) ++b_only;
    }
  }
  return mcnemar_test(a_only, b_only);
}

std::vector<double> differences(const PairedScores& task) {
  std::vector<double> d(task.a.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = task.a[i] - task.b[i];
  return d;
}

using TaskSlot = std::tuple<std::string, int, int>;  // task, n_shot, limit (-1: none)

}  // namespace

PairedDifference compare_paired(const PairedScores& task, int replicates, std::uint64_t seed) {
  PairedDifference out;
  out.aggregation = "task";
  out.n_tasks = 1;
  out.n_pairs = static_cast<long long>(task.a.size());
  if (task.a.empty()) return out;
  out.mean_a = mean(task.a);
  out.mean_b = mean(task.b);
  out.difference = out.mean_a - out.mean_b;
  // Resampling the per-document differences is the paired bootstrap: both models see the same resampled documents.
  auto boot = stratified_bootstrap({differences(task)}, replicates, seed);
  summarise_replicates(std::move(boot.micro_replicates), out);
  if (all_binary(task.a) && all_binary(task.b)) out.mcnemar = count_discordant({&task});
  decide(out);
  return out;
}

std::vector<PairedDifference> compare_benchmark(const std::vector<PairedScores>& tasks, int replicates,
                                                std::uint64_t seed) {
  std::vector<const PairedScores*> used;
  std::vector<std::vector<double>> strata;
  for (const auto& task : tasks) {
    if (task.a.empty()) continue;
    used.push_back(&task);
    strata.push_back(differences(task));
  }
  PairedDifference micro, macro;
  micro.aggregation = "micro_sample_weighted";
  macro.aggregation = "macro_subject_mean";
  micro.n_tasks = macro.n_tasks = static_cast<int>(used.size());
  if (used.empty()) return {micro, macro};
  double sum_a = 0, sum_b = 0, macro_a = 0, macro_b = 0;
  long long pairs = 0;
  for (const auto* task : used) {
    for (double v : task->a) sum_a += v;
    for (double v : task->b) sum_b += v;
    macro_a += mean(task->a);
    macro_b += mean(task->b);
    pairs += static_cast<long long>(task->a.size());
  }
  const double k = static_cast<double>(used.size());
  micro.n_pairs = macro.n_pairs = pairs;
  micro.mean_a = sum_a / static_cast<double>(pairs);
  micro.mean_b = sum_b / static_cast<double>(pairs);
  micro.difference = micro.mean_a - micro.mean_b;
  macro.mean_a = macro_a / k;
  macro.mean_b = macro_b / k;
  macro.difference = macro.mean_a - macro.mean_b;
  auto boot = stratified_bootstrap(strata, replicates, seed);
  summarise_replicates(std::move(boot.micro_replicates), micro);
  summarise_replicates(std::move(boot.macro_replicates), macro);
  // McNemar pools documents, which is exactly what the micro average does; the macro average re-weights
  // subjects, so only the bootstrap speaks for it.
  const bool binary = std::all_of(used.begin(), used.end(),
                                  [](const PairedScores* t) { return all_binary(t->a) && all_binary(t->b); });
  if (binary) micro.mcnemar = count_discordant(used);
  decide(micro);
  decide(macro);
  return {micro, macro};
}

Comparison compare_models(const ResultScan& scan, const std::string& model_a, const std::string& model_b,
                          const CollectFilter& filter, int replicates) {
  Comparison out;
  out.model_a = model_a;
  out.model_b = model_b;
  std::map<TaskSlot, const CollectedResult*> a_results, b_results;
  CollectFilter any_model = filter;  // the two models are chosen here, whatever --models says
  any_model.model_identities.clear();
  for (const auto& result : scan.results) {
    if (!any_model.accepts(result)) continue;
    const TaskSlot slot{result.task, result.n_shot, result.limit ? *result.limit : -1};
    if (result.model == model_a) a_results[slot] = &result;
    if (result.model == model_b) b_results[slot] = &result;
  }
  using GroupKey = std::tuple<std::string, int, int, std::string>;  // benchmark, n_shot, limit, metric
  std::map<GroupKey, std::vector<PairedScores>> groups;
  std::vector<std::string> only_one;
  for (const auto& [slot, a] : a_results) {
    const auto it = b_results.find(slot);
    if (it == b_results.end()) {
      only_one.push_back(fmt::format("{} ({}-shot)", a->task, a->n_shot));
      continue;
    }
    const auto* b = it->second;
    const auto metric = primary_metric_of(*a, filter.metric);
    const auto a_scores = read_journal_scores(journal_beside(a->path), metric, a->key);
    const auto b_scores = read_journal_scores(journal_beside(b->path), metric, b->key);
    if (!a_scores.found || !b_scores.found) {
      out.warnings.push_back(fmt::format("{} ({}-shot): no per-sample journal for {}; not compared", a->task, a->n_shot,
                                         !a_scores.found ? journal_beside(a->path).string()
                                                         : journal_beside(b->path).string()));
      continue;
    }
    PairedScores paired;
    paired.task = a->task;
    long long unpaired = 0;
    for (const auto& [doc, score] : a_scores.by_doc) {
      const auto other = b_scores.by_doc.find(doc);
      if (other == b_scores.by_doc.end()) {
        ++unpaired;
        continue;
      }
      paired.a.push_back(score);
      paired.b.push_back(other->second);
    }
    unpaired += static_cast<long long>(b_scores.by_doc.size()) - static_cast<long long>(paired.b.size());
    if (unpaired > 0) {
      out.warnings.push_back(fmt::format("{} ({}-shot): {} document(s) scored by only one model are left out",
                                         a->task, a->n_shot, unpaired));
    }
    if (paired.a.empty()) {
      out.warnings.push_back(fmt::format("{} ({}-shot): the journals share no scored document for metric {}; "
                                         "not compared", a->task, a->n_shot, metric));
      continue;
    }
    ComparisonRow row{a->task, a->benchmark, a->n_shot, a->limit, metric, compare_paired(paired, replicates)};
    out.rows.push_back(row);
    if (!a->benchmark.empty()) {
      groups[{a->benchmark, a->n_shot, a->limit ? *a->limit : -1, metric}].push_back(std::move(paired));
    }
  }
  for (const auto& [slot, b] : b_results) {
    if (!a_results.count(slot)) only_one.push_back(fmt::format("{} ({}-shot)", b->task, b->n_shot));
  }
  if (!only_one.empty()) {
    out.warnings.push_back(fmt::format("{} task(s) have a result for only one of the models and are not compared: {}",
                                       only_one.size(), join(only_one, ", ")));
  }
  for (const auto& [key, tasks] : groups) {
    const auto& [benchmark, n_shot, limit, metric] = key;
    for (auto& difference : compare_benchmark(tasks, replicates)) {
      ComparisonRow row{benchmark, benchmark, n_shot, limit >= 0 ? std::optional<int>(limit) : std::nullopt, metric,
                        std::move(difference)};
      out.rows.push_back(std::move(row));
    }
  }
  const auto order = [](const ComparisonRow& row) {
    const bool rollup = row.difference.aggregation != "task";
    return std::make_tuple(row.n_shot, row.limit.value_or(-1), row.benchmark.empty() ? row.task : row.benchmark,
                           rollup, row.task, row.metric, row.difference.aggregation == "macro_subject_mean");
  };
  std::stable_sort(out.rows.begin(), out.rows.end(),
                   [&](const ComparisonRow& x, const ComparisonRow& y) { return order(x) < order(y); });
  return out;
}

std::string significance_text(const PairedDifference& difference) {
  return fmt::format("{} (p={:.3g}, {})", difference.significant ? "significant" : "not significant", difference.p_value,
                     difference.mcnemar ? "McNemar" : "paired bootstrap");
}

}  // namespace mill
