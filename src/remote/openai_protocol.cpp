#include "mill/remote/openai_protocol.hpp"

#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {
bool is_continuation_byte(unsigned char byte) { return (byte & 0xC0) == 0x80; }
}  // namespace

// A character starts at every byte that is not a UTF-8 continuation byte; stray continuation bytes at the very
// start form one character. Both functions below follow this one rule, so they always agree.
std::size_t utf8_length(std::string_view text) {
  return code_point_count(text) + (!text.empty() && is_continuation_byte(static_cast<unsigned char>(text[0])));
}

std::size_t utf8_prefix_bytes(std::string_view text, std::size_t code_points) {
  std::size_t bytes = 0;
  for (std::size_t seen = 0; seen < code_points && bytes < text.size(); ++seen) {
    ++bytes;
    while (bytes < text.size() && is_continuation_byte(static_cast<unsigned char>(text[bytes]))) ++bytes;
  }
  return bytes;
}

std::string normalize_base_url(std::string_view text) {
  std::string url = trim(text);
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos ||
      (url.substr(0, scheme_end) != "http" && url.substr(0, scheme_end) != "https") || url.size() == scheme_end + 3) {
    throw Error(fmt::format("base_url {} is not an http:// or https:// URL (e.g. http://127.0.0.1:8000/v1)",
                            quote_value(redact_url(text))));
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  const auto path_start = url.find('/', scheme_end + 3);
  if (path_start == std::string::npos) url += "/v1";
  return url;
}

std::string server_root(std::string_view base_url) {
  std::string root(base_url);
  if (root.size() >= 3 && root.compare(root.size() - 3, 3, "/v1") == 0) root.resize(root.size() - 3);
  return root;
}

std::string redact_url(std::string_view url) {
  std::string text(url);
  if (const auto query = text.find('?'); query != std::string::npos) text.resize(query);
  const auto scheme_end = text.find("://");
  const auto host_start = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  const auto path_start = text.find('/', host_start);
  const auto at = text.rfind('@', path_start == std::string::npos ? std::string::npos : path_start);
  if (at != std::string::npos && at >= host_start) text.erase(host_start, at + 1 - host_start);
  return text;
}

std::string redact_secret(std::string text, std::string_view secret) {
  if (secret.empty()) return text;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
  return text;
}

nlohmann::json error_body(const std::string& message, const std::string& type, int code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}};
}

std::string error_message_of(std::string_view body) {
  const auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error")) {
    const auto& error = parsed["error"];
    if (error.is_object() && error.contains("message") && error["message"].is_string()) {
      return one_line(error["message"].get<std::string>());
    }
    if (error.is_string()) return one_line(error.get<std::string>());
  }
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()) {
    return one_line(parsed["message"].get<std::string>());
  }
  std::string text(body.substr(0, 300));
  if (body.size() > 300) text += "...";
  return one_line(text);
}

}  // namespace mill
