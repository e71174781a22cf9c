// Chat templates come inside downloaded tokenizer_config.json files: parsing any text must give a template or a
// mill::Error, and rendering a template on an ordinary conversation must finish with text or a mill::Error.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "mill/tokenizers/chat_template.hpp"
#include "mill/base/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::ordered_json variables = {
      {"messages",
       {{{"role", "system"}, {"content", "Be brief."}},
        {{"role", "user"}, {"content", "2+2?"}},
        {{"role", "assistant"}, {"content", "4"}},
        {{"role", "user"}, {"content", "caf\xc3\xa9 <s> {{ x }}"}}}},
      {"add_generation_prompt", true},
      {"bos_token", "<s>"},
      {"eos_token", "</s>"},
      {"tools", nullptr},
      {"documents", nullptr}};
  try {
    const auto chat_template =
        mill::ChatTemplate::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.jinja");
    (void)chat_template.render(variables);
  } catch (const mill::Error&) {
  }
  return 0;
}
