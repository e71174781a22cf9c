#pragma once
// The model arguments each backend accepts (docs/backends.md), read and checked without loading the backend. The
// backends read their arguments through these functions, so `mill schedule` rejects at plan time exactly what
// `mill eval` would reject on the node, with the same message.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mill/model/model_spec.hpp"

namespace mill {

// The in-process runtime (libtorch): local checkpoint folders and Hugging Face cache ids.
struct RuntimeArgs {
  std::string dtype = "bfloat16";  // bfloat16, float16 or float32 (aliases bf16, fp16, half, fp32, float)
  std::string device = "auto";     // auto, cpu, cuda or cuda:N
  std::int64_t batch_size = 0;     // 0: auto
  int threads = 0;                 // CPU threads; 0: the CPUs this job was given
  std::optional<std::int64_t> max_context_length;
  std::optional<bool> share_prefixes;
  std::optional<bool> generation_cache;
  bool use_chat_template = false;
};
RuntimeArgs read_runtime_args(const ModelSpec& spec);

// The built-in demo model, `mill-demo[seed=N,batch_size=B,delay_ms=D]`.
struct DemoArgs {
  unsigned long long seed = 0;
  int batch_size = 16;
  int delay_ms = 0;
  int gpus = 1;  // what an array element asks for: it stands in for a one-GPU model in smoke tests of a profile
};
DemoArgs read_demo_args(const ModelSpec& spec);

// What the api (also spelled litellm) and vllm backends share: the OpenAI-compatible client. Unset values take
// the backend's defaults.
struct ClientArgs {
  std::string endpoint = "completions";  // or chat
  std::optional<int> concurrency;        // concurrency, or its lm-eval spelling num_concurrent
  std::optional<double> timeout_s;
  std::optional<int> max_retries;
};
struct ApiArgs {
  std::string model;  // empty: the first model the server lists
  std::optional<std::string> base_url;
  std::string api_key_env = "OPENAI_API_KEY";
  ClientArgs client;
};
struct VllmArgs {
  std::string path;  // a checkpoint folder or a hub id
  std::string dtype = "auto";  // auto: the checkpoint's torch_dtype
  int tensor_parallel_size = 1;
  int pipeline_parallel_size = 1;
  int data_parallel_size = 1;
  bool parallelism_given = false;  // any of the three was written in the spec
  std::optional<double> gpu_memory_utilization;
  std::optional<std::int64_t> max_model_len;
  std::optional<double> startup_timeout_s;
  int port = 0;  // 0: any free port
  ClientArgs client;
};
ApiArgs read_api_args(const ModelSpec& spec);
VllmArgs read_vllm_args(const ModelSpec& spec);

// Reads the spec's arguments with the backend that will run it; the first problem throws mill::Error.
void check_model_args(const ModelSpec& spec);

// The arguments that determine a model's numbers, in one spelling, sorted by name (ModelSpec::identity uses them):
// execution-only arguments go, so do arguments equal to the backend's default (dtype=bfloat16 for the in-process
// runtime); booleans become true/false, numbers their shortest decimal form (seed=01 → 1, 1.0 → 1) and dtype
// aliases their full name (bf16 → bfloat16). Arguments the backend does not know are kept as typed.
std::vector<std::pair<std::string, std::string>> canonical_model_args(const ModelSpec& spec);

}  // namespace mill
