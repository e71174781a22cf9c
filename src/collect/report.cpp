#include "mill/collect/report.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <set>
#include <tuple>

#include "mill/collect/collect_output.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "mill/eval/metrics.hpp"

namespace mill {

namespace {

std::string format_value(const std::string& metric, double value) {
  if (!std::isfinite(value)) return "–";
  return is_fraction_metric(metric) ? fmt::format("{:.1f}", 100 * value) : fmt::format("{:.4g}", value);
}

std::string format_with_error(const std::string& metric, double value, const std::optional<double>& error) {
  auto text = format_value(metric, value);
  if (error && std::isfinite(*error)) text += " ± " + format_value(metric, *error);
  return text;
}

std::string shots_label(int n_shot, const std::optional<int>& limit) {
  auto text = fmt::format("{}-shot", n_shot);
  if (limit) text += fmt::format(", limit {}", *limit);
  return text;
}

// Markdown table cells must not contain pipes or newlines.
std::string md_cell(std::string_view text) {
  std::string out;
  for (char c : one_line(text)) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : one_line(text)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

using Column = std::tuple<std::string, int, int>;  // model, n_shot, limit (-1 none)

Column column_of(const AggregateRow& row) { return {row.model, row.n_shot, row.limit ? *row.limit : -1}; }

std::string column_label(const Column& column) {
  const auto& [model, n_shot, limit] = column;
  return model + " · " + shots_label(n_shot, limit >= 0 ? std::optional<int>(limit) : std::nullopt);
}

// A row of the heatmap / task table: a benchmark rollup or a task.
struct TableRow {
  std::string label;
  bool rollup = false;
  std::map<Column, const AggregateRow*> cells;
};

std::vector<TableRow> primary_table(const std::vector<AggregateRow>& rows, std::vector<Column>& columns) {
  std::set<Column> column_set;
  std::vector<TableRow> table;
  std::map<std::string, std::size_t> index;
  // Benchmarks first (each: micro, macro, then its tasks), stand-alone tasks after.
  std::vector<const AggregateRow*> ordered;
  for (const auto& row : rows) {
    if (row.primary) ordered.push_back(&row);
  }
  // Within a benchmark: its own rollups, then its category groups' (mmlu_humanities, ...), each micro before macro,
  // then its tasks.
  const auto rank = [](const AggregateRow* row) {
    const bool task = row->aggregation == kAggregationTask;
    const bool category = !task && row->task != row->benchmark;
    const int kind = row->aggregation == kAggregationMicro ? 0 : row->aggregation == kAggregationMacro ? 1 : 2;
    return std::make_tuple(row->benchmark.empty(), std::cref(row->benchmark), task, category, std::cref(row->task), kind);
  };
  std::stable_sort(ordered.begin(), ordered.end(), [&](auto* a, auto* b) { return rank(a) < rank(b); });
  for (const auto* row : ordered) {
    std::string label = row->task;
    if (row->aggregation == kAggregationMicro) label = row->task + " · micro (sample-weighted)";
    if (row->aggregation == kAggregationMacro) label = row->task + " · macro (subject mean)";
    auto [it, inserted] = index.try_emplace(label, table.size());
    if (inserted) table.push_back({label, row->aggregation != kAggregationTask, {}});
    // A benchmark whose subjects name different primary metrics gets several primary rollups; show the one
    // that covers the most subjects.
    auto& cell = table[it->second].cells[column_of(*row)];
    if (!cell || row->n_tasks > cell->n_tasks) cell = row;
    column_set.insert(column_of(*row));
  }
  columns.assign(column_set.begin(), column_set.end());
  return table;
}

// Tables and pictures stay readable: beyond this many model × n-shot columns only the first ones are drawn.
constexpr std::size_t kMaxReportColumns = 40;

std::string capped_columns_note(std::size_t shown, std::size_t total) {
  return fmt::format("showing the first {} of {} model × n-shot columns (all are in aggregate.csv; narrow with "
                     "--models or --n_shots)",
                     shown, total);
}

// Viridis at five stops, linearly interpolated: perceptually ordered and readable in greyscale.
std::string heat_colour(double t) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  const auto mix = [&](int c) { return static_cast<int>(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]))); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2));
}

}  // namespace

