#include "mill/model_args.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>

#include "mill/error.hpp"
#include "mill/text.hpp"

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

bool parse_bool(const ModelSpec& spec, const std::string& key, const std::string& value) {
  const auto v = trim(value);
  if (v == "true" || v == "True" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "False" || v == "0" || v == "no") return false;
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

}  // namespace

const std::vector<std::string>& runtime_model_args() {
  static const std::vector<std::string> keys = {"dtype",     "device", "batch_size",     "max_context_length",
                                                "use_chat_template", "revision", "path", "share_prefixes",
                                                "generation_cache"};
  return keys;
}

RuntimeArgs read_runtime_args(const ModelSpec& spec) {
  require_known_args(spec, runtime_model_args(), "the in-process runtime");
  RuntimeArgs args;
  const auto dtype = spec.arg("dtype").value_or("bfloat16");
  if (dtype == "bfloat16" || dtype == "bf16") {
    args.dtype = "bfloat16";
  } else if (dtype == "float16" || dtype == "fp16" || dtype == "half") {
    args.dtype = "float16";
  } else if (dtype == "float32" || dtype == "fp32" || dtype == "float") {
    args.dtype = "float32";
  } else {
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
  if (spec.arg("max_context_length")) args.max_context_length = whole_number(spec, "max_context_length", 0, 1, 1LL << 40);
  if (auto value = spec.arg("share_prefixes")) args.share_prefixes = parse_bool(spec, "share_prefixes", *value);
  if (auto value = spec.arg("generation_cache")) args.generation_cache = parse_bool(spec, "generation_cache", *value);
  if (auto value = spec.arg("use_chat_template")) args.use_chat_template = parse_bool(spec, "use_chat_template", *value);
  return args;
}

DemoArgs read_demo_args(const ModelSpec& spec) {
  require_known_args(spec, {"seed", "batch_size", "delay_ms"}, "mill-demo");
  DemoArgs args;
  args.seed = static_cast<unsigned long long>(whole_number(spec, "seed", 0, 0, 1LL << 62));
  args.batch_size = static_cast<int>(whole_number(spec, "batch_size", 16, 1, 1 << 20));
  args.delay_ms = static_cast<int>(whole_number(spec, "delay_ms", 0, 0, 60000));
  return args;
}

const std::vector<std::string>& api_model_args() {
  static const std::vector<std::string> keys = {"model",       "base_url", "api_key_env", "concurrency", "num_concurrent",
                                                "timeout",     "max_retries", "endpoint", "revision"};
  return keys;
}

const std::vector<std::string>& vllm_model_args() {
  static const std::vector<std::string> keys = {
      "path",    "dtype", "tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "max_model_len",
      "revision", "trust_remote_code", "seed", "port", "startup_timeout", "concurrency", "num_concurrent", "timeout",
      "max_retries", "endpoint"};
  return keys;
}

ApiArgs read_api_args(const ModelSpec& spec) {
  require_known_args(spec, api_model_args(), "the api backend");
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
  require_known_args(spec, vllm_model_args(), "the vllm backend");
  VllmArgs args;
  args.path = spec.arg("path").value_or("");
  if (args.path.empty()) {
    throw Error(fmt::format("model spec {}: vllm needs path=MODEL (a checkpoint folder or a hub name)",
                            quote_value(spec.to_string())));
  }
  args.startup_timeout_s = optional_number(spec, "startup_timeout", 1, 86400);
  args.port = static_cast<int>(whole_number(spec, "port", 0, 0, 65535));
  for (const char* key : {"tensor_parallel_size", "data_parallel_size"}) whole_number(spec, key, 1, 1, 1024);
  optional_number(spec, "gpu_memory_utilization", 0.01, 1);
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
