#pragma once
// The files `mill collect` writes (aggregate.csv, report.md, heatmap.svg, lm-eval exports) and the rule that
// guards them: collect replaces only files it wrote itself, recognised by a mark each format carries (the exact
// CSV header, a first comment line in report.md and heatmap.svg, `exported_by` in an export). A file without it
// (another tool's aggregate.csv in the same directory) is never overwritten. Every destination is checked before
// anything is written, so a refusal leaves every file as it was.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

enum class CollectFileKind { aggregate_csv, report_md, heatmap_svg, lm_eval_json };

// The first line of every report.md and heatmap.svg collect writes.
inline constexpr const char* kReportMark = "<!-- written by mill collect; rerunning it replaces this file -->";
inline constexpr const char* kHeatmapMark = "<!-- written by mill collect; rerunning it replaces this file -->";
// The `exported_by` field of an lm-eval export starts with this.
inline constexpr const char* kExportedByPrefix = "mill ";

struct CollectOutput {
  std::filesystem::path path;
  std::string content;
  CollectFileKind kind;
  // Whether the file already says the same (then it is left untouched); unset: the bytes are equal. report.md
  // carries the time it was generated, so it is compared as if rendered at the old file's time.
  std::function<bool(std::string_view old_content)> same_as = nullptr;
  // What to do when the destination is another program's file ("write elsewhere with --out DIR").
  std::string remedy;
};

// Checks every destination first and throws mill::Error (usage) naming the first one collect did not write and
// its remedy; then writes each file atomically unless it already holds the same content. Returns the paths
// written.
std::vector<std::filesystem::path> write_collect_outputs(const std::vector<CollectOutput>& outputs);

}  // namespace mill