std::string render_heatmap_svg(const std::vector<AggregateRow>& rows) {
  std::vector<Column> columns;
  const auto table = primary_table(rows, columns);
  const std::size_t total_columns = columns.size();
  if (columns.size() > kMaxReportColumns) columns.resize(kMaxReportColumns);
  const int cell_w = 70, cell_h = 22, char_w = 7;
  std::size_t longest_label = 10, longest_column = 10;
  for (const auto& row : table) longest_label = std::max(longest_label, row.label.size() + 2);
  for (const auto& column : columns) longest_column = std::max(longest_column, column_label(column).size());
  longest_column = std::min<std::size_t>(longest_column, 60);
  const int left = static_cast<int>(longest_label) * char_w + 16;
  const int header = static_cast<int>(longest_column * char_w * 0.64) + 70;  // labels at -40°: sin(40°) ≈ 0.64
  const int width = std::max(left + static_cast<int>(columns.size()) * cell_w + 40 +
                                 static_cast<int>(longest_column * char_w * 0.77),
                             560);
  const int grid_bottom = header + static_cast<int>(table.size()) * cell_h;
  const int height = grid_bottom + 120;

  std::string svg = std::string(kHeatmapMark) + "\n";
  svg += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"bold\">mill results: primary metric per task (%)</text>\n"
      "<text x=\"12\" y=\"40\" fill=\"#555\">rows: benchmark rollups (bold) and tasks · columns: model · n-shot · "
      "grey: no result</text>\n",
      width, height, width, height);
  svg += "<defs><pattern id=\"missing\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
         "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#eeeeee\"/>"
         "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#cccccc\" stroke-width=\"2\"/></pattern></defs>\n";
  for (std::size_t c = 0; c < columns.size(); ++c) {
    auto label = column_label(columns[c]);
    if (label.size() > longest_column) label = label.substr(0, longest_column - 1) + "…";
    const int x = left + static_cast<int>(c) * cell_w + cell_w / 2;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" transform=\"rotate(-40 {} {})\">{}</text>\n", x, header - 8, x,
                       header - 8, xml_escape(label));
  }
  bool any_partial = false, any_stale = false;
  for (std::size_t r = 0; r < table.size(); ++r) {
    const auto& row = table[r];
    const int y = header + static_cast<int>(r) * cell_h;
    bool partial = false;
    for (const auto& [column, cell] : row.cells) partial = partial || cell->n_tasks < cell->n_tasks_expected;
    any_partial = any_partial || partial;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\"{}>{}{}</text>\n", left - 8, y + cell_h / 2 + 4,
                       row.rollup ? " font-weight=\"bold\"" : "", xml_escape(row.label), partial ? " *" : "");
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const int x = left + static_cast<int>(c) * cell_w;
      const auto it = row.cells.find(columns[c]);
      if (it == row.cells.end()) {
        svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#missing)\" stroke=\"white\"/>\n",
                           x, y, cell_w, cell_h);
        continue;
      }
      const auto& cell = *it->second;
      const bool fraction = is_fraction_metric(cell.metric);
      const double t = fraction ? cell.value : 0.5;
      const auto fill = fraction ? heat_colour(t) : std::string("#bbbbbb");
      const auto ink = fraction && t < 0.62 ? "white" : "black";
      std::string tooltip = fmt::format("{} · {} · {} = {}{}", cell.model, shots_label(cell.n_shot, cell.limit),
                                        cell.metric, format_with_error(cell.metric, cell.value, cell.standard_error),
                                        cell.stale > 0 ? " (stale)" : "");
      svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\">"
                         "<title>{}</title></rect>\n",
                         x, y, cell_w, cell_h, fill, xml_escape(tooltip));
      any_stale = any_stale || cell.stale > 0;
      svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\"{}>{}{}</text>\n", x + cell_w / 2,
                         y + cell_h / 2 + 4, ink, row.rollup ? " font-weight=\"bold\"" : "",
                         format_value(cell.metric, cell.value), cell.stale > 0 ? "†" : "");
    }
  }
  // Legend: the colour scale, fixed at 0–100% so pictures from different runs compare.
  const int legend_y = grid_bottom + 24;
  const int legend_w = 240;
  for (int i = 0; i < 48; ++i) {
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" fill=\"{}\"/>\n", left + i * legend_w / 48,
                       legend_y, legend_w / 48 + 1, heat_colour(i / 47.0));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0%</text>\n", left - 6, legend_y + 11);
  svg += fmt::format("<text x=\"{}\" y=\"{}\">100%</text>\n", left + legend_w + 6, legend_y + 11);
  std::vector<std::string> notes = {"micro = every question counts once; macro = every subject counts once"};
  if (any_partial) notes.push_back("* = partial rollup (not every subject has a result)");
  if (any_stale) notes.push_back("† = stale (computed with other key inputs; see report.md)");
  if (total_columns > columns.size()) notes.push_back(capped_columns_note(columns.size(), total_columns));
  for (std::size_t i = 0; i < notes.size(); ++i) {
    svg += fmt::format("<text x=\"12\" y=\"{}\" fill=\"#555\">{}</text>\n", legend_y + 36 + 16 * static_cast<int>(i),
                       xml_escape(notes[i]));
  }
  svg += "</svg>\n";
  return svg;
}

