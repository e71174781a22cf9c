#pragma once
// The Jinja subset that chat templates in tokenizer_config.json use (Llama-2/3, Mistral, Qwen2/ChatML, Gemma,
// Zephyr, ...), rendered as transformers renders them: trim_blocks and lstrip_blocks on, loop controls on,
// raise_exception(), strftime_now(), namespace(), and tojson without ASCII escaping.
// Anything outside the subset fails when parsed, with the line and the construct named.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mill {

class ChatTemplate {
 public:
  // `origin` names the template in messages (e.g. the tokenizer_config.json path).
  static ChatTemplate parse(std::string_view source, std::string origin = "chat template");

  // Renders with the given top-level variables (messages, add_generation_prompt, bos_token, ...).
  // raise_exception(message) in the template throws mill::Error carrying the message.
  std::string render(const nlohmann::ordered_json& variables) const;

  struct Program;

 private:
  explicit ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const Program> program_;
};

}  // namespace mill
