// Tokenizer loading (which file a checkpoint folder offers decides the implementation), tokenizer_config.json,
// chat templates and the context/continuation split.
#include "mill/tokenizers/tokenizer.hpp"

#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mill/tokenizers/chat_template.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "tokenizer_internal.hpp"

namespace mill {
namespace detail {
namespace {

using json = nlohmann::ordered_json;

std::optional<json> read_json_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: is not valid JSON ({})", file.string(), e.what()));
  }
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A token field is either "text" or an AddedToken object {"content": "text", ...}.
std::optional<std::string> token_text(const json& node) {
  if (node.is_string()) return node.get<std::string>();
  if (node.is_object() && node.contains("content") && node.at("content").is_string())
    return node.at("content").get<std::string>();
  return std::nullopt;
}

void take_special_tokens(const json& node, TokenizerConfig& config) {
  if (!node.is_object()) return;
  for (const auto& [key, value] : node.items()) {
    if (key.size() < 6 || key.compare(key.size() - 6, 6, "_token") != 0) continue;
    if (config.special_tokens.count(key)) continue;
    if (const auto text = token_text(value)) config.special_tokens[key] = *text;
  }
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::filesystem::path& folder) {
  TokenizerConfig config;
  config.source = folder / "tokenizer_config.json";
  if (const auto root = read_json_file(config.source)) {
    if (!root->is_object()) throw Error(fmt::format("{}: must be a JSON object", config.source.string()));
    take_special_tokens(*root, config);
    for (const char* key : {"add_bos_token", "add_eos_token"}) {
      if (!root->contains(key) || root->at(key).is_null()) continue;
      if (!root->at(key).is_boolean())
        throw Error(fmt::format("{}: {} must be true or false, not {}", config.source.string(), key, root->at(key).dump()));
      (std::string(key) == "add_bos_token" ? config.add_bos_token : config.add_eos_token) = root->at(key).get<bool>();
    }
    if (root->contains("chat_template")) {
      const auto& node = root->at("chat_template");
      if (node.is_string()) {
        config.chat_template = node.get<std::string>();
      } else if (node.is_array()) {  // named templates: use "default", else the first
        for (const auto& entry : node) {
          if (!entry.is_object() || !entry.contains("template")) continue;
          if (!config.chat_template || entry.value("name", "") == "default")
            config.chat_template = entry.at("template").get<std::string>();
        }
      }
    }
  }
  if (const auto map = read_json_file(folder / "special_tokens_map.json")) take_special_tokens(*map, config);
  // Newer checkpoints keep the template beside the config.
  if (!config.chat_template && std::filesystem::exists(folder / "chat_template.jinja"))
    config.chat_template = read_file(folder / "chat_template.jinja");
  if (!config.chat_template) {
    if (const auto root = read_json_file(folder / "chat_template.json"))
      if (root->is_object() && root->contains("chat_template") && root->at("chat_template").is_string())
        config.chat_template = root->at("chat_template").get<std::string>();
  }
  if (config.special_tokens.count("bos_token")) config.bos_token = config.special_tokens.at("bos_token");
  if (config.special_tokens.count("eos_token")) config.eos_token = config.special_tokens.at("eos_token");
  return config;
}

std::string render_chat_template(const TokenizerConfig& config, const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) {
  if (!config.chat_template)
    throw Error(fmt::format("{}: has no chat_template, so use_chat_template=true cannot be honoured for this model",
                            config.source.string()));
  const auto chat_template = ChatTemplate::parse(*config.chat_template, config.source.string());
  nlohmann::ordered_json context;
  context["messages"] = nlohmann::ordered_json::array();
  for (const auto& message : messages)
    context["messages"].push_back({{"role", message.role}, {"content", message.content}});
  context["add_generation_prompt"] = add_generation_prompt;
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  for (const auto& [name, value] : config.special_tokens) context[name] = value;
  return chat_template.render(context);
}

// ---------------------------------------------------------------------------------------------------------
// UTF-8

std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  std::size_t length;
  unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte (excluding overlongs and surrogates)
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (pos + length > text.size()) return 0;
  if (byte(pos + 1) < low || byte(pos + 1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i)
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
  return length;
}

char32_t utf8_code_point(std::string_view text, std::size_t pos, std::size_t length) {
  const auto byte = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i])); };
  switch (length) {
    case 1: return byte(0);
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default: return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const std::size_t length = utf8_sequence_length(bytes, pos);
    if (length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
      continue;
    }
    // Skip the maximal prefix of a valid sequence (at least one byte), then emit one replacement character.
    std::size_t skip = 1;
    const unsigned char lead = static_cast<unsigned char>(bytes[pos]);
    std::size_t expected = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 1;
    if (expected > 1) {
      unsigned char low = 0x80, high = 0xBF;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
      for (std::size_t i = 1; i < expected && pos + i < bytes.size(); ++i) {
        const unsigned char b = static_cast<unsigned char>(bytes[pos + i]);
        const bool ok = i == 1 ? (b >= low && b <= high) : (b & 0xC0) == 0x80;
        if (!ok) break;
        skip = i + 1;
      }
    }
    out += "\xEF\xBF\xBD";
    pos += skip;
  }
  return out;
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace detail

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& folder) {
  std::filesystem::path directory = folder;
  std::filesystem::path file;
  if (std::filesystem::is_regular_file(folder)) {  // a tokenizer.json or tokenizer.model named directly
    directory = folder.parent_path();
    file = folder;
  } else if (std::filesystem::is_directory(folder)) {
    if (std::filesystem::exists(folder / "tokenizer.json")) {
      file = folder / "tokenizer.json";
    } else if (std::filesystem::exists(folder / "tokenizer.model")) {
      file = folder / "tokenizer.model";
    } else {
      throw Error(fmt::format("{}: has neither tokenizer.json nor tokenizer.model", folder.string()));
    }
  } else {
    throw Error(fmt::format("{}: tokenizer folder does not exist", folder.string()));
  }
  auto config = detail::read_tokenizer_config(directory);
  if (file.extension() == ".model") return detail::load_sentencepiece_tokenizer(file, std::move(config));
  return detail::load_json_tokenizer(file, std::move(config));
}