std::string report_generated_at(std::string_view report_markdown) {
  // The header line says "... from `DIR` at 2024-02-29T12:00:00Z. ..."; the last such time on it is the one.
  const auto start = report_markdown.find("\nCollected by mill ");
  if (start == std::string_view::npos) return {};
  const auto end = report_markdown.find('\n', start + 1);
  const auto line = report_markdown.substr(start + 1, end == std::string_view::npos ? end : end - start - 1);
  const auto is_time = [](std::string_view text) {
    static constexpr std::string_view shape = "dddd-dd-ddTdd:dd:ddZ";
    if (text.size() < shape.size()) return false;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const bool ok = shape[i] == 'd' ? text[i] >= '0' && text[i] <= '9' : text[i] == shape[i];
      if (!ok) return false;
    }
    return true;
  };
  std::string found;
  for (auto at = line.find("` at "); at != std::string_view::npos; at = line.find("` at ", at + 1)) {
    if (is_time(line.substr(at + 5))) found = std::string(line.substr(at + 5, 20));
  }
  return found;
}

std::string render_report_markdown(const ReportInput& input) {
  const auto& rows = *input.rows;
  std::string md = std::string(kReportMark) + "\n# mill results\n\n";
  md += fmt::format("Collected by mill {} from `{}` at {}. ", version(), md_cell(input.output_dir.string()),
                    input.generated_at);
  if (input.scan) {
    md += fmt::format("{} result file(s) read, {} skipped as damaged or partial.", input.scan->results.size(),
                      input.scan->skipped.size());
  }
  md += "\nAll values are percentages (except perplexity-like metrics); ± is one standard error. "
        "The full table, every metric, is `aggregate.csv`.\n\n![heatmap](heatmap.svg)\n\n";

  // Benchmarks.
  // (model, n_shot, limit, benchmark, rollup, metric) → micro, macro: a benchmark's category rows follow its own.
  std::map<std::tuple<std::string, int, int, std::string, std::string, std::string>,
           std::pair<const AggregateRow*, const AggregateRow*>>
      rollups;
  for (const auto& row : rows) {
    if (row.aggregation == kAggregationTask || !row.primary) continue;
    auto& slot = rollups[{row.model, row.n_shot, row.limit.value_or(-1), row.benchmark, row.task, row.metric}];
    (row.aggregation == kAggregationMicro ? slot.first : slot.second) = &row;
  }
  if (!rollups.empty()) {
    md += "## Benchmarks\n\n"
          "**micro** = sample-weighted (every question counts once); **macro** = subject mean (every subject counts "
          "once). Standard errors treat subjects as strata (docs/collect.md).\n\n"
          "| model | shots | benchmark | metric | micro (sample-weighted) | macro (subject mean) | subjects | samples |\n"
          "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n";
    for (const auto& [key, pair] : rollups) {
      const auto* any = pair.first ? pair.first : pair.second;
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {}{} | {} |\n", md_cell(any->model),
                        shots_label(any->n_shot, any->limit), md_cell(any->task), md_cell(any->metric),
                        pair.first ? format_with_error(any->metric, pair.first->value, pair.first->standard_error) : "–",
                        pair.second ? format_with_error(any->metric, pair.second->value, pair.second->standard_error) : "–",
                        any->n_tasks,
                        (any->n_tasks < any->n_tasks_expected ? fmt::format(" of {} (partial)", any->n_tasks_expected) : "") +
                            (any->stale > 0 ? fmt::format(", {} stale", any->stale) : ""),
                        any->n_samples);
    }
    md += "\n";
  }

  // Tasks: one column per model × shots.
  std::vector<Column> columns;
  const auto table = primary_table(rows, columns);
  const std::size_t total_columns = columns.size();
  if (columns.size() > kMaxReportColumns) columns.resize(kMaxReportColumns);
  bool any_task = std::any_of(table.begin(), table.end(), [](const TableRow& r) { return !r.rollup; });
  if (any_task) {
    md += "## Tasks (primary metric)\n\n";
    if (total_columns > columns.size()) md += capped_columns_note(columns.size(), total_columns) + ".\n\n";
    md += "| task | metric |";
    for (const auto& column : columns) md += " " + md_cell(column_label(column)) + " |";
    md += "\n| --- | --- |";
    for (std::size_t i = 0; i < columns.size(); ++i) md += " ---: |";
    md += "\n";
    for (const auto& row : table) {
      if (row.rollup) continue;
      md += fmt::format("| {} | {} |", md_cell(row.label), md_cell(row.cells.begin()->second->metric));
      for (const auto& column : columns) {
        const auto it = row.cells.find(column);
        md += " " + (it == row.cells.end() ? std::string("–")
                                           : format_with_error(it->second->metric, it->second->value,
                                                               it->second->standard_error) +
                                                 (it->second->stale ? " (stale)" : "")) +
              " |";
      }
      md += "\n";
    }
    md += "\n";
  }

  // Generative health: how often the answer could not be read, how often generation hit the token limit.
  // Benchmark-level rates always; task-level ones when they reach 5% (where a prompt or limit needs a look).
  constexpr double kHealthAlarm = 0.05;
  constexpr std::size_t kMaxHealthRows = 200;
  std::vector<const AggregateRow*> health;
  std::size_t health_total = 0;
  for (const auto& row : rows) {
    const bool rate = row.metric.find("unparsed") != std::string::npos ||
                      row.metric.find("truncat") != std::string::npos ||
                      row.metric.find("hit_token_limit") != std::string::npos;
    if (!rate || row.aggregation == kAggregationMacro) continue;
    if (row.aggregation == kAggregationTask && row.value < kHealthAlarm) continue;
    ++health_total;
    if (health.size() < kMaxHealthRows) health.push_back(&row);
  }
  if (!health.empty()) {
    md += "## Generative tasks: unparsed answers and answers cut off at the token limit\n\n"
          "Benchmark rows are sample-weighted; task rows are listed when the rate is 5% or more.";
    if (health_total > health.size()) md += fmt::format(" First {} of {} rows; all are in aggregate.csv.", health.size(), health_total);
    md += "\n\n| model | shots | task | metric | rate | samples |\n| --- | --- | --- | --- | ---: | ---: |\n";
    for (const auto* row : health) {
      md += fmt::format("| {} | {} | {} | {} | {} | {} |\n", md_cell(row->model), shots_label(row->n_shot, row->limit),
                        md_cell(row->task), md_cell(row->metric), format_value(row->metric, row->value), row->n_samples);
    }
    md += "\n";
  }

  if (input.comparison) {
    const auto& comparison = *input.comparison;
    md += fmt::format("## Comparison: A = `{}` vs B = `{}`\n\n", md_cell(comparison.model_a), md_cell(comparison.model_b));
    md += "Difference = A − B in percentage points on the documents both models answered; 95% interval from a "
          "paired bootstrap (fixed seed); significance at 5% by McNemar's exact test for 0/1 scores (tasks and micro "
          "rollups), else by the bootstrap.\n\n"
          "| task | shots | metric | aggregation | pairs | A | B | A − B | 95% interval | verdict |\n"
          "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |\n";
    for (const auto& row : comparison.rows) {
      const auto& d = row.difference;
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {:+.1f} | [{:+.1f}, {:+.1f}] | {} |\n", md_cell(row.task),
                        shots_label(row.n_shot, row.limit), md_cell(row.metric), d.aggregation, d.n_pairs,
                        format_value(row.metric, d.mean_a), format_value(row.metric, d.mean_b), 100 * d.difference,
                        100 * d.ci_low, 100 * d.ci_high, significance_text(d));
    }
    for (const auto& warning : comparison.warnings) md += "\n- " + md_cell(warning);
    md += "\n\n";
  }

  if (input.check) {
    const auto& check = *input.check;
    md += fmt::format("## Completeness\n\n{} expected, {} done, {} missing, {} stale, {} corrupt, {} unreadable, {} in "
                      "flight.\n\n",
                      check.expected, check.done, check.missing.size(), check.stale.size(), check.corrupt.size(),
                      check.unreadable.size(), check.in_flight.size());
    const auto list = [&](const char* title, const std::vector<CheckEntry>& entries) {
      if (entries.empty()) return;
      md += fmt::format("### {}\n\n| model | task | shots | reason |\n| --- | --- | --- | --- |\n", title);
      for (const auto& e : entries) {
        md += fmt::format("| {} | {} | {} | {} |\n", md_cell(e.model), md_cell(e.task), shots_label(e.n_shot, e.limit),
                          md_cell(e.reason));
      }
      md += "\n";
    };
    list("Missing", check.missing);
    list("Stale (a result exists but its key no longer matches)", check.stale);
    list("Corrupt", check.corrupt);
    list("Unreadable (permissions: not resubmitted)", check.unreadable);
    list("In flight (queued or running: not resubmitted)", check.in_flight);
    if (!check.resubmit_commands.empty()) {
      md += "Resubmit exactly these:\n\n```sh\n";
      for (const auto& command : check.resubmit_commands) md += command.line + "\n";
      md += "```\n\n";
    }
  }
  const auto file_list = [&](const char* title, const std::vector<SkippedFile>& files) {
    if (files.empty()) return;
    md += fmt::format("## {}\n\n", title);
    for (const auto& file : files) md += fmt::format("- `{}`: {}\n", md_cell(file.path.string()), md_cell(file.reason));
    md += "\n";
  };
  if (input.scan) {
    file_list("Unreadable directories and files", input.scan->unreadable);
    file_list("Skipped files", input.scan->skipped);
  }
  return md;
}

}  // namespace mill
