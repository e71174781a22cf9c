#pragma once
// Private to the tokenizer implementation: what tokenizer_config.json says, the two tokenizer kinds, and
// the UTF-8 helpers they share.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mill/tokenizers/tokenizer.hpp"

namespace mill::detail {

// The parts of tokenizer_config.json (and special_tokens_map.json) that change encoding or the chat template.
struct TokenizerConfig {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // Explicit add_bos_token / add_eos_token: used for tokenizer.model files only (a tokenizer.json's
  // post_processor decides there, as in transformers 5).
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<std::string> chat_template;
  // Every "*_token" string (bos_token, eos_token, unk_token, pad_token, ...): variables of the chat template.
  std::map<std::string, std::string> special_tokens;
  std::filesystem::path source;  // for messages
};

TokenizerConfig read_tokenizer_config(const std::filesystem::path& folder);

std::unique_ptr<Tokenizer> load_json_tokenizer(const std::filesystem::path& tokenizer_json, TokenizerConfig config);
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model_file,
                                                        TokenizerConfig config);

// What the two tokenizer kinds share: their config, BOS/EOS, the ids add_special_tokens puts around the text's, and
// the chat template (rendering it throws mill::Error naming the problem when there is none or it fails).
class ConfiguredTokenizer : public Tokenizer {
 public:
  explicit ConfiguredTokenizer(TokenizerConfig config) : config_(std::move(config)) {}
  std::optional<TokenId> bos_id() const override { return bos_id_; }
  std::optional<TokenId> eos_id() const override { return eos_id_; }
  bool has_chat_template() const override { return config_.chat_template.has_value(); }
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const override;

 protected:
  TokenizerConfig config_;
  std::vector<TokenId> prefix_, suffix_;
  std::optional<TokenId> bos_id_, eos_id_;
};

// Length of the valid UTF-8 sequence starting at text[pos], or 0 when the bytes there are not one.
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos);
// Decodes the code point at text[pos] (which must start a valid sequence of `length` bytes).
char32_t utf8_code_point(std::string_view text, std::size_t pos, std::size_t length);
void append_utf8(std::string& out, char32_t code_point);
// Invalid UTF-8 replaced by U+FFFD, one per maximal invalid subpart (as Python's and Rust's lossy decoders).
std::string utf8_lossy(std::string_view bytes);
// A run of byte-fallback bytes as text: the bytes when they are valid UTF-8, else one U+FFFD per byte.
std::string byte_run_text(std::string_view bytes);
char32_t last_char(std::string_view text);   // -1 when empty or not valid UTF-8 at the end
char32_t first_char(std::string_view text);  // -1 when empty or not valid UTF-8 at the start
// Where `text` starts from `begin` on / ends once the characters `strip` accepts are skipped (never past a byte that
// is not UTF-8).
std::size_t strip_start(std::string_view text, std::size_t begin, bool (*strip)(char32_t));
std::size_t strip_end(std::string_view text, bool (*strip)(char32_t));
// Every `from` replaced by `to`; the text unchanged when `from` is empty.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);
// Python's str.isspace() for one code point.
bool is_python_space(char32_t code_point);

}  // namespace mill::detail
