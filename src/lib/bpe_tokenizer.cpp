// A Hugging Face tokenizer.json reader and encoder for BPE models: byte-level BPE with regex pre-tokenization
// (GPT-2, Llama-3, Qwen2) and SentencePiece-style BPE with byte fallback and the metaspace (Llama-2, Mistral).
// The pipeline mirrors the tokenizers library: added tokens are cut out first, the rest is normalized,
// pre-tokenized into words, each word is encoded by the BPE model, and the post-processor adds BOS/EOS.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>

#include "mill/error.hpp"
#include "mill/text.hpp"
#include "tokenizer_internal.hpp"

namespace mill::detail {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw Error(fmt::format("{}: {}", file.string(), what));
}

// Ids index dense tables, so a hostile or corrupt file must not size them: no tokenizer comes near this.
constexpr std::int64_t max_token_id = (1 << 22) - 1;

// An integer field in [low, high]. nlohmann's get<int> would convert a float or a wider integer unchecked
// (undefined behaviour for 1e300, a silent wrap for 2^32).
std::int64_t read_integer(const json& node, const std::filesystem::path& file, std::string_view what, std::int64_t low,
                          std::int64_t high) {
  bool in_range = false;
  if (node.is_number_unsigned()) {  // high is never negative
    in_range = node.get<std::uint64_t>() <= static_cast<std::uint64_t>(high) && node.get<std::int64_t>() >= low;
  } else if (node.is_number_integer()) {
    in_range = node.get<std::int64_t>() >= low && node.get<std::int64_t>() <= high;
  }
  if (!in_range) fail(file, fmt::format("{} must be an integer from {} to {}, not {}", what, low, high, node.dump()));
  return node.get<std::int64_t>();
}

TokenId read_token_id(const json& node, const std::filesystem::path& file, std::string_view what) {
  return static_cast<TokenId>(read_integer(node, file, what, 0, max_token_id));
}

// ---------------------------------------------------------------------------------------------------------
// Unicode helpers

bool is_unicode_whitespace(char32_t c) {  // Rust's char::is_whitespace (Unicode White_Space)
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_alphanumeric(char32_t c) {
  if (c < 0x80) return std::isalnum(static_cast<int>(c)) != 0;
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) ||
         (category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO);
}

bool is_numeric(char32_t c) {  // Rust's char::is_numeric: general category Nd, Nl or No
  if (c == char32_t(-1)) return false;
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO;
}

// Visits the characters of possibly invalid UTF-8: an invalid byte is visited alone with code point -1.
template <typename Visit>
void for_each_char(std::string_view text, Visit&& visit) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t length = utf8_sequence_length(text, pos);
    if (length == 0) {
      visit(pos, std::size_t{1}, char32_t(-1));
      ++pos;
    } else {
      visit(pos, length, utf8_code_point(text, pos, length));
      pos += length;
    }
  }
}

char32_t last_char(std::string_view text) {
  if (text.empty()) return char32_t(-1);
  std::size_t start = text.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80 && text.size() - start < 4) --start;
  const std::size_t length = utf8_sequence_length(text, start);
  if (length != text.size() - start) return char32_t(-1);
  return utf8_code_point(text, start, length);
}

char32_t first_char(std::string_view text) {
  if (text.empty()) return char32_t(-1);
  const std::size_t length = utf8_sequence_length(text, 0);
  return length == 0 ? char32_t(-1) : utf8_code_point(text, 0, length);
}

// Unicode normalization of the valid stretches; invalid bytes pass through unchanged.
std::string unicode_normalize(std::string_view text, int options) {
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size()) {
      const std::size_t length = utf8_sequence_length(text, end);
      if (length == 0) break;
      end += length;
    }
    if (end > pos) {
      utf8proc_uint8_t* mapped = nullptr;
      const auto size = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos),
                                     static_cast<utf8proc_ssize_t>(end - pos), &mapped,
                                     static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
      if (size < 0) {
        out.append(text.substr(pos, end - pos));
      } else {
        out.append(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(size));
      }
      std::free(mapped);
      pos = end;
    }
    if (pos < text.size()) out.push_back(text[pos++]);  // an invalid byte
  }
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out;
  for_each_char(text, [&](std::size_t pos, std::size_t length, char32_t c) {
    if (c == char32_t(-1)) {
      out.append(text.substr(pos, length));
    } else {
      append_utf8(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  });
  return out;
}

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const auto hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// PCRE2 patterns: the tokenizers library uses Oniguruma; with UTF + UCP, PCRE2 reads these patterns the same.

class Regex {
 public:
  Regex(const std::string& pattern, const std::filesystem::path& file) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr);
    if (!code_) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      fail(file, fmt::format("regex {} does not compile at offset {}: {}", quote_value(pattern), error_offset,
                             reinterpret_cast<const char*>(message.data())));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for each non-empty, non-overlapping match, left to right.
  template <typename OnMatch>
  void for_each_match(std::string_view text, OnMatch&& on_match) const {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
    std::size_t offset = 0;
    while (offset <= text.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset, 0, data, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {  // never drop the rest of the text silently
        std::array<PCRE2_UCHAR, 256> message{};
        pcre2_get_error_message(rc, message.data(), message.size());
        pcre2_match_data_free(data);
        throw Error(fmt::format("tokenizer regex failed on a text of {} bytes: {}", text.size(),
                                reinterpret_cast<const char*>(message.data())));
      }
      const PCRE2_SIZE* vector = pcre2_get_ovector_pointer(data);
      const std::size_t begin = vector[0], end = vector[1];
      if (end == begin) {  // an empty match: step over one character
        const std::size_t length = begin < text.size() ? std::max<std::size_t>(1, utf8_sequence_length(text, begin)) : 1;
        offset = begin + length;
        continue;
      }
      on_match(begin, end);
      offset = end;
    }
    pcre2_match_data_free(data);
  }

 private:
  pcre2_code* code_ = nullptr;
};

