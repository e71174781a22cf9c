#include "mill/model/model_args.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

// An argument outside `known` names the backend and lists what it accepts, with the closest spelling.
void require_known_args(const ModelSpec& spec, const std::vector<std::string>& known, const std::string& backend) {
  for (const auto& [key, value] : spec.args) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    auto suggestions = closest_names(key, known, 1);
    for (const auto& name : known) {
      const bool same_but_case = std::equal(key.begin(), key.end(), name.begin(), name.end(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
      });
      if (same_but_case) suggestions = {name};  // SEED → seed
    }
    throw Error(fmt::format("model spec {}: {} has no argument {}{} (valid: {})", quote_value(spec.to_string()),
                            backend, quote_value(key),
                            suggestions.empty() ? std::string() : "; did you mean " + suggestions.front() + "?",
                            join(known, ", ")));
  }
}

// A boolean model argument as users write it (true/True/1/yes, false/False/0/no); nullopt for anything else.
std::optional<bool> boolean_arg_value(std::string_view text) {
  if (text == "true" || text == "True" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "False" || text == "0" || text == "no") return false;
  return std::nullopt;
}

bool parse_bool(const ModelSpec& spec, const std::string& key, const std::string& value) {
  if (const auto parsed = boolean_arg_value(trim(value))) return *parsed;
  throw Error(fmt::format("model spec {}: {}={} is not true or false", quote_value(spec.to_string()), key,
                          quote_value(value)));
}

long long whole_number(const ModelSpec& spec, const std::string& key, long long fallback, long long low, long long high) {
  const auto value = spec.arg(key);
  if (!value) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(value->c_str(), &end, 10);
  if (value->empty() || *end != '\0' || errno != 0 || parsed < low || parsed > high) {
    throw Error(fmt::format("model spec {}: {}={} is not a whole number in {}..{}", quote_value(spec.to_string()), key,
                            quote_value(*value), low, high));
  }
  return parsed;
}

std::optional<double> optional_number(const ModelSpec& spec, const std::string& key, double low, double high) {
  if (!spec.arg(key)) return std::nullopt;
  return spec.number_arg(key, 0, low, high);
}

ClientArgs read_client_args(const ModelSpec& spec, int max_concurrency) {
  ClientArgs client;
  client.endpoint = spec.arg("endpoint").value_or("completions");
  if (client.endpoint != "completions" && client.endpoint != "chat") {
    throw Error(fmt::format("model spec {}: endpoint={} is not completions or chat", quote_value(spec.to_string()),
                            quote_value(client.endpoint)));
  }
  const auto concurrency_name = spec.arg("num_concurrent") ? "num_concurrent" : "concurrency";
  if (spec.arg(concurrency_name)) {
    client.concurrency = static_cast<int>(whole_number(spec, concurrency_name, 0, 1, max_concurrency));
  }
  client.timeout_s = optional_number(spec, "timeout", 0.1, 86400);
  if (spec.arg("max_retries")) client.max_retries = static_cast<int>(whole_number(spec, "max_retries", 0, 0, 100));
  return client;
}

// How an argument that determines the numbers is written in a model's identity.
enum class IdentityForm { text, boolean, number, dtype };
struct IdentityArg {
  std::string_view name;
  IdentityForm form;
  const char* default_value;  // in canonical form; nullptr when the backend has none (or it depends on the model)
};

// Per backend, the identity arguments whose spelling can vary. Defaults are the backends' own (docs/backends.md).
const std::vector<IdentityArg>& identity_args(const ModelSpec& spec) {
  static const std::vector<IdentityArg> runtime = {{"dtype", IdentityForm::dtype, "bfloat16"},
                                                   {"max_context_length", IdentityForm::number, nullptr},
                                                   {"use_chat_template", IdentityForm::boolean, "false"}};
  static const std::vector<IdentityArg> demo = {{"seed", IdentityForm::number, "0"},
                                                {"delay_ms", IdentityForm::number, "0"}};
  static const std::vector<IdentityArg> vllm = {{"dtype", IdentityForm::dtype, "auto"},
                                                {"max_model_len", IdentityForm::number, nullptr},
                                                {"trust_remote_code", IdentityForm::boolean, "false"},
                                                {"seed", IdentityForm::number, nullptr},
                                                {"endpoint", IdentityForm::text, "completions"}};
  static const std::vector<IdentityArg> api = {{"endpoint", IdentityForm::text, "completions"},
                                               {"model", IdentityForm::text, ""}};
  if (spec.name == "mill-demo") return demo;
  const auto backend = spec.backend();
  if (backend == "vllm") return vllm;
  if (backend == "api") return api;
  return runtime;
}

