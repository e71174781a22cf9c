// The chat-template lexer: template text into text and tags (Jinja's whitespace rules), tags into tokens.
#include "chat_template_tree.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill::jinja {

std::vector<Chunk> split_template(std::string_view source, const std::string& origin) {
  std::vector<Chunk> chunks;
  std::size_t pos = 0;
  int line = 1;
  bool strip_next_whitespace = false, trim_next_newline = false;
  auto count_lines = [&](std::size_t from, std::size_t to) {
    line += static_cast<int>(std::count(source.begin() + static_cast<std::ptrdiff_t>(from),
                                        source.begin() + static_cast<std::ptrdiff_t>(to), '\n'));
  };
  while (pos <= source.size()) {
    std::size_t open = source.find('{', pos);
    while (open != std::string_view::npos && open + 1 < source.size() && source[open + 1] != '{' &&
           source[open + 1] != '%' && source[open + 1] != '#')
      open = source.find('{', open + 1);
    if (open != std::string_view::npos && open + 1 >= source.size()) open = std::string_view::npos;
    const std::size_t text_end = open == std::string_view::npos ? source.size() : open;

    std::string text(source.substr(pos, text_end - pos));
    // Whether the text starts a line once the previous tag's stripping is done (Jinja's "line_starting").
    bool text_at_line_start = pos == 0 || source[pos - 1] == '\n';
    if (strip_next_whitespace) {
      const auto first = text.find_first_not_of(" \t\r\n");
      const std::size_t removed = first == std::string::npos ? text.size() : first;
      if (removed > 0) text_at_line_start = text[removed - 1] == '\n';
      text.erase(0, removed);
    } else if (trim_next_newline) {
      if (text.compare(0, 1, "\n") == 0) {
        text.erase(0, 1);
        text_at_line_start = true;
      } else if (text.compare(0, 2, "\r\n") == 0) {
        text.erase(0, 2);
        text_at_line_start = true;
      }
    }
    strip_next_whitespace = trim_next_newline = false;
    const int text_line = line;
    count_lines(pos, text_end);
    if (open == std::string_view::npos) {
      if (!text.empty()) chunks.push_back({Chunk::Kind::text, std::move(text), text_line});
      break;
    }

    const char kind = source[open + 1];
    const std::string_view closer = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    std::size_t inner_begin = open + 2;
    const bool strip_before = inner_begin < source.size() && source[inner_begin] == '-';
    const bool keep_before = inner_begin < source.size() && source[inner_begin] == '+';
    if (strip_before || keep_before) ++inner_begin;
    // Find the closer outside string literals.
    std::size_t scan = inner_begin;
    char quote = 0;
    std::size_t close = std::string_view::npos;
    while (scan + 1 < source.size() + 1 && scan < source.size()) {
      const char c = source[scan];
      if (quote) {
        if (c == '\\') ++scan;
        else if (c == quote) quote = 0;
      } else if (kind != '#' && (c == '\'' || c == '"')) {
        quote = c;
      } else if (source.compare(scan, 2, closer) == 0) {
        close = scan;
        break;
      }
      ++scan;
    }
    if (close == std::string_view::npos)
      throw Error(fmt::format("{} line {}: '{{{}' is never closed by '{}'", origin, line, kind, closer));
    std::size_t inner_end = close;
    const bool strip_after = inner_end > inner_begin && source[inner_end - 1] == '-';
    const bool keep_after = inner_end > inner_begin && source[inner_end - 1] == '+';
    if (strip_after || keep_after) --inner_end;
    const bool block = kind != '{';

    if (strip_before) {
      const auto last = text.find_last_not_of(" \t\r\n");
      text.erase(last == std::string::npos ? 0 : last + 1);
    } else if (block && !keep_before) {  // lstrip_blocks: only whitespace between line start and the tag
      const auto newline = text.rfind('\n');
      const std::size_t line_begin = newline == std::string::npos ? 0 : newline + 1;
      if ((newline != std::string::npos || text_at_line_start) &&
          text.find_first_not_of(" \t", line_begin) == std::string::npos)
        text.erase(line_begin);
    }
    if (!text.empty()) chunks.push_back({Chunk::Kind::text, std::move(text), text_line});

    const int tag_line = line;
    std::string inner(source.substr(inner_begin, inner_end - inner_begin));
    count_lines(open, close + 2);
    pos = close + 2;
    if (kind == '{') {
      chunks.push_back({Chunk::Kind::output, std::move(inner), tag_line});
    } else if (kind == '%') {
      const std::string stripped = trim(inner);
      if (stripped == "raw") {  // verbatim until endraw
        std::size_t end = pos;
        while (true) {
          end = source.find("{%", end);
          if (end == std::string_view::npos)
            throw Error(fmt::format("{} line {}: {{% raw %}} is never closed by {{% endraw %}}", origin, tag_line));
          const auto tag_close = source.find("%}", end);
          std::string tag(source.substr(end + 2, tag_close == std::string_view::npos ? 0 : tag_close - end - 2));
          if (!tag.empty() && (tag.front() == '-' || tag.front() == '+')) tag.erase(0, 1);
          if (!tag.empty() && (tag.back() == '-' || tag.back() == '+')) tag.pop_back();
          if (trim(tag) == "endraw") {
            std::string raw(source.substr(pos, end - pos));
            if (strip_after) raw.erase(0, std::min(raw.size(), raw.find_first_not_of(" \t\r\n")));
            if (!raw.empty()) chunks.push_back({Chunk::Kind::text, std::move(raw), tag_line});
            count_lines(pos, tag_close + 2);
            pos = tag_close + 2;
            trim_next_newline = true;
            break;
          }
          end += 2;
        }
        continue;
      }
      chunks.push_back({Chunk::Kind::statement, std::move(inner), tag_line});
    }
    if (strip_after) strip_next_whitespace = true;
    else if (block && !keep_after) trim_next_newline = true;
  }
  return chunks;
}

