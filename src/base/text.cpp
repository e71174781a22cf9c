#include "mill/base/text.hpp"

#include <utf8proc.h>

#include <fnmatch.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

namespace mill {

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::vector<std::string> split_list(std::string_view text, char separator) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(separator, start);
    if (end == std::string_view::npos) end = text.size();
    auto item = trim(text.substr(start, end - start));
    if (!item.empty()) items.push_back(std::move(item));
    start = end + 1;
  }
  return items;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    out += items[i];
  }
  return out;
}

namespace {
// Length of the valid UTF-8 sequence starting at text[i], or 0 if it is not valid.
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  std::size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return 0;
  }
  return length;
}
}  // namespace

bool is_valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto length = utf8_sequence_length(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto length = utf8_sequence_length(text, i);
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
      ++i;
    } else if (c < 0x20 || c == 0x7f || length == 0) {
      // Control bytes and bytes that are not UTF-8 (e.g. from a path) are shown escaped, so the terminal and log
      // readers get one clean line.
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

std::string quote_value(std::string_view value) {
  std::string out = "\"";
  for (std::size_t i = 0; i < value.size();) {
    const auto c = static_cast<unsigned char>(value[i]);
    const auto length = utf8_sequence_length(value, i);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c < 0x20 || c == 0x7f || length == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else {
      out.append(value.substr(i, length));
      i += length;
    }
  }
  return out + "\"";
}

namespace {
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}
}  // namespace

std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       std::size_t limit) {
  std::vector<std::pair<std::size_t, std::string>> scored;
  const std::size_t allowed = std::max<std::size_t>(2, name.size() / 3);
  for (const auto& candidate : candidates) {
    auto distance = edit_distance(name, candidate);
    // A candidate that contains the name (or vice versa) is a strong hint even when long.
    if (!name.empty() && (candidate.find(name) != std::string::npos || name.find(candidate) != std::string::npos)) {
      distance = std::min(distance, allowed);
    }
    if (distance <= allowed) scored.emplace_back(distance, candidate);
  }
  std::sort(scored.begin(), scored.end());  // by distance, then name
  std::vector<std::string> out;
  for (const auto& [distance, candidate] : scored) {
    if (out.size() == limit) break;
    out.push_back(candidate);
  }
  return out;
}

std::size_t find_first_stop(std::string_view text, const std::vector<std::string>& stop) {
  std::size_t first = std::string_view::npos;
  for (const auto& sequence : stop) {
    if (!sequence.empty()) first = std::min(first, text.find(sequence));
  }
  return first;
}

bool glob_match(const std::string& pattern, const std::string& text) {
  return fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

std::string content_hash(std::string_view bytes) {
  const XXH128_hash_t hash = XXH3_128bits(bytes.data(), bytes.size());
  return fmt::format("{:016x}{:016x}", hash.high64, hash.low64);
}

std::string path_component(std::string_view name) {
  std::string out;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    // A literal '_' next to '_' or '/' is escaped, so "__" in the output always means '/'.
    const bool lone_underscore = c == '_' && (i == 0 || (name[i - 1] != '_' && name[i - 1] != '/')) &&
                                 (i + 1 == name.size() || (name[i + 1] != '_' && name[i + 1] != '/'));
    if (std::isalnum(c) || c == '.' || c == '-' || lone_underscore) {
      out += static_cast<char>(c);
    } else if (c == '/') {
      out += "__";
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  // "." and ".." are not usable as directory names; a leading dot would hide the directory.
  if (out.empty()) return "%";  // never produced otherwise: every other '%' is followed by two hex digits
  if (out[0] == '.') out = "%2E" + out.substr(1);
  return out;
}

std::string name_from_path_component(std::string_view component) {
  if (component == "%") return {};  // the empty name
  std::string out;
  for (std::size_t i = 0; i < component.size(); ++i) {
    const bool hex_follows = i + 2 < component.size() && std::isxdigit(static_cast<unsigned char>(component[i + 1])) &&
                             std::isxdigit(static_cast<unsigned char>(component[i + 2]));
    if (component.compare(i, 2, "__") == 0) {
      out += '/';
      ++i;
    } else if (component[i] == '%' && hex_follows) {
      out += static_cast<char>(std::stoi(std::string(component.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += component[i];
    }
  }
  return out;
}

namespace {

// The character starting at `offset`: its bytes and terminal columns (a byte that is not UTF-8: one and one).
std::pair<std::size_t, std::size_t> character_at(std::string_view text, std::size_t offset) {
  utf8proc_int32_t code = 0;
  const auto used = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + offset,
                                     static_cast<utf8proc_ssize_t>(text.size() - offset), &code);
  if (used <= 0) return {1, 1};
  return {static_cast<std::size_t>(used), static_cast<std::size_t>(std::max(0, utf8proc_charwidth(code)))};
}

}  // namespace

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (std::size_t offset = 0; offset < text.size();) {
    const auto [bytes, columns] = character_at(text, offset);
    width += columns;
    offset += bytes;
  }
  return width;
}

std::string fit_to_columns(std::string_view text, std::size_t columns) {
  std::size_t width = 0;
  std::size_t offset = 0;
  while (offset < text.size()) {
    const auto [bytes, char_columns] = character_at(text, offset);
    if (width + char_columns > columns) break;
    width += char_columns;
    offset += bytes;
  }
  return std::string(text.substr(0, offset));
}

std::size_t code_point_count(std::string_view text) {
  std::size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;  // every byte but continuation bytes
  return count;
}

}  // namespace mill
