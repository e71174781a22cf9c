#pragma once
// Private to the tokenizers stage: the parts of a tokenizer.json pipeline (normalizers, pre-tokenizers, decoders)
// that bpe_tokenizer.cpp assembles and tokenizer_json_pipeline.cpp reads, and the field readers both use.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer_internal.hpp"

namespace mill::detail {

using json = nlohmann::json;

// Ids index dense tables, so a hostile or corrupt file must not size them: no tokenizer comes near this.
constexpr std::int64_t max_token_id = (1 << 22) - 1;

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what);
// An integer field in [low, high]. nlohmann's get<int> would convert a float or a wider integer unchecked
// (undefined behaviour for 1e300, a silent wrap for 2^32).
std::int64_t read_integer(const json& node, const std::filesystem::path& file, std::string_view what, std::int64_t low,
                          std::int64_t high);
TokenId read_token_id(const json& node, const std::filesystem::path& file, std::string_view what);

bool is_unicode_whitespace(char32_t c);  // Rust's char::is_whitespace (Unicode White_Space)
bool is_alphanumeric(char32_t c);

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

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};
using NormalizerPtr = std::unique_ptr<Normalizer>;

struct Word {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the original input (Metaspace's prepend_scheme "first")
};

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual void split(std::vector<Word>& words) const = 0;
};
using PreTokenizerPtr = std::unique_ptr<PreTokenizer>;

struct Decoder {
  virtual ~Decoder() = default;
  virtual void decode(std::vector<std::string>& tokens) const = 0;
};
using DecoderPtr = std::unique_ptr<Decoder>;

NormalizerPtr read_normalizer(const json& node, const std::filesystem::path& file);
PreTokenizerPtr read_pre_tokenizer(const json& node, const std::filesystem::path& file);
DecoderPtr read_decoder(const json& node, const std::filesystem::path& file);

}  // namespace mill::detail
