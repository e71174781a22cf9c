#pragma once
// Tokenizers compatible with Hugging Face tokenizer.json (byte-level BPE as in GPT-2/Llama-3/Qwen2, and
// SentencePiece-style BPE with byte fallback as in Llama-2/Mistral) and SentencePiece tokenizer.model files.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

using TokenId = std::int32_t;

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads from a checkpoint folder: tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) or
  // tokenizer.model. Problems throw mill::Error naming the file.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& folder);

  // add_special_tokens: BOS/EOS as the tokenizer config says (e.g. Llama adds BOS).
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const = 0;
  virtual std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const = 0;

  virtual std::optional<TokenId> bos_id() const = 0;
  virtual std::optional<TokenId> eos_id() const = 0;
  virtual std::size_t vocab_size() const = 0;

  // Whether tokenizer_config.json has a chat_template.
  virtual bool has_chat_template() const = 0;
  // Renders the chat template from tokenizer_config.json; throws mill::Error naming an unsupported construct.
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const = 0;
};

// Splits context+continuation the way the reference harnesses do: encode the whole string, then take the
// tokens after the context's own token count as the continuation (a trailing space of the context moves to
// the continuation first).
struct ContextContinuationTokens {
  std::vector<TokenId> context;
  std::vector<TokenId> continuation;
};
ContextContinuationTokens encode_pair(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation,
                                      bool add_special_tokens);

}  // namespace mill