ContextContinuationTokens encode_pair(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation,
                                      bool add_special_tokens) {
  ContextContinuationTokens result;
  if (context.empty()) {
    // lm-evaluation-harness scores an empty context against its prefix token: BOS, else EOS.
    const auto prefix = tokenizer.bos_id() ? tokenizer.bos_id() : tokenizer.eos_id();
    if (prefix) result.context.push_back(*prefix);
    result.continuation = tokenizer.encode(continuation, add_special_tokens);
    return result;
  }
  // Trailing whitespace of the context (Python's str.rstrip) belongs to the continuation.
  std::size_t context_end = context.size();
  while (context_end > 0) {
    std::size_t start = context_end - 1;
    while (start > 0 && (static_cast<unsigned char>(context[start]) & 0xC0) == 0x80 && context_end - start < 4) --start;
    const std::size_t length = detail::utf8_sequence_length(context, start);
    if (length != context_end - start || !detail::is_python_space(detail::utf8_code_point(context, start, length))) break;
    context_end = start;
  }
  std::string whole(context);
  whole.append(continuation);
  const auto trimmed_context = context.substr(0, context_end);
  const auto whole_ids = tokenizer.encode(whole, add_special_tokens);
  result.context = tokenizer.encode(trimmed_context, add_special_tokens);
  const std::size_t split = std::min(result.context.size(), whole_ids.size());
  result.continuation.assign(whole_ids.begin() + static_cast<std::ptrdiff_t>(split), whole_ids.end());
  return result;
}

}  // namespace mill