// ---------------------------------------------------------------------------------------------------------
// GPT-2's byte-to-character table: printable bytes stand for themselves, the others map to U+0100 upwards.

struct ByteLevelTable {
  std::array<std::string, 256> byte_to_text;
  std::unordered_map<char32_t, unsigned char> char_to_byte;
  ByteLevelTable() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? static_cast<char32_t>(b) : next++;
      append_utf8(byte_to_text[b], c);
      char_to_byte[c] = static_cast<unsigned char>(b);
    }
  }
};

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

constexpr const char* gpt2_pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ---------------------------------------------------------------------------------------------------------
// Normalizers

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};
using NormalizerPtr = std::unique_ptr<Normalizer>;

struct FunctionNormalizer : Normalizer {
  std::function<std::string(std::string)> apply;
  explicit FunctionNormalizer(std::function<std::string(std::string)> f) : apply(std::move(f)) {}
  std::string normalize(std::string text) const override { return apply(std::move(text)); }
};

struct SequenceNormalizer : Normalizer {
  std::vector<NormalizerPtr> steps;
  std::string normalize(std::string text) const override {
    for (const auto& step : steps) text = step->normalize(std::move(text));
    return text;
  }
};

// {"String": "x"} or {"Regex": "x"} as used by Replace and Split.
struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex;
};

Pattern read_pattern(const json& node, const std::filesystem::path& file) {
  Pattern pattern;
  if (node.contains("String")) {
    pattern.literal = node.at("String").get<std::string>();
  } else if (node.contains("Regex")) {
    pattern.regex = std::make_shared<Regex>(node.at("Regex").get<std::string>(), file);
  } else {
    fail(file, fmt::format("pattern {} must be {{\"String\": ...}} or {{\"Regex\": ...}}", node.dump()));
  }
  return pattern;
}

// Start/end byte offsets of the pattern's matches.
std::vector<std::pair<std::size_t, std::size_t>> find_all(const Pattern& pattern, std::string_view text) {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  if (pattern.regex) {
    pattern.regex->for_each_match(text, [&](std::size_t b, std::size_t e) { matches.emplace_back(b, e); });
  } else if (!pattern.literal.empty()) {
    std::size_t pos = 0;
    while ((pos = text.find(pattern.literal, pos)) != std::string_view::npos) {
      matches.emplace_back(pos, pos + pattern.literal.size());
      pos += pattern.literal.size();
    }
  }
  return matches;
}

std::string replace_pattern(const Pattern& pattern, std::string_view text, std::string_view content) {
  if (!pattern.regex) return replace_all(text, pattern.literal, content);
  std::string out;
  std::size_t pos = 0;
  for (const auto& [b, e] : find_all(pattern, text)) {
    out.append(text.substr(pos, b - pos));
    out.append(content);
    pos = e;
  }
  out.append(text.substr(pos));
  return out;
}

NormalizerPtr read_normalizer(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    auto sequence = std::make_unique<SequenceNormalizer>();
    for (const auto& step : node.at("normalizers"))
      if (auto n = read_normalizer(step, file)) sequence->steps.push_back(std::move(n));
    return sequence;
  }
  auto function = [](auto f) { return std::make_unique<FunctionNormalizer>(std::move(f)); };
  if (type == "NFC") return function([](std::string t) { return unicode_normalize(t, UTF8PROC_COMPOSE); });
  if (type == "NFD") return function([](std::string t) { return unicode_normalize(t, UTF8PROC_DECOMPOSE); });
  if (type == "NFKC")
    return function([](std::string t) { return unicode_normalize(t, UTF8PROC_COMPOSE | UTF8PROC_COMPAT); });
  if (type == "NFKD")
    return function([](std::string t) { return unicode_normalize(t, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); });
  if (type == "Lowercase") return function([](std::string t) { return lowercase(t); });
  if (type == "Prepend") {
    const std::string prefix = node.at("prepend").get<std::string>();
    return function([prefix](std::string t) { return t.empty() ? t : prefix + t; });
  }
  if (type == "Replace") {
    auto pattern = read_pattern(node.at("pattern"), file);
    const std::string content = node.at("content").get<std::string>();
    return function([pattern, content](std::string t) { return replace_pattern(pattern, t, content); });
  }
  if (type == "Strip") {
    const bool left = node.value("strip_left", true), right = node.value("strip_right", true);
    return function([left, right](std::string t) {
      std::size_t begin = 0, end = t.size();
      while (left && begin < end) {
        const auto length = utf8_sequence_length(t, begin);
        if (length == 0 || !is_unicode_whitespace(utf8_code_point(t, begin, length))) break;
        begin += length;
      }
      while (right && end > begin) {
        const char32_t c = last_char(std::string_view(t).substr(begin, end - begin));
        if (c == char32_t(-1) || !is_unicode_whitespace(c)) break;
        std::string tail;
        append_utf8(tail, c);
        end -= tail.size();
      }
      return t.substr(begin, end - begin);
    });
  }
  fail(file, fmt::format("normalizer type {} is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, "
                         "Lowercase, Prepend, Replace, Strip)",
                         quote_value(type)));
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizers: split a piece of text into words (and, for ByteLevel, map bytes to characters).

