#pragma once
// Plain-text tables for stdout: columns sized to their content (UTF-8 aware, so "±" and "−" keep columns aligned)
// and, on a terminal, fitted to its width by shortening rather than wrapping: first each column's short form
// (header and cells), then long names cut in the middle ("meta-llama/Met…Instruct"), then optional columns
// dropped. In a pipe nothing is shortened (width 0: no limit).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

struct TextColumn {
  std::string header;
  std::string short_header;  // used once the table is shortened; empty: the header
  bool align_right = false;
  bool shrinkable = false;  // a name that may be cut in the middle to fit
  int drop_priority = 0;    // > 0: may be left out to fit, the lowest number first
};

struct TextCell {
  std::string text;
  std::string short_text;  // used once the table is shortened; empty: the text
  TextCell(std::string full = {}, std::string brief = {}) : text(std::move(full)), short_text(std::move(brief)) {}
  TextCell(const char* full) : text(full) {}
};

using TextRow = std::vector<TextCell>;

// Columns are separated by two spaces; lines carry no trailing spaces. `max_width` 0: no limit. When even the
// shortest form is wider than `max_width` the lines are longer (cells are never dropped one by one).
std::string render_text_table(const std::vector<TextColumn>& columns, const std::vector<TextRow>& rows,
                              std::size_t max_width);


// `utf8` cut to at most `width` columns by replacing its middle with "…" (both ends of a name carry meaning:
// an organisation and a size, a task family and a subject).
std::string shorten_middle(std::string_view utf8, std::size_t width);

// How wide stdout's terminal is: 0 when stdout is not a terminal (a pipe or a file: nothing is shortened), else
// $COLUMNS when it is a positive number, else the terminal's own size (TIOCGWINSZ), else 80.
std::size_t stdout_terminal_width();

}  // namespace mill
