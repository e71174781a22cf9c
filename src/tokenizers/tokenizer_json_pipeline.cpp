// The normalizers, pre-tokenizers and decoders of a Hugging Face tokenizer.json (tokenizer_json_pipeline.hpp),
// as the tokenizers library defines them; bpe_tokenizer.cpp assembles them around the BPE model.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <fmt/format.h>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "tokenizer_internal.hpp"
#include "tokenizer_json_pipeline.hpp"

namespace mill::detail {

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw Error(fmt::format("{}: {}", file.string(), what));
}

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

namespace {

bool is_numeric(char32_t c) {  // Rust's char::is_numeric: general category Nd, Nl or No
  if (c == char32_t(-1)) return false;
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_ND && category <= UTF8PROC_CATEGORY_NO;
}

}  // namespace

namespace {

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

// A Sequence normalizer, pre-tokenizer or decoder: its steps read by `read`, absent (null) ones skipped.
template <typename Sequence, typename Read>
std::unique_ptr<Sequence> read_sequence(const json& steps, const std::filesystem::path& file, Read read) {
  auto sequence = std::make_unique<Sequence>();
  for (const auto& step : steps)
    if (auto s = read(step, file)) sequence->steps.push_back(std::move(s));
  return sequence;
}

// ---------------------------------------------------------------------------------------------------------
// Normalizers

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

}  // namespace

NormalizerPtr read_normalizer(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence") return read_sequence<SequenceNormalizer>(node.at("normalizers"), file, read_normalizer);
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
      const std::size_t begin = left ? strip_start(t, 0, is_unicode_whitespace) : 0;
      const std::string_view rest = std::string_view(t).substr(begin);
      return std::string(right ? rest.substr(0, strip_end(rest, is_unicode_whitespace)) : rest);
    });
  }
  fail(file, fmt::format("normalizer type {} is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, "
                         "Lowercase, Prepend, Replace, Strip)",
                         quote_value(type)));
}

namespace {

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizers: split a piece of text into words (and, for ByteLevel, map bytes to characters).

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
  Pattern gpt2;  // GPT-2's regex when use_regex
  void split(std::vector<Word>& words) const override {
    std::vector<Word> out;
    for (auto& word : words) {
      if (add_prefix_space && (word.text.empty() || word.text[0] != ' ')) word.text.insert(0, 1, ' ');
      if (gpt2.regex) {
        split_by_matches(word, find_all(gpt2, word.text), SplitBehavior::isolated, false, out);
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
        split_by_matches(word, find_all({replacement, nullptr}, word.text), SplitBehavior::merged_with_next, false,
                         out);
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

}  // namespace

PreTokenizerPtr read_pre_tokenizer(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence")
    return read_sequence<SequencePreTokenizer>(node.at("pretokenizers"), file, read_pre_tokenizer);
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
    if (node.value("use_regex", true)) byte_level->gpt2.regex = std::make_shared<Regex>(gpt2_pattern, file);
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

namespace {

// ---------------------------------------------------------------------------------------------------------
// Decoders: token strings back to text.

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
    unsigned value = 0;
    const auto [end, error] = std::from_chars(token.data() + 3, token.data() + 5, value, 16);
    return error == std::errc() && end == token.data() + 5 ? static_cast<int>(value) : -1;
  }
  void decode(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      out.push_back(byte_run_text(pending));
      pending.clear();
    };
    for (auto& token : tokens) {
      const int value = byte_value(token);
      if (value >= 0) {
        pending.push_back(static_cast<char>(value));
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
  void decode(std::vector<std::string>& tokens) const override { tokens.assign(1, join(tokens, "")); }
};

struct StripDecoder : Decoder {
  std::string content;
  std::size_t start = 0, stop = 0;
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) {
      for (std::size_t i = 0; i < start && !content.empty() && token.starts_with(content); ++i)
        token.erase(0, content.size());
      for (std::size_t i = 0; i < stop && !content.empty() && token.ends_with(content); ++i)
        token.erase(token.size() - content.size());
    }
  }
};

}  // namespace

DecoderPtr read_decoder(const json& node, const std::filesystem::path& file) {
  if (node.is_null()) return nullptr;
  const std::string type = node.value("type", "");
  if (type == "Sequence") return read_sequence<SequenceDecoder>(node.at("decoders"), file, read_decoder);
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

}  // namespace mill::detail