// Shortest exact decimal spelling of a number argument; nullopt when it is not a plain number.
std::optional<std::string> canonical_number(std::string_view text) {
  if (text.empty() || text.find_first_not_of("0123456789+-.eE") != std::string_view::npos) return std::nullopt;
  const bool negative = text.front() == '-';
  auto digits = text.substr(text.front() == '-' || text.front() == '+' ? 1 : 0);
  if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos) {
    // A whole number is rewritten as digits, never through a double, so large seeds stay distinct.
    digits.remove_prefix(std::min(digits.find_first_not_of('0'), digits.size() - 1));
    return (negative && digits != "0" ? "-" : "") + std::string(digits);
  }
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(copy.c_str(), &end);
  if (*end != '\0' || errno != 0 || !std::isfinite(value)) return std::nullopt;
  if (value == std::floor(value)) {
    if (std::fabs(value) >= 9007199254740992.0) return std::nullopt;  // beyond 2^53 a double is not exact
    return fmt::format("{}", static_cast<long long>(value));
  }
  return fmt::format("{}", value);
}

std::string canonical_dtype(const std::string& value) {
  if (value == "bf16") return "bfloat16";
  if (value == "fp16" || value == "half") return "float16";
  if (value == "fp32" || value == "float") return "float32";
  return value;
}

