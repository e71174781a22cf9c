#pragma once
// Small pieces of the OpenAI-compatible HTTP protocol shared by the client (api/vllm backends) and the server
// (`mill serve`): text offsets, base URLs, error bodies, and keeping secrets out of messages. docs/backends.md.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mill {

// OpenAI's `text_offset` counts characters (Unicode code points), not bytes. Invalid UTF-8 bytes count as one each.
std::size_t utf8_length(std::string_view text);
// The number of bytes that hold the first `code_points` characters of `text` (all of it when it is shorter).
std::size_t utf8_prefix_bytes(std::string_view text, std::size_t code_points);

// "http://host:8000" or "http://host:8000/v1/" -> "http://host:8000/v1"; a URL with another path keeps it.
// Throws mill::Error for anything that is not an http(s) URL.
std::string normalize_base_url(std::string_view text);
// The server root that /health lives under: the base URL without a trailing "/v1".
std::string server_root(std::string_view base_url);
// A URL fit for logs and provenance: no user:password@ part, no query string.
std::string redact_url(std::string_view url);
// `text` with every occurrence of `secret` replaced by "***" (no-op for an empty secret).
std::string redact_secret(std::string text, std::string_view secret);

// {"error": {"message", "type", "code"}}: the error body OpenAI and vLLM send.
nlohmann::json error_body(const std::string& message, const std::string& type, int code);
// The message of an error body, or the first 300 bytes of a body that is not one.
std::string error_message_of(std::string_view body);

}  // namespace mill