struct Word {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the original input (Metaspace's prepend_scheme "first")
};

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual void split(std::vector<Word>& words) const = 0;
};
using PreTokenizerPtr = std::unique_ptr<PreTokenizer>;

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Cuts `word` at the matches, treating each match (or, with invert, each gap) as a delimiter.
void split_by_matches(const Word& word, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                      SplitBehavior behavior, bool invert, std::vector<Word>& out) {
  struct Part {
    std::size_t begin, end;
    bool delimiter;
  };
  std::vector<Part> parts;
  std::size_t pos = 0;
  for (const auto& [b, e] : matches) {
    if (b > pos) parts.push_back({pos, b, invert});
    parts.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < word.text.size()) parts.push_back({pos, word.text.size(), invert});

  std::vector<Part> merged;
  for (const auto& part : parts) {
    switch (behavior) {
      case SplitBehavior::removed:
        if (!part.delimiter) merged.push_back(part);
        break;
      case SplitBehavior::isolated:
        merged.push_back(part);
        break;
      case SplitBehavior::merged_with_previous:
        if (part.delimiter && !merged.empty() && !merged.back().delimiter) {
          merged.back().end = part.end;
          merged.back().delimiter = true;
        } else {
          merged.push_back(part);
        }
        break;
      case SplitBehavior::merged_with_next:
        if (!merged.empty() && merged.back().delimiter && !part.delimiter) {
          merged.back().end = part.end;
          merged.back().delimiter = false;
        } else {
          merged.push_back(part);
        }
        break;
      case SplitBehavior::contiguous:
        if (!merged.empty() && merged.back().delimiter && part.delimiter) {
          merged.back().end = part.end;
        } else {
          merged.push_back(part);
        }
        break;
    }
  }
  for (const auto& part : merged)
    if (part.end > part.begin)
      out.push_back({word.text.substr(part.begin, part.end - part.begin), word.at_start && part.begin == 0});
}

struct SequencePreTokenizer : PreTokenizer {
  std::vector<PreTokenizerPtr> steps;
  void split(std::vector<Word>& words) const override {
    for (const auto& step : steps) step->split(words);
  }
};

struct SplitPreTokenizer : PreTokenizer {
  Pattern pattern;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (const auto& word : words) split_by_matches(word, find_all(pattern, word.text), behavior, invert, out);
    words = std::move(out);
  }
};

struct ByteLevelPreTokenizer : PreTokenizer {
  bool add_prefix_space = false;
  std::unique_ptr<Regex> regex;  // GPT-2's pattern when use_regex
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (auto& word : words) {
      if (add_prefix_space && (word.text.empty() || word.text[0] != ' ')) word.text.insert(0, 1, ' ');
      if (regex) {
        std::vector<std::pair<std::size_t, std::size_t>> matches;
        regex->for_each_match(word.text, [&](std::size_t b, std::size_t e) { matches.emplace_back(b, e); });
        split_by_matches(word, matches, SplitBehavior::isolated, false, out);
      } else {
        out.push_back(std::move(word));
      }
    }
    const auto& table = byte_level_table();
    for (auto& word : out) {
      std::string mapped;
      mapped.reserve(word.text.size() * 2);
      for (const char byte : word.text) mapped += table.byte_to_text[static_cast<unsigned char>(byte)];
      word.text = std::move(mapped);
    }
    words = std::move(out);
  }
};

enum class PrependScheme { always, first, never };

struct MetaspacePreTokenizer : PreTokenizer {
  std::string replacement = "\xE2\x96\x81";  // U+2581
  PrependScheme prepend = PrependScheme::always;
  bool split_words = true;
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (auto& word : words) {
      word.text = replace_all(word.text, " ", replacement);
      const bool starts_with_replacement = word.text.compare(0, replacement.size(), replacement) == 0;
      if (!starts_with_replacement &&
          (prepend == PrependScheme::always || (prepend == PrependScheme::first && word.at_start)))
        word.text.insert(0, replacement);
      if (split_words) {
        std::vector<std::pair<std::size_t, std::size_t>> matches;
        std::size_t pos = 0;
        while ((pos = word.text.find(replacement, pos)) != std::string::npos) {
          matches.emplace_back(pos, pos + replacement.size());
          pos += replacement.size();
        }
        split_by_matches(word, matches, SplitBehavior::merged_with_next, false, out);
      } else {
        out.push_back(std::move(word));
      }
    }
    words = std::move(out);
  }
};

