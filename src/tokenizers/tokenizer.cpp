// Tokenizer loading (which file a checkpoint folder offers decides the implementation), tokenizer_config.json,
// chat templates and the context/continuation split.
#include "mill/tokenizers/tokenizer.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mill/tokenizers/chat_template.hpp"
#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
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
  if (!config.chat_template) config.chat_template = read_file_if_exists(folder / "chat_template.jinja");
  if (!config.chat_template) {
    if (const auto root = read_json_file(folder / "chat_template.json"))
      if (root->is_object() && root->contains("chat_template") && root->at("chat_template").is_string())
        config.chat_template = root->at("chat_template").get<std::string>();
  }
  if (config.special_tokens.count("bos_token")) config.bos_token = config.special_tokens.at("bos_token");
  if (config.special_tokens.count("eos_token")) config.eos_token = config.special_tokens.at("eos_token");
  return config;
}

std::string ConfiguredTokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                                     bool add_generation_prompt) const {
  if (!config_.chat_template)
    throw Error(fmt::format("{}: has no chat_template, so use_chat_template=true cannot be honoured for this model",
                            config_.source.string()));
  const auto chat_template = ChatTemplate::parse(*config_.chat_template, config_.source.string());
  nlohmann::ordered_json context;
  context["messages"] = nlohmann::ordered_json::array();
  for (const auto& message : messages)
    context["messages"].push_back({{"role", message.role}, {"content", message.content}});
  context["add_generation_prompt"] = add_generation_prompt;
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  for (const auto& [name, value] : config_.special_tokens) context[name] = value;
  return chat_template.render(context);
}

// ---------------------------------------------------------------------------------------------------------
// UTF-8

namespace {

struct Utf8Prefix {
  std::size_t valid;   // bytes from pos that begin a valid sequence (0 when the byte there cannot lead one)
  std::size_t needed;  // bytes the sequence its lead byte announces needs
};

Utf8Prefix utf8_prefix(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return {1, 1};
  std::size_t needed;
  unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte (excluding overlongs and surrogates)
  if (lead >= 0xC2 && lead <= 0xDF) {
    needed = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    needed = 3;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    needed = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return {0, 1};
  }
  std::size_t valid = 1;
  while (valid < needed && pos + valid < text.size()) {
    const unsigned char b = byte(pos + valid);
    if (valid == 1 ? (b < low || b > high) : (b & 0xC0) != 0x80) break;
    ++valid;
  }
  return {valid, needed};
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  const auto prefix = utf8_prefix(text, pos);
  return prefix.valid == prefix.needed ? prefix.valid : 0;
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
    const auto prefix = utf8_prefix(bytes, pos);
    if (prefix.valid == prefix.needed) {
      out.append(bytes.substr(pos, prefix.valid));
    } else {
      out += "\xEF\xBF\xBD";  // for the maximal prefix of a valid sequence (at least one byte)
    }
    pos += std::max<std::size_t>(prefix.valid, 1);
  }
  return out;
}

std::string byte_run_text(std::string_view bytes) {
  if (utf8_lossy(bytes) == bytes) return std::string(bytes);
  std::string replacements;
  for (std::size_t i = 0; i < bytes.size(); ++i) replacements += "\xEF\xBF\xBD";
  return replacements;
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

std::size_t strip_start(std::string_view text, std::size_t begin, bool (*strip)(char32_t)) {
  while (begin < text.size() && strip(first_char(text.substr(begin)))) begin += utf8_sequence_length(text, begin);
  return begin;
}

std::size_t strip_end(std::string_view text, bool (*strip)(char32_t)) {
  for (char32_t c = last_char(text); strip(c); c = last_char(text))
    text.remove_suffix(c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4);
  return text.size();
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
  const auto trimmed_context = context.substr(0, detail::strip_end(context, detail::is_python_space));
  std::string whole(context);
  whole.append(continuation);
  const auto whole_ids = tokenizer.encode(whole, add_special_tokens);
  result.context = tokenizer.encode(trimmed_context, add_special_tokens);
  const std::size_t split = std::min(result.context.size(), whole_ids.size());
  result.continuation.assign(whole_ids.begin() + static_cast<std::ptrdiff_t>(split), whole_ids.end());
  return result;
}

}  // namespace mill
