#pragma once
// `collect --export lm_eval DIR`: results written in lm-evaluation-harness's results-JSON shape (what its
// `--output_path` writes), so tools that read lm-eval results read mill's. One file per model × n_shot × limit
// (lm-eval writes one per run, and a run has one n-shot setting per task). Every field and its type:
// docs/collect.md, "Export to lm-evaluation-harness's format".
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "mill/collect/collect.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

struct LmEvalExport {
  std::filesystem::path path;  // <directory>/<model as a path component>/results_<n>shot[-limit<L>].json
  nlohmann::json document;
};

// The documents for `rows` (task rows, and the micro rollups as lm-eval's groups), one per model × n_shot ×
// limit. Facts the rows lack (the split's size, device, dtype, start time) are read from the result files of
// `results` the task rows came from. `generated_at` (UNIX seconds) is `date` when no result records its start.
std::vector<LmEvalExport> build_lm_eval_exports(const std::vector<AggregateRow>& rows,
                                                const std::vector<CollectedResult>& results,
                                                const TaskRegistry& registry, const std::filesystem::path& directory,
                                                double generated_at);

// lm-eval's name for a mill metric: "<metric>,<filter>" where the task's answer filter names the part after the
// metric ("exact_match_strict-match" → "exact_match,strict-match"), else "<metric>,none".
std::pair<std::string, std::string> lm_eval_metric_and_filter(const std::string& metric, const TaskInfo* task);

}  // namespace mill