struct DigitsPreTokenizer : PreTokenizer {
  bool individual = false;
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (const auto& word : words) {
      std::vector<std::pair<std::size_t, std::size_t>> matches;
      for_each_char(word.text, [&](std::size_t pos, std::size_t length, char32_t c) {
        if (!is_numeric(c)) return;
        if (!individual && !matches.empty() && matches.back().second == pos) {
          matches.back().second = pos + length;
        } else {
          matches.emplace_back(pos, pos + length);
        }
      });
      split_by_matches(word, matches, SplitBehavior::isolated, false, out);
    }
    words = std::move(out);
  }
};

struct WhitespaceSplitPreTokenizer : PreTokenizer {
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (const auto& word : words) {
      std::vector<std::pair<std::size_t, std::size_t>> matches;
      for_each_char(word.text, [&](std::size_t pos, std::size_t length, char32_t c) {
        if (c != char32_t(-1) && is_unicode_whitespace(c)) matches.emplace_back(pos, pos + length);
      });
      split_by_matches(word, matches, SplitBehavior::removed, false, out);
    }
    words = std::move(out);
  }
};

PrependScheme read_prepend_scheme(const json& node) {
  if (node.contains("prepend_scheme")) {
    const auto scheme = node.at("prepend_scheme").get<std::string>();
    if (scheme == "first") return PrependScheme::first;
    if (scheme == "never") return PrependScheme::never;
    return PrependScheme::always;
  }
  return node.value("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

// The `behavior` of a Split or Punctuation pre-tokenizer (the tokenizers library's SplitDelimiterBehavior).
SplitBehavior read_split_behavior(const json& node, const char* pre_tokenizer, const std::filesystem::path& file) {
  static const std::map<std::string, SplitBehavior> behaviors{
      {"Removed", SplitBehavior::removed},
      {"Isolated", SplitBehavior::isolated},
      {"MergedWithPrevious", SplitBehavior::merged_with_previous},
      {"MergedWithNext", SplitBehavior::merged_with_next},
      {"Contiguous", SplitBehavior::contiguous}};
  const std::string behavior = node.value("behavior", "Isolated");
  const auto found = behaviors.find(behavior);
  if (found == behaviors.end()) {
    fail(file, fmt::format("{} behavior {} is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                           "Contiguous",
                           pre_tokenizer, quote_value(behavior)));
  }
  return found->second;
}

PreTokenizerPtr read_pre_tokenizer(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    auto sequence = std::make_unique<SequencePreTokenizer>();
    for (const auto& step : node.at("pretokenizers"))
      if (auto p = read_pre_tokenizer(step, file)) sequence->steps.push_back(std::move(p));
    return sequence;
  }
  if (type == "Split") {
    auto split = std::make_unique<SplitPreTokenizer>();
    split->pattern = read_pattern(node.at("pattern"), file);
    split->behavior = read_split_behavior(node, "Split", file);
    split->invert = node.value("invert", false);
    return split;
  }
  if (type == "ByteLevel") {
    auto byte_level = std::make_unique<ByteLevelPreTokenizer>();
    byte_level->add_prefix_space = node.value("add_prefix_space", true);
    if (node.value("use_regex", true)) byte_level->regex = std::make_unique<Regex>(gpt2_pattern, file);
    return byte_level;
  }
  if (type == "Metaspace") {
    auto metaspace = std::make_unique<MetaspacePreTokenizer>();
    metaspace->replacement = node.value("replacement", metaspace->replacement);
    metaspace->prepend = read_prepend_scheme(node);
    metaspace->split_words = node.value("split", true);
    return metaspace;
  }
  if (type == "Digits") {
    auto digits = std::make_unique<DigitsPreTokenizer>();
    digits->individual = node.value("individual_digits", false);
    return digits;
  }
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Whitespace") {  // words and punctuation runs kept, whitespace dropped
    auto split = std::make_unique<SplitPreTokenizer>();
    // Oniguruma's \w (the tokenizers library's regex engine) is Unicode's word class, wider than PCRE2's.
    split->pattern.regex = std::make_shared<Regex>(
        R"([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s]+)", file);
    split->behavior = SplitBehavior::removed;
    split->invert = true;
    return split;
  }
  if (type == "Punctuation") {  // each punctuation character (ASCII or Unicode P*) split off
    auto split = std::make_unique<SplitPreTokenizer>();
    split->pattern.regex = std::make_shared<Regex>(R"([\p{P}!-/:-@\[-`{-~])", file);
    split->behavior = read_split_behavior(node, "Punctuation", file);
    return split;
  }
  fail(file, fmt::format("pre_tokenizer type {} is not supported (supported: Sequence, Split, ByteLevel, "
                         "Metaspace, Digits, WhitespaceSplit, Whitespace, Punctuation)",
                         quote_value(type)));
}

// ---------------------------------------------------------------------------------------------------------
// Decoders: token strings back to text.

