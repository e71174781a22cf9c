#include "mill/base/text_table.hpp"

#include "mill/base/text.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace mill {

namespace {

// The byte offset where the code point numbered `points` starts (or the end).
std::size_t byte_offset_of(std::string_view utf8, std::size_t points) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    if ((static_cast<unsigned char>(utf8[i]) & 0xC0) == 0x80) continue;
    if (seen == points) return i;
    ++seen;
  }
  return utf8.size();
}

}  // namespace

std::string shorten_middle(std::string_view utf8, std::size_t width) {
  const auto have = display_width(utf8);
  if (have <= width) return std::string(utf8);
  if (width == 0) return {};
  if (width == 1) return "…";
  // Keep a little more of the start: it names the family (an organisation, "mmlu_").
  const std::size_t keep = width - 1;
  const std::size_t head = (keep + 1) / 2;
  const std::size_t tail = keep - head;
  std::string out(utf8.substr(0, byte_offset_of(utf8, head)));
  out += "…";
  out += utf8.substr(byte_offset_of(utf8, have - tail));
  return out;
}

std::size_t stdout_terminal_width() {
  if (!::isatty(STDOUT_FILENO)) return 0;
  if (const char* columns = std::getenv("COLUMNS"); columns && *columns) {
    char* end = nullptr;
    const long value = std::strtol(columns, &end, 10);
    if (*end == '\0' && value > 0) return static_cast<std::size_t>(value);
  }
  struct winsize size {};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

namespace {

struct Layout {
  bool brief = false;
  std::vector<bool> shown;
  std::vector<std::size_t> width;  // of each column as drawn
};

const std::string& header_of(const TextColumn& column, bool brief) {
  return brief && !column.short_header.empty() ? column.short_header : column.header;
}

const std::string& text_of(const TextCell& cell, bool brief) {
  return brief && !cell.short_text.empty() ? cell.short_text : cell.text;
}

std::size_t total_width(const Layout& layout) {
  std::size_t total = 0, count = 0;
  for (std::size_t c = 0; c < layout.width.size(); ++c) {
    if (!layout.shown[c]) continue;
    total += layout.width[c];
    ++count;
  }
  return count == 0 ? 0 : total + 2 * (count - 1);
}

Layout natural_layout(const std::vector<TextColumn>& columns, const std::vector<TextRow>& rows, bool brief,
                      const std::vector<bool>& shown) {
  Layout layout{brief, shown, std::vector<std::size_t>(columns.size(), 0)};
  for (std::size_t c = 0; c < columns.size(); ++c) {
    layout.width[c] = display_width(header_of(columns[c], brief));
    for (const auto& row : rows) {
      if (c < row.size()) layout.width[c] = std::max(layout.width[c], display_width(text_of(row[c], brief)));
    }
  }
  return layout;
}

// Narrows shrinkable columns, the widest first, until the table fits or each is at `floor` columns.
void shrink_names(const std::vector<TextColumn>& columns, Layout& layout, std::size_t max_width, std::size_t floor) {
  while (total_width(layout) > max_width) {
    std::size_t widest = columns.size();
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (!columns[c].shrinkable || !layout.shown[c] || layout.width[c] <= floor) continue;
      if (widest == columns.size() || layout.width[c] > layout.width[widest]) widest = c;
    }
    if (widest == columns.size()) return;
    --layout.width[widest];
  }
}

Layout fit(const std::vector<TextColumn>& columns, const std::vector<TextRow>& rows, std::size_t max_width) {
  std::vector<bool> all(columns.size(), true);
  auto layout = natural_layout(columns, rows, false, all);
  if (max_width == 0 || total_width(layout) <= max_width) return layout;
  layout = natural_layout(columns, rows, true, all);
  if (total_width(layout) <= max_width) return layout;
  constexpr std::size_t kComfortableName = 14, kShortestName = 6;
  shrink_names(columns, layout, max_width, kComfortableName);
  // Optional columns go next, the least useful first; names shrink further only when that is not enough.
  std::vector<std::size_t> optional;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (columns[c].drop_priority > 0) optional.push_back(c);
  }
  std::stable_sort(optional.begin(), optional.end(),
                   [&](std::size_t a, std::size_t b) { return columns[a].drop_priority < columns[b].drop_priority; });
  for (const auto c : optional) {
    if (total_width(layout) <= max_width) break;
    layout.shown[c] = false;
  }
  shrink_names(columns, layout, max_width, kShortestName);
  return layout;
}

void append_cell(std::string& line, const std::string& text, std::size_t width, bool right, bool last) {
  const auto have = display_width(text);
  const auto pad = width > have ? width - have : 0;
  if (right) line.append(pad, ' ');
  line += text;
  if (!right && !last) line.append(pad, ' ');
}

}  // namespace

std::string render_text_table(const std::vector<TextColumn>& columns, const std::vector<TextRow>& rows,
                              std::size_t max_width) {
  const auto layout = fit(columns, rows, max_width);
  std::size_t last_shown = 0;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (layout.shown[c]) last_shown = c;
  }
  const auto line_of = [&](const auto& text_at) {
    std::string line;
    bool first = true;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (!layout.shown[c]) continue;
      if (!first) line += "  ";
      first = false;
      auto text = text_at(c);
      if (columns[c].shrinkable) text = shorten_middle(text, layout.width[c]);
      append_cell(line, text, layout.width[c], columns[c].align_right, c == last_shown);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = line_of([&](std::size_t c) { return header_of(columns[c], layout.brief); });
  for (const auto& row : rows) {
    out += line_of([&](std::size_t c) { return c < row.size() ? text_of(row[c], layout.brief) : std::string(); });
  }
  return out;
}

}  // namespace mill
