#include "mill/base/shell.hpp"

#include <algorithm>
#include <cctype>

namespace mill {

std::string shell_quote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";  // end the quote, an escaped quote, reopen
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string shell_word(std::string_view word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("_./:=,@%+-").find(c) != std::string_view::npos;
  });
  return safe ? std::string(word) : shell_quote(word);
}

}  // namespace mill