struct Decoder {
  virtual ~Decoder() = default;
  virtual void decode(std::vector<std::string>& tokens) const = 0;
};
using DecoderPtr = std::unique_ptr<Decoder>;

struct SequenceDecoder : Decoder {
  std::vector<DecoderPtr> steps;
  void decode(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps) step->decode(tokens);
  }
};

struct ByteLevelDecoder : Decoder {
  void decode(std::vector<std::string>& tokens) const override {
    const auto& table = byte_level_table();
    std::string bytes;
    for (const auto& token : tokens) {
      std::string token_bytes;
      bool all_mapped = true;
      for_each_char(token, [&](std::size_t, std::size_t, char32_t c) {
        const auto found = table.char_to_byte.find(c);
        if (found == table.char_to_byte.end()) {
          all_mapped = false;
        } else {
          token_bytes.push_back(static_cast<char>(found->second));
        }
      });
      bytes += all_mapped ? token_bytes : token;  // e.g. an added token spelled outside the byte alphabet
    }
    tokens.assign(1, utf8_lossy(bytes));
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement = "\xE2\x96\x81";
  bool strip_first = true;
  void decode(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], replacement, " ");
      if (i == 0 && strip_first && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
  }
};

struct ReplaceDecoder : Decoder {
  Pattern pattern;
  std::string content;
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) token = replace_pattern(pattern, token, content);
  }
};

// <0xNN> tokens become bytes; a run of them that is not valid UTF-8 becomes one U+FFFD per byte.
struct ByteFallbackDecoder : Decoder {
  static int byte_value(const std::string& token) {
    if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
    int value = 0;
    for (int i = 3; i < 5; ++i) {
      const char c = token[i];
      value *= 16;
      if (c >= '0' && c <= '9') value += c - '0';
      else if (c >= 'A' && c <= 'F') value += c - 'A' + 10;
      else if (c >= 'a' && c <= 'f') value += c - 'a' + 10;
      else return -1;
    }
    return value;
  }
  void decode(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    std::size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (utf8_lossy(pending) == pending) {
        out.push_back(pending);
      } else {
        std::string replacement;
        for (std::size_t i = 0; i < pending_count; ++i) replacement += "\xEF\xBF\xBD";
        out.push_back(replacement);
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& token : tokens) {
      const int value = byte_value(token);
      if (value >= 0) {
        pending.push_back(static_cast<char>(value));
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

struct FuseDecoder : Decoder {
  void decode(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    tokens.assign(1, joined);
  }
};

struct StripDecoder : Decoder {
  std::string content;
  std::size_t start = 0, stop = 0;
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) {
      for (std::size_t i = 0; i < start && token.compare(0, content.size(), content) == 0 && !content.empty(); ++i)
        token.erase(0, content.size());
      for (std::size_t i = 0; i < stop && token.size() >= content.size() && !content.empty() &&
                              token.compare(token.size() - content.size(), content.size(), content) == 0;
           ++i)
        token.erase(token.size() - content.size());
    }
  }
};

DecoderPtr read_decoder(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    auto sequence = std::make_unique<SequenceDecoder>();
    for (const auto& step : node.at("decoders"))
      if (auto d = read_decoder(step, file)) sequence->steps.push_back(std::move(d));
    return sequence;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    auto metaspace = std::make_unique<MetaspaceDecoder>();
    metaspace->replacement = node.value("replacement", metaspace->replacement);
    metaspace->strip_first = read_prepend_scheme(node) != PrependScheme::never;
    return metaspace;
  }
  if (type == "Replace") {
    auto replace = std::make_unique<ReplaceDecoder>();
    replace->pattern = read_pattern(node.at("pattern"), file);
    replace->content = node.at("content").get<std::string>();
    return replace;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto strip = std::make_unique<StripDecoder>();
    strip->content = node.value("content", " ");
    if (node.contains("start")) strip->start = read_integer(node.at("start"), file, "Strip decoder start", 0, 1 << 20);
    if (node.contains("stop")) strip->stop = read_integer(node.at("stop"), file, "Strip decoder stop", 0, 1 << 20);
    return strip;
  }
  fail(file, fmt::format("decoder type {} is not supported (supported: Sequence, ByteLevel, Metaspace, Replace, "
                         "ByteFallback, Fuse, Strip)",
                         quote_value(type)));
}

// ---------------------------------------------------------------------------------------------------------
// The BPE model

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class BpeModel {
 public:
  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> vocab;
  std::vector<std::string> id_to_token;  // may have holes ("") where ids are unused
  std::optional<TokenId> unk;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;

  void add_merge(TokenId left, TokenId right, int rank, TokenId merged) {
    merges_.emplace(key(left, right), MergeTarget{rank, merged});
  }

  void prepare_byte_fallback() {
    for (int b = 0; b < 256; ++b) {
      const auto found = vocab.find(fmt::format("<0x{:02X}>", b));
      byte_ids_[b] = found == vocab.end() ? -1 : found->second;
    }
  }

  std::optional<TokenId> find(std::string_view token) const {
    const auto found = vocab.find(token);
    if (found == vocab.end()) return std::nullopt;
    return found->second;
  }

  void encode_word(std::string_view word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
      if (const auto id = find(word)) {
        out.push_back(*id);
        return;
      }
    }
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    bool previous_unk = false;
    for_each_char(word, [&](std::size_t pos, std::size_t length, char32_t) {
      if (const auto id = find(word.substr(pos, length))) {
        symbols.push_back({*id});
        previous_unk = false;
        return;
      }
      if (byte_fallback) {
        bool all = true;
        for (std::size_t i = 0; i < length; ++i) all = all && byte_ids_[static_cast<unsigned char>(word[pos + i])] >= 0;
        if (all) {
          for (std::size_t i = 0; i < length; ++i) symbols.push_back({byte_ids_[static_cast<unsigned char>(word[pos + i])]});
          previous_unk = false;
          return;
        }
      }
      if (!unk) return;  // the tokenizers library drops characters it cannot represent when there is no unk
      if (!(fuse_unk && previous_unk)) symbols.push_back({*unk});
      previous_unk = true;
    });
    merge(symbols);
    for (const auto& symbol : symbols)
      if (symbol.alive) out.push_back(symbol.id);
  }

