// Plain-text tables: aligned by display width, fitted to a terminal by shortening, never wrapped.
#include <catch2/catch.hpp>

#include <sstream>

#include "mill/base/text.hpp"
#include "mill/base/text_table.hpp"

using namespace mill;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The display column where `needle` starts on `line` (npos when absent).
std::size_t column_of(const std::string& line, const std::string& needle) {
  const auto at = line.find(needle);
  return at == std::string::npos ? std::string::npos : display_width(line.substr(0, at));
}

}  // namespace

TEST_CASE("display width counts code points and shortening keeps both ends of a name", "[collect][text_table]") {
  CHECK(display_width("63.4 ± 1.2") == 10);
  CHECK(display_width("A − B") == 5);
  CHECK(shorten_middle("meta-llama/Meta-Llama-3-8B-Instruct", 16) == "meta-lla…nstruct");
  CHECK(display_width(shorten_middle("meta-llama/Meta-Llama-3-8B-Instruct", 16)) == 16);
  CHECK(shorten_middle("short", 16) == "short");
  CHECK(shorten_middle("±±±±±±", 3) == "±…±");  // cut between code points, never inside one
}

TEST_CASE("a table is aligned by display width, and fitted to a width by short forms, cut names and "
          "dropped optional columns",
          "[collect][text_table]") {
  const std::vector<TextColumn> columns = {
      {"task", "", false, true},
      {"shots"},
      {"aggregation", "agg.", false, false},
      {"pairs", "", true, false, 1},
      {"A − B", "", true},
      {"verdict"},
  };
  const std::vector<TextRow> rows = {
      {"mmlu_high_school_government_and_politics", "5-shot", TextCell("micro_sample_weighted", "micro"), "400",
       "+10.0", TextCell("significant (p=0.001, McNemar)", "sig. p=0.001")},
      {"mmlu_anatomy", "5-shot/limit 10", "task", "12", "−0.5", TextCell("not significant (p=0.82, McNemar)", "n.s. p=0.82")},
  };
  // No limit (a pipe): everything in full, every column starting at the same display column on every line.
  const auto full = lines_of(render_text_table(columns, rows, 0));
  REQUIRE(full.size() == 3);
  CHECK(column_of(full[0], "verdict") == column_of(full[1], "significant"));
  CHECK(column_of(full[0], "verdict") == column_of(full[2], "not significant"));
  CHECK(column_of(full[0], "aggregation") == column_of(full[2], "task"));
  CHECK(full[1].find("mmlu_high_school_government_and_politics") != std::string::npos);
  for (const auto& line : full) CHECK(line.back() != ' ');

  for (const std::size_t width : {100, 80, 60}) {
    const auto fitted = lines_of(render_text_table(columns, rows, width));
    REQUIRE(fitted.size() == 3);
    for (const auto& line : fitted) CHECK(display_width(line) <= width);
    CHECK(column_of(fitted[0], "verdict") == column_of(fitted[1], "sig"));
    CHECK(column_of(fitted[0], "verdict") == column_of(fitted[2], "n.s."));
  }
  const auto at_60 = render_text_table(columns, rows, 60);
  CHECK(at_60.find("agg.") != std::string::npos);
  CHECK(at_60.find("mmlu_hi…litics") != std::string::npos);  // cut in the middle, both ends kept
  CHECK(at_60.find("…") != std::string::npos);
  // Too narrow for even the shortest form: the lines are longer than asked, but every cell is still there.
  const auto squeezed = lines_of(render_text_table(columns, rows, 10));
  CHECK(squeezed.size() == 3);
  CHECK(squeezed[2].find("n.s. p=0.82") != std::string::npos);
}