std::vector<Token> tokenize(const std::string& source, const Location& where) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < source.size()) {
    const char c = source[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t j = i;
      while (j < source.size() && (std::isalnum(static_cast<unsigned char>(source[j])) || source[j] == '_')) ++j;
      tokens.push_back({Token::Kind::name, source.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      std::size_t j = i;
      bool is_float = false;
      while (j < source.size() && (std::isdigit(static_cast<unsigned char>(source[j])) || source[j] == '_')) ++j;
      if (j + 1 < source.size() && source[j] == '.' && std::isdigit(static_cast<unsigned char>(source[j + 1]))) {
        is_float = true;
        ++j;
        while (j < source.size() && std::isdigit(static_cast<unsigned char>(source[j]))) ++j;
      }
      if (j < source.size() && (source[j] == 'e' || source[j] == 'E')) {
        is_float = true;
        ++j;
        if (j < source.size() && (source[j] == '+' || source[j] == '-')) ++j;
        while (j < source.size() && std::isdigit(static_cast<unsigned char>(source[j]))) ++j;
      }
      std::string digits = source.substr(i, j - i);
      digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
      Token token{is_float ? Token::Kind::number : Token::Kind::integer, digits};
      try {
        if (is_float) token.number = std::stod(digits);
        else token.integer = std::stoll(digits);
      } catch (const std::exception&) {
        fail_at(where, fmt::format("number {} is out of range", digits));
      }
      tokens.push_back(token);
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string value;
      std::size_t j = i + 1;
      while (j < source.size() && source[j] != c) {
        if (source[j] == '\\' && j + 1 < source.size()) {
          const char e = source[++j];
          switch (e) {
            case 'n': value += '\n'; break;
            case 't': value += '\t'; break;
            case 'r': value += '\r'; break;
            case '\\': value += '\\'; break;
            case '\'': value += '\''; break;
            case '"': value += '"'; break;
            case '\n': break;
            default:
              value += '\\';
              value += e;
          }
        } else {
          value += source[j];
        }
        ++j;
      }
      if (j >= source.size()) fail_at(where, "unterminated string literal");
      tokens.push_back({Token::Kind::string, value});
      i = j + 1;
    } else {
      static const char* operators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                        "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "="};
      bool matched = false;
      for (const char* op : operators) {
        const std::size_t length = std::char_traits<char>::length(op);
        if (source.compare(i, length, op) == 0) {
          tokens.push_back({Token::Kind::op, op});
          i += length;
          matched = true;
          break;
        }
      }
      if (!matched) fail_at(where, fmt::format("unexpected character {} in expression", quote_value(std::string(1, c))));
    }
  }
  tokens.push_back({Token::Kind::end, ""});
  return tokens;
}

}  // namespace mill::jinja