 private:
  struct MergeTarget {
    int rank;
    TokenId merged;
  };
  struct Symbol {
    TokenId id;
    int previous = -1, next = -1;
    bool alive = true;
  };
  struct Candidate {
    int rank;
    int position;
    TokenId merged;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };

  static std::uint64_t key(TokenId left, TokenId right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }

  const MergeTarget* lookup(TokenId left, TokenId right) const {
    const auto found = merges_.find(key(left, right));
    return found == merges_.end() ? nullptr : &found->second;
  }

  // Repeatedly applies the lowest-ranked merge present (leftmost first on ties), as the tokenizers library.
  void merge(std::vector<Symbol>& symbols) const {
    const int n = static_cast<int>(symbols.size());
    if (n < 2) return;
    for (int i = 0; i < n; ++i) {
      symbols[i].previous = i - 1;
      symbols[i].next = i + 1 < n ? i + 1 : -1;
    }
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    for (int i = 0; i + 1 < n; ++i)
      if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id)) queue.push({m->rank, i, m->merged});
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.position];
      if (!left.alive || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      const auto* current = lookup(left.id, right.id);
      if (!current || current->merged != top.merged || current->rank != top.rank) continue;
      left.id = top.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].previous = top.position;
      if (left.previous >= 0)
        if (const auto* m = lookup(symbols[left.previous].id, left.id)) queue.push({m->rank, left.previous, m->merged});
      if (left.next >= 0)
        if (const auto* m = lookup(left.id, symbols[left.next].id)) queue.push({m->rank, top.position, m->merged});
    }
  }

  std::unordered_map<std::uint64_t, MergeTarget> merges_;
  std::array<TokenId, 256> byte_ids_{};
};