std::string canonical_value(IdentityForm form, const std::string& value) {
  switch (form) {
    case IdentityForm::boolean:
      if (const auto parsed = boolean_arg_value(value)) return *parsed ? "true" : "false";
      return value;
    case IdentityForm::number: return canonical_number(value).value_or(value);
    case IdentityForm::dtype: return canonical_dtype(value);
    case IdentityForm::text: return value;
  }
  return value;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> canonical_model_args(const ModelSpec& spec) {
  const auto& execution_only = execution_only_model_args();
  const auto& known = identity_args(spec);
  std::vector<std::pair<std::string, std::string>> kept;
  for (const auto& [key, value] : spec.args) {
    if (std::find(execution_only.begin(), execution_only.end(), key) != execution_only.end()) continue;
    const std::string& name = key;  // (clang 14 cannot capture a structured binding)
    const auto rule = std::find_if(known.begin(), known.end(), [&](const IdentityArg& arg) { return arg.name == name; });
    if (rule == known.end()) {
      kept.emplace_back(key, value);
      continue;
    }
    auto canonical = canonical_value(rule->form, value);
    if (rule->default_value && canonical == rule->default_value) continue;
    kept.emplace_back(key, std::move(canonical));
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

RuntimeArgs read_runtime_args(const ModelSpec& spec) {
  require_known_args(spec,
                     {"dtype", "device", "batch_size", "max_context_length", "use_chat_template", "revision", "path",
                      "share_prefixes", "generation_cache", "threads"},
                     "the in-process runtime");
  RuntimeArgs args;
  const auto dtype = spec.arg("dtype").value_or("bfloat16");
  args.dtype = canonical_dtype(dtype);
  if (args.dtype != "bfloat16" && args.dtype != "float16" && args.dtype != "float32") {
    throw Error(fmt::format("model spec {}: dtype={} is not bfloat16, float16 or float32", quote_value(spec.to_string()),
                            quote_value(dtype)));
  }
  args.device = spec.arg("device").value_or("auto");
  const bool cuda_index = args.device.rfind("cuda:", 0) == 0 && args.device.size() > 5 &&
                          args.device.find_first_not_of("0123456789", 5) == std::string::npos;
  if (args.device != "auto" && args.device != "cpu" && args.device != "cuda" && !cuda_index) {
    throw Error(fmt::format("model spec {}: device={} is not auto, cpu, cuda or cuda:N", quote_value(spec.to_string()),
                            quote_value(args.device)));
  }
  if (auto value = spec.arg("batch_size"); value && *value != "auto") {
    args.batch_size = whole_number(spec, "batch_size", 0, 1, 1LL << 40);
  }
  if (auto value = spec.arg("threads"); value && *value != "auto") {
    args.threads = static_cast<int>(whole_number(spec, "threads", 0, 1, 4096));
  }
  if (spec.arg("max_context_length")) args.max_context_length = whole_number(spec, "max_context_length", 0, 1, 1LL << 40);
  if (auto value = spec.arg("share_prefixes")) args.share_prefixes = parse_bool(spec, "share_prefixes", *value);
  if (auto value = spec.arg("generation_cache")) args.generation_cache = parse_bool(spec, "generation_cache", *value);
  if (auto value = spec.arg("use_chat_template")) args.use_chat_template = parse_bool(spec, "use_chat_template", *value);
  return args;
}

DemoArgs read_demo_args(const ModelSpec& spec) {
  require_known_args(spec, {"seed", "batch_size", "delay_ms", "gpus"}, "mill-demo");
  DemoArgs args;
  args.seed = static_cast<unsigned long long>(whole_number(spec, "seed", 0, 0, 1LL << 62));
  args.batch_size = static_cast<int>(whole_number(spec, "batch_size", 16, 1, 1 << 20));
  args.delay_ms = static_cast<int>(whole_number(spec, "delay_ms", 0, 0, 60000));
  args.gpus = static_cast<int>(whole_number(spec, "gpus", 1, 0, 64));
  return args;
}

ApiArgs read_api_args(const ModelSpec& spec) {
  require_known_args(spec,
                     {"model", "base_url", "api_key_env", "concurrency", "num_concurrent", "timeout", "max_retries",
                      "endpoint", "revision"},
                     "the api backend");
  ApiArgs args;
  args.model = spec.arg("model").value_or("");
  args.base_url = spec.arg("base_url");
  args.api_key_env = spec.arg("api_key_env").value_or("OPENAI_API_KEY");
  if (args.api_key_env.empty()) {
    throw Error(fmt::format("model spec {}: api_key_env is empty (the name of the variable that holds the key)",
                            quote_value(spec.to_string())));
  }
  args.client = read_client_args(spec, 1024);
  return args;
}

VllmArgs read_vllm_args(const ModelSpec& spec) {
  require_known_args(spec,
                     {"path", "dtype", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
                      "gpu_memory_utilization", "max_model_len", "revision", "trust_remote_code", "seed", "port",
                      "startup_timeout", "concurrency", "num_concurrent", "timeout", "max_retries", "endpoint"},
                     "the vllm backend");
  VllmArgs args;
  args.path = spec.arg("path").value_or("");
  if (args.path.empty()) {
    throw Error(fmt::format("model spec {}: vllm needs path=MODEL (a checkpoint folder or a hub name)",
                            quote_value(spec.to_string())));
  }
  args.startup_timeout_s = optional_number(spec, "startup_timeout", 1, 86400);
  args.port = static_cast<int>(whole_number(spec, "port", 0, 0, 65535));
  args.tensor_parallel_size = static_cast<int>(whole_number(spec, "tensor_parallel_size", 1, 1, 1024));
  args.pipeline_parallel_size = static_cast<int>(whole_number(spec, "pipeline_parallel_size", 1, 1, 1024));
  args.data_parallel_size = static_cast<int>(whole_number(spec, "data_parallel_size", 1, 1, 1024));
  args.parallelism_given = spec.arg("tensor_parallel_size") || spec.arg("pipeline_parallel_size") ||
                           spec.arg("data_parallel_size");
  args.gpu_memory_utilization = optional_number(spec, "gpu_memory_utilization", 0.01, 1);
  if (spec.arg("max_model_len")) args.max_model_len = whole_number(spec, "max_model_len", 0, 1, 1LL << 40);
  args.dtype = spec.arg("dtype").value_or("auto");
  args.client = read_client_args(spec, 4096);
  return args;
}

void check_model_args(const ModelSpec& spec) {
  if (spec.name == "mill-demo") {
    read_demo_args(spec);
    return;
  }
  const auto backend = spec.backend();
  if (backend == "api") {
    read_api_args(spec);
  } else if (backend == "vllm") {
    read_vllm_args(spec);
  } else {
    read_runtime_args(spec);
  }
}

}  // namespace mill
