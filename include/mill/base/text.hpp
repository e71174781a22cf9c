#pragma once
// Small string helpers shared by every module: list splitting, suggestions, one-line messages, hashing.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

// Splits "a,b,,c" into {"a","b","c"}: empty items and surrounding spaces are dropped.
std::vector<std::string> split_list(std::string_view text, char separator = ',');

std::string trim(std::string_view text);
std::string join(const std::vector<std::string>& items, std::string_view separator);

// Replaces control characters (newlines included) so a message always prints as one line.
std::string one_line(std::string_view text);

// True when the bytes are well-formed UTF-8 (JSON files, which hold mill's names and paths, need it).
bool is_valid_utf8(std::string_view text);

// The terminal columns `text` takes (UTF-8; wide characters count two, combining marks none; a byte that is not
// UTF-8 one).
std::size_t display_width(std::string_view text);
// `text` cut to at most `columns` terminal columns, at a character boundary.
std::string fit_to_columns(std::string_view text, std::size_t columns);

// Renders a value for an error message: quoted, control characters and non-UTF-8 bytes escaped.
std::string quote_value(std::string_view value);

// Up to `limit` candidates closest to `name` by edit distance (or sharing it as a substring).
std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates,
                                       std::size_t limit = 3);

// Where the first occurrence of any (non-empty) stop sequence starts in `text`; npos when there is none.
std::size_t find_first_stop(std::string_view text, const std::vector<std::string>& stop);

// Shell glob (`*`, `?`, `[...]`) match of a whole string, as fnmatch(3).
bool glob_match(const std::string& pattern, const std::string& text);

// 128-bit XXH3 of the bytes, as 32 lowercase hex digits. Used for job keys and fingerprints.
std::string content_hash(std::string_view bytes);

// Turns a model or task name into one safe path component: [A-Za-z0-9._-] kept, '/' becomes "__",
// everything else is %XX-escaped, so distinct names never collide.
std::string path_component(std::string_view name);
// The inverse: the name a path_component() directory stands for.
std::string name_from_path_component(std::string_view component);

// Python's len() of a str: the code points of UTF-8 text (what lm-evaluation-harness divides by for acc_norm).
std::size_t code_point_count(std::string_view text);

}  // namespace mill
