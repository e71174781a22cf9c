#pragma once
// The human report collect writes beside aggregate.csv: report.md (benchmarks, tasks, generative health,
// comparison, gaps) and heatmap.svg (tasks × models, primary metric).
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mill/collect/collect.hpp"
#include "mill/collect/compare.hpp"

namespace mill {

struct ReportInput {
  std::filesystem::path output_dir;
  const std::vector<AggregateRow>* rows = nullptr;
  const ResultScan* scan = nullptr;
  const CheckReport* check = nullptr;        // absent with --no-check
  const Comparison* comparison = nullptr;    // absent without --compare
  std::string generated_at;                  // UTC timestamp for the header
};

// report.md's text. Its first line is collect_output.hpp's kReportMark.
std::string render_report_markdown(const ReportInput& input);

// The `generated_at` an existing report.md states (empty when it states none), so that a rerun that changes
// nothing else can leave the file as it is.
std::string report_generated_at(std::string_view report_markdown);

// A self-contained SVG: one row per task (benchmark rollups first, in bold), one column per model × n_shot,
// colour = primary metric value on a fixed 0–100% scale, the value written in each cell, grey where missing.
// Its first line is collect_output.hpp's kHeatmapMark.
std::string render_heatmap_svg(const std::vector<AggregateRow>& rows);

}  // namespace mill
