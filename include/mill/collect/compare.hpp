#pragma once
// Paired comparison of two models on the same documents, from the per-sample journals: a paired bootstrap (fixed
// seed) for every score kind and McNemar's exact test for 0/1 scores. Method and decision rule: docs/collect.md.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mill/collect/collect.hpp"
#include "mill/collect/rollup.hpp"

namespace mill {

// The scores one journal records for `metric`, by doc_id. Lines whose `key` differs from `expected_key` (left from
// a run with other key inputs) are ignored; a doc_id recorded twice keeps its first line (as the engine does).
// Lines the journal reader finds damaged, or without this metric, are counted in `bad_lines` and skipped.
struct JournalScores {
  std::map<long long, double> by_doc;
  long long bad_lines = 0;
  long long other_key_lines = 0;
  bool found = false;  // the journal file exists
};
JournalScores read_journal_scores(const std::filesystem::path& journal, const std::string& metric,
                                  const std::string& expected_key);

// One task scored by both models on the documents both journals hold, aligned by doc_id.
struct PairedScores {
  std::string task;
  std::vector<double> a;
  std::vector<double> b;
};

struct McNemarTest {
  long long a_only = 0;  // documents A gets right and B wrong
  long long b_only = 0;  // documents B gets right and A wrong
  double p_value = 1;    // exact two-sided binomial test of a_only vs b_only at 1/2
};
McNemarTest mcnemar_test(long long a_only, long long b_only);

struct PairedDifference {
  std::string aggregation;  // "task", "micro_sample_weighted" or "macro_subject_mean"
  int n_tasks = 0;
  long long n_pairs = 0;
  double mean_a = 0, mean_b = 0;
  double difference = 0;  // A − B
  double stderr_bootstrap = 0;
  double ci_low = 0, ci_high = 0;  // 95% percentile interval of the paired bootstrap
  double p_bootstrap = 1;          // two-sided, from the bootstrap distribution
  std::optional<McNemarTest> mcnemar;  // when every score is 0 or 1 (task and micro rows)
  double p_value = 1;                  // McNemar's when present, else the bootstrap's
  bool significant = false;            // p_value < alpha
};

inline constexpr double kSignificanceLevel = 0.05;
inline constexpr int kCompareReplicates = 2000;

// One task: the paired difference and its tests.
PairedDifference compare_paired(const PairedScores& task, int replicates = kCompareReplicates,
                                std::uint64_t seed = kRollupBootstrapSeed);
// A benchmark: the micro and macro differences over its tasks, resampling documents within each task.
std::vector<PairedDifference> compare_benchmark(const std::vector<PairedScores>& tasks,
                                                int replicates = kCompareReplicates, std::uint64_t seed = kRollupBootstrapSeed);

// --compare A B over a scanned results tree: for every task both models have (same n_shot and limit), pair the
// documents both journals hold; then roll the tasks of each benchmark up.
struct ComparisonRow {
  std::string task;  // the task, or the benchmark on rollup rows
  std::string benchmark;
  int n_shot = 0;
  std::optional<int> limit;
  std::string metric;
  PairedDifference difference;
};
struct Comparison {
  std::string model_a, model_b;  // identities
  std::vector<ComparisonRow> rows;
  std::vector<std::string> warnings;  // tasks only one model has, tasks without journals, unpaired documents
};
Comparison compare_models(const ResultScan& scan, const std::string& model_a, const std::string& model_b,
                          const CollectFilter& filter, int replicates = kCompareReplicates);

// "significant" / "not significant" with the p-value, for tables.
std::string significance_text(const PairedDifference& difference);

}  // namespace mill