// ---------------------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  TokenId id;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Finds added tokens in text the way the tokenizers library does: leftmost-longest, honouring the flags.
class AddedTokenMatcher {
 public:
  void add(const AddedToken* token, std::string pattern) {
    if (pattern.empty()) return;
    by_first_byte_[static_cast<unsigned char>(pattern[0])].push_back({token, std::move(pattern)});
  }
  void finish() {
    for (auto& list : by_first_byte_)
      std::stable_sort(list.begin(), list.end(),
                       [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
  }
  bool empty() const {
    return std::all_of(by_first_byte_.begin(), by_first_byte_.end(), [](const auto& l) { return l.empty(); });
  }

  struct Segment {
    std::size_t begin, end;
    const AddedToken* token;  // null for plain text
  };

  std::vector<Segment> split(std::string_view text) const {
    std::vector<Segment> segments;
    std::size_t start_offset = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      const Entry* hit = nullptr;
      for (const auto& entry : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
        if (text.compare(pos, entry.pattern.size(), entry.pattern) == 0) {
          hit = &entry;
          break;
        }
      }
      if (!hit) {
        ++pos;
        continue;
      }
      std::size_t begin = pos, end = pos + hit->pattern.size();
      pos = end;
      const AddedToken& token = *hit->token;
      if (token.single_word) {
        const char32_t before = last_char(text.substr(0, begin));
        const char32_t after = first_char(text.substr(end));
        const bool word_before = begin > 0 && before != char32_t(-1) && (is_alphanumeric(before) || before == '_');
        const bool word_after = end < text.size() && after != char32_t(-1) && (is_alphanumeric(after) || after == '_');
        if (word_before || word_after) continue;
      }
      if (token.lstrip) {
        std::size_t new_begin = begin;
        while (new_begin > start_offset) {
          const char32_t c = last_char(text.substr(0, new_begin));
          if (c == char32_t(-1) || !is_unicode_whitespace(c)) break;
          std::string encoded;
          append_utf8(encoded, c);
          new_begin -= encoded.size();
        }
        begin = new_begin;
      }
      if (token.rstrip) {
        while (end < text.size()) {
          const auto length = utf8_sequence_length(text, end);
          if (length == 0 || !is_unicode_whitespace(utf8_code_point(text, end, length))) break;
          end += length;
        }
        pos = end;
      }
      if (begin > start_offset) segments.push_back({start_offset, begin, nullptr});
      segments.push_back({begin, end, &token});
      start_offset = end;
    }
    if (start_offset < text.size()) segments.push_back({start_offset, text.size(), nullptr});
    return segments;
  }

 private:
  struct Entry {
    const AddedToken* token;
    std::string pattern;
  };
  std::array<std::vector<Entry>, 256> by_first_byte_;
};

// ---------------------------------------------------------------------------------------------------------

class JsonTokenizer final : public Tokenizer {
 public:
  JsonTokenizer(const std::filesystem::path& file, TokenizerConfig config) : config_(std::move(config)) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail(file, "cannot be read");
    json root;
    try {
      root = json::parse(in);
    } catch (const json::exception& e) {
      fail(file, fmt::format("is not valid JSON ({})", e.what()));
    }
    try {
      read(root, file);
    } catch (const json::exception& e) {
      fail(file, fmt::format("unexpected structure ({})", e.what()));
    }
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<TokenId> ids;
    if (add_special_tokens) ids = prefix_;
    std::vector<Word> words;
    for (const auto& raw : raw_matcher_.split(text)) {
      if (raw.token) {
        ids.push_back(raw.token->id);
        continue;
      }
      std::string normalized(text.substr(raw.begin, raw.end - raw.begin));
      if (normalizer_) normalized = normalizer_->normalize(std::move(normalized));
      for (const auto& piece : normalized_matcher_.split(normalized)) {
        if (piece.token) {
          ids.push_back(piece.token->id);
          continue;
        }
        words.clear();
        words.push_back({normalized.substr(piece.begin, piece.end - piece.begin), raw.begin == 0 && piece.begin == 0});
        if (pre_tokenizer_) pre_tokenizer_->split(words);
        for (const auto& word : words) encode_word_cached(word.text, ids);
      }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const TokenId id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size()) continue;  // unknown ids are dropped
      if (skip_special_tokens && special_ids_.count(id)) continue;
      tokens.push_back(id_to_token_[id]);
    }
    if (!decoder_) return join(tokens, " ");  // what the tokenizers library does without a decoder
    decoder_->decode(tokens);
    std::string text;
    for (const auto& token : tokens) text += token;
    return text;
  }

  std::optional<TokenId> bos_id() const override { return bos_id_; }
  std::optional<TokenId> eos_id() const override { return eos_id_; }
  std::size_t vocab_size() const override { return id_to_token_.size(); }

  bool has_chat_template() const override { return config_.chat_template.has_value(); }

  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const override {
    return render_chat_template(config_, messages, add_generation_prompt);
  }

 private:
  void read(const json& root, const std::filesystem::path& file) {
    const json& model = root.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE")
      fail(file, fmt::format("model type {} is not supported (supported: BPE)", quote_value(type)));
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && model.at(key).is_string() && !model.at(key).get<std::string>().empty())
        fail(file, fmt::format("model.{} is not supported (only empty)", key));

    for (const auto& [token, id] : model.at("vocab").items()) {
      const TokenId value = read_token_id(id, file, fmt::format("model.vocab id of {}", quote_value(token)));
      model_.vocab.emplace(token, value);
      if (static_cast<std::size_t>(value) >= model_.id_to_token.size()) model_.id_to_token.resize(value + 1);
      model_.id_to_token[value] = token;
    }
    int rank = 0;
    for (const auto& merge : model.at("merges")) {
      std::string left, right;
      if (merge.is_string()) {
        const auto text = merge.get<std::string>();
        const auto space = text.find(' ', 1);  // the first symbol may not start with a space
        if (space == std::string::npos) fail(file, fmt::format("merge {} is not \"left right\"", quote_value(text)));
        left = text.substr(0, space);
        right = text.substr(space + 1);
      } else {
        left = merge.at(0).get<std::string>();
        right = merge.at(1).get<std::string>();
      }
      const auto l = model_.find(left), r = model_.find(right), m = model_.find(left + right);
      if (!l || !r || !m)
        fail(file, fmt::format("merge {} {} refers to a token missing from model.vocab", quote_value(left),
                               quote_value(right)));
      model_.add_merge(*l, *r, rank++, *m);
    }
    model_.byte_fallback = model.value("byte_fallback", false);
    model_.fuse_unk = model.value("fuse_unk", false);
    model_.ignore_merges = model.value("ignore_merges", false);
    if (model.contains("unk_token") && model.at("unk_token").is_string()) model_.unk = model_.find(model.at("unk_token").get<std::string>());
    model_.prepare_byte_fallback();

    id_to_token_ = model_.id_to_token;
    if (root.contains("added_tokens")) {
      for (const auto& node : root.at("added_tokens")) {
        AddedToken token;
        token.content = node.at("content").get<std::string>();
        // The tokenizers library keeps the model's id for a token the vocabulary already has.
        token.id = model_.find(token.content).value_or(read_token_id(node.at("id"), file, "added_tokens id"));
        token.special = node.value("special", false);
        token.lstrip = node.value("lstrip", false);
        token.rstrip = node.value("rstrip", false);
        token.single_word = node.value("single_word", false);
        token.normalized = node.value("normalized", !token.special);
        added_.push_back(std::move(token));
      }
    }
    normalizer_ = read_normalizer(root.value("normalizer", json()), file);
    pre_tokenizer_ = read_pre_tokenizer(root.value("pre_tokenizer", json()), file);
    decoder_ = read_decoder(root.value("decoder", json()), file);

    for (const auto& token : added_) {
      if (static_cast<std::size_t>(token.id) >= id_to_token_.size()) id_to_token_.resize(token.id + 1);
      id_to_token_[token.id] = token.content;
      if (token.special) special_ids_.insert(token.id);
      if (token.normalized) {
        normalized_matcher_.add(&token, normalizer_ ? normalizer_->normalize(token.content) : token.content);
      } else {
        raw_matcher_.add(&token, token.content);
      }
    }
    raw_matcher_.finish();
    normalized_matcher_.finish();

    auto token_id = [&](const std::optional<std::string>& content) -> std::optional<TokenId> {
      if (!content) return std::nullopt;
      for (const auto& token : added_)
        if (token.content == *content) return token.id;
      return model_.find(*content);
    };
    bos_id_ = token_id(config_.bos_token);
    eos_id_ = token_id(config_.eos_token);

    // transformers 5 lets the post_processor alone decide; add_bos_token/add_eos_token in tokenizer_config.json
    // do not change a tokenizer.json's encoding (checked: tests/data/tokenizer/transformers-special-tokens.json).
    read_post_processor(root.value("post_processor", json()), file);
  }

  void read_post_processor(const json& node, const std::filesystem::path& file) {
    if (node.is_null()) return;
    const std::string type = node.value("type", "");
    if (type == "Sequence") {
      for (const auto& step : node.at("processors")) read_post_processor(step, file);
    } else if (type == "ByteLevel") {
      // Only adjusts offsets.
    } else if (type == "TemplateProcessing") {
      bool after_sequence = false;
      for (const auto& item : node.at("single")) {
        if (item.contains("Sequence")) {
          after_sequence = true;
          continue;
        }
        const std::string name = item.at("SpecialToken").at("id").get<std::string>();
        const auto& special = node.at("special_tokens");
        if (!special.contains(name))
          fail(file, fmt::format("post_processor names special token {} but does not define it", quote_value(name)));
        for (const auto& id : special.at(name).at("ids"))
          (after_sequence ? suffix_ : prefix_).push_back(known_id(id, file, "post_processor special token id"));
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      prefix_.push_back(known_id(node.at("cls").at(1), file, "post_processor cls id"));
      suffix_.push_back(known_id(node.at("sep").at(1), file, "post_processor sep id"));
    } else {
      fail(file, fmt::format("post_processor type {} is not supported (supported: Sequence, ByteLevel, "
                             "TemplateProcessing, BertProcessing, RobertaProcessing)",
                             quote_value(type)));
    }
  }

  // An id the post-processor adds must be one of this tokenizer's (a model would index its embeddings with it).
  TokenId known_id(const json& node, const std::filesystem::path& file, std::string_view what) const {
    const TokenId id = read_token_id(node, file, what);
    if (static_cast<std::size_t>(id) >= id_to_token_.size())
      fail(file, fmt::format("{} {} is outside the vocabulary of {} tokens", what, id, id_to_token_.size()));
    return id;
  }

  TokenizerConfig config_;
  BpeModel model_;
  std::vector<AddedToken> added_;  // stable: the matchers point into it
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  NormalizerPtr normalizer_;
  PreTokenizerPtr pre_tokenizer_;
  DecoderPtr decoder_;
  std::vector<std::string> id_to_token_;
  std::set<TokenId> special_ids_;
  std::vector<TokenId> prefix_, suffix_;
  std::optional<TokenId> bos_id_, eos_id_;

  // Words repeat a lot in text, and BPE on a word is the expensive step: remember recent results.
  void encode_word_cached(const std::string& word, std::vector<TokenId>& ids) const {
    if (word.size() > max_cached_word_bytes) {
      model_.encode_word(word, ids);
      return;
    }
    {
      std::shared_lock lock(cache_mutex_);
      const auto found = cache_.find(word);
      if (found != cache_.end()) {
        ids.insert(ids.end(), found->second.begin(), found->second.end());
        return;
      }
    }
    const std::size_t before = ids.size();
    model_.encode_word(word, ids);
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= max_cached_words) cache_.clear();
    cache_.emplace(word, std::vector<TokenId>(ids.begin() + static_cast<std::ptrdiff_t>(before), ids.end()));
  }
  static constexpr std::size_t max_cached_words = 100000;
  static constexpr std::size_t max_cached_word_bytes = 256;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>, StringHash, std::equal_to<>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_json_tokenizer(const std::filesystem::path& tokenizer_json, TokenizerConfig config) {
  return std::make_unique<JsonTokenizer>(tokenizer_json, std::move(config));
}

}  // namespace mill::detail
