#include "mill/model/model_spec.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model_args.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {
bool valid_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

bool needs_quotes(std::string_view value) {
  return value.find_first_of(",]\"[= \t\r\n") != std::string_view::npos || value.empty();
}

// A local checkpoint named by a relative path becomes absolute: array workers run in the sweep directory, and
// the job key must not depend on the directory the user typed the command in.
void make_local_path_absolute(std::string& value) {
  if (value.empty() || value.front() == '/') return;
  const bool explicitly_relative =
      value == "." || value == ".." || value.rfind("./", 0) == 0 || value.rfind("../", 0) == 0;
  std::error_code ec;
  if (!explicitly_relative && !std::filesystem::is_directory(value, ec)) return;
  auto absolute = std::filesystem::absolute(value, ec).lexically_normal().string();
  if (ec) return;
  // Trailing slashes go, except one that ends a name in whitespace ("dir /"): the name is trimmed when parsed
  // again, so without the slash the printed spec would name another directory.
  while (absolute.size() > 1 && absolute.back() == '/' &&
         std::string_view(" \t\r\n").find(absolute[absolute.size() - 2]) == std::string_view::npos)
    absolute.pop_back();
  value = absolute;
}

std::string render_value(std::string_view value) {
  if (!needs_quotes(value)) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}
}  // namespace

ModelSpec ModelSpec::parse(std::string_view text) {
  auto fail = [&](const std::string& what) -> ModelSpec {
    throw Error(fmt::format("invalid model spec {}: {} (expected NAME_OR_PATH or NAME_OR_PATH[key=value,...])",
                            quote_value(text), what));
  };
  ModelSpec spec;
  const auto open = text.find('[');
  spec.name = trim(text.substr(0, open));
  if (spec.name.empty()) return fail("the model name is empty");
  if (spec.name.find(']') != std::string::npos) return fail("']' without '['");
  if (spec.name.find_first_of("\n\r") != std::string::npos) return fail("the name contains a line break");
  if (open == std::string_view::npos) {
    if (spec.backend() == "local") make_local_path_absolute(spec.name);
    return spec;
  }
  if (text.back() != ']') return fail("it must end with ']'");
  const auto body = text.substr(open + 1, text.size() - open - 2);
  std::size_t i = 0;
  while (i < body.size()) {
    const auto equals = body.find('=', i);
    if (equals == std::string_view::npos) return fail(fmt::format("argument {} has no '='", quote_value(body.substr(i))));
    const auto key = trim(body.substr(i, equals - i));
    if (!valid_key(key)) return fail(fmt::format("argument name {} is not a valid key", quote_value(key)));
    if (spec.arg(key)) return fail(fmt::format("argument {} is given twice", key));
    i = equals + 1;
    while (i < body.size() && body[i] == ' ') ++i;
    std::string value;
    if (i < body.size() && body[i] == '"') {
      ++i;
      bool closed = false;
      while (i < body.size()) {
        if (body[i] == '\\' && i + 1 < body.size()) {
          value += body[i + 1];
          i += 2;
        } else if (body[i] == '"') {
          closed = true;
          ++i;
          break;
        } else {
          value += body[i++];
        }
      }
      if (!closed) return fail(fmt::format("the quoted value of {} is not closed", key));
      while (i < body.size() && body[i] == ' ') ++i;
      if (i < body.size() && body[i] != ',') return fail(fmt::format("unexpected text after the quoted value of {}", key));
    } else {
      const auto comma = body.find(',', i);
      const auto end = comma == std::string_view::npos ? body.size() : comma;
      value = trim(body.substr(i, end - i));
      if (value.find_first_of("[]\"") != std::string::npos) {
        return fail(fmt::format("the value of {} contains '[', ']' or '\"'; put it in double quotes", key));
      }
      i = end;
    }
    if (key == "path") make_local_path_absolute(value);
    spec.args.emplace_back(key, value);
    if (i < body.size()) ++i;  // the comma
  }
  if (spec.backend() == "local") make_local_path_absolute(spec.name);
  return spec;
}

std::optional<std::string> ModelSpec::arg(std::string_view key) const {
  for (const auto& [k, v] : args) {
    if (k == key) return v;
  }
  return std::nullopt;
}

double ModelSpec::number_arg(std::string_view key, double fallback, double low, double high) const {
  const auto value = arg(key);
  if (!value) return fallback;
  char* end = nullptr;
  const double parsed = std::strtod(value->c_str(), &end);
  if (value->empty() || *end != '\0' || !(parsed >= low && parsed <= high)) {
    throw Error(fmt::format("model spec {}: {}={} is not a number in {}..{}", quote_value(to_string()), key,
                            quote_value(*value), low, high));
  }
  return parsed;
}

std::string ModelSpec::backend() const {
  if (name == "vllm") return "vllm";
  if (name == "api" || name == "litellm") return "api";
  return "local";
}

std::string ModelSpec::to_string() const {
  if (args.empty()) return name;
  std::vector<std::string> parts;
  for (const auto& [k, v] : args) parts.push_back(k + "=" + render_value(v));
  return name + "[" + join(parts, ",") + "]";
}

const std::vector<std::string>& execution_only_model_args() {
  static const std::vector<std::string> keys = {
      "batch_size", "device",  "concurrency", "num_concurrent", "port", "timeout", "max_retries",
      "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "gpus", "gpu_memory_utilization", "startup_timeout", "api_key_env",
      // The runtime's prefix sharing and generation cache only save work (tests/runtime_test.cpp holds them to that).
      "share_prefixes", "generation_cache",
      // CPU threads change only the order of floating-point sums, as batch_size does.
      "threads"};
  return keys;
}

std::string ModelSpec::identity() const {
  // "litellm" is another spelling of the api backend's name.
  const ModelSpec canonical{backend() == "api" ? "api" : name, canonical_model_args(*this)};
  return canonical.to_string();
}

std::string resolve_model_revision(const ModelSpec& spec) {
  if (auto revision = spec.arg("revision")) return *revision;
  const std::string model = spec.arg("path").value_or(spec.arg("model").value_or(spec.name));
  std::error_code ec;
  if (std::filesystem::is_directory(model, ec)) return "local";
  if (model.find('/') == std::string::npos || model.front() == '/' || model.front() == '.') return kUnresolvedRevision;
  const auto hub = hub_cache_dir();
  if (hub.empty()) return kUnresolvedRevision;
  try {
    if (auto ref = read_file_if_exists(hub_repo_dir(hub, model) / "refs" / "main")) return trim(*ref);
  } catch (const Error&) {
  }
  return kUnresolvedRevision;
}

}  // namespace mill
