#include "mill/sweep/resources.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model_args.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace fs = std::filesystem;

namespace {

constexpr double kGibibyte = 1024.0 * 1024 * 1024;
// Beyond weights and one request's KV cache: activations, the CUDA context and allocator slack.
constexpr double kOverheadFraction = 0.10;
constexpr double kOverheadBytes = 1.5 * kGibibyte;
// vLLM's own default share of a GPU it may use.
constexpr double kVllmDefaultUtilization = 0.9;
// The context a request may reach when neither the spec nor the config bounds it lower.
constexpr double kDefaultContextCap = 8192;

double dtype_bytes(const std::string& dtype) {
  if (dtype == "float32" || dtype == "fp32" || dtype == "float") return 4;
  if (dtype == "float64") return 8;
  return 2;  // bfloat16, float16 and their aliases
}

std::optional<nlohmann::json> read_config(const fs::path& folder) {
  std::ifstream in(folder / "config.json");
  if (!in) return std::nullopt;
  auto config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object()) return std::nullopt;
  // Multimodal configs keep the language model's numbers under text_config.
  if (config.contains("text_config") && config["text_config"].is_object() && !config.contains("num_hidden_layers")) {
    auto text = config["text_config"];
    if (!text.contains("torch_dtype") && config.contains("torch_dtype")) text["torch_dtype"] = config["torch_dtype"];
    return text;
  }
  return config;
}

double number_or(const nlohmann::json& config, const char* key, double fallback) {
  const auto it = config.find(key);
  return it != config.end() && it->is_number() ? it->get<double>() : fallback;
}

// One request's keys and values over every layer, at `context` tokens.
double kv_cache_bytes(const nlohmann::json& config, double context, double bytes_per_value) {
  const double layers = number_or(config, "num_hidden_layers", number_or(config, "n_layer", 0));
  const double heads = number_or(config, "num_attention_heads", number_or(config, "n_head", 0));
  const double kv_heads = number_or(config, "num_key_value_heads", heads);
  const double hidden = number_or(config, "hidden_size", number_or(config, "n_embd", 0));
  const double head_dim = number_or(config, "head_dim", heads > 0 ? hidden / heads : 0);
  return 2 * layers * kv_heads * head_dim * context * bytes_per_value;
}

ModelFootprint footprint_of(const fs::path& folder, const std::string& dtype_arg, std::optional<double> context_arg) {
  ModelFootprint footprint;
  footprint.parameters = checkpoint_parameters(folder);
  const auto config = read_config(folder).value_or(nlohmann::json::object());
  footprint.dtype = dtype_arg;
  if (dtype_arg == "auto") {
    // vLLM's auto: the checkpoint's torch_dtype, with float32 checkpoints served in half precision.
    const auto stored = config.value("torch_dtype", std::string("bfloat16"));
    footprint.dtype = stored == "float32" ? "bfloat16" : stored;
  }
  const double bytes = dtype_bytes(footprint.dtype);
  footprint.weight_bytes = footprint.parameters * bytes;
  const double context = context_arg.value_or(std::min(kDefaultContextCap, number_or(config, "max_position_embeddings",
                                                                                     kDefaultContextCap)));
  footprint.kv_cache_bytes = kv_cache_bytes(config, context, bytes);
  footprint.needed_bytes = (footprint.weight_bytes + footprint.kv_cache_bytes) * (1 + kOverheadFraction);
  return footprint;
}

struct KnownGpu {
  const char* label;
  double gibibytes;
};
// Per-GPU memory of common gres labels, in GiB as nvidia-smi and SLURM count it (the larger variant where a model
// comes in two; gpu_memory overrides).
constexpr KnownGpu kKnownGpus[] = {{"gh200", 96}, {"h200", 141}, {"h100", 80}, {"a100", 80}, {"a800", 80},
                                   {"l40s", 48},  {"l40", 48},   {"a40", 48},  {"a6000", 48}, {"a10", 24},
                                   {"l4", 24},    {"v100", 32},  {"mi300", 192}, {"mi250", 64}, {"b200", 180}};

// "141 GiB": memory in binary gigabytes, the unit of SLURM's G and of nvidia-smi.
std::string format_gibibytes(double bytes) {
  const double gibibytes = bytes / kGibibyte;
  return gibibytes >= 10 ? fmt::format("{:.0f} GiB", gibibytes) : fmt::format("{:.1f} GiB", gibibytes);
}

}  // namespace

ResourceShape resource_shape(int gpus, const ClusterProfile& profile) {
  ResourceShape shape;
  shape.gpus = gpus;
  const int profile_gpus = std::max(1, profile.gpus_per_task);
  shape.cpus = gpus == 0 ? profile.cpus_per_task
                         : std::max(1, static_cast<int>(std::lround(1.0 * profile.cpus_per_task * gpus / profile_gpus)));
  if (!profile.mem_per_gpu.empty()) {
    if (gpus > 0) {
      shape.mem_per_gpu = profile.mem_per_gpu;
    } else {
      shape.mem = profile.mem_per_gpu;  // an element without GPUs gets one GPU's share as --mem
    }
  } else if (profile.mem == "0" || gpus <= profile_gpus || profile.gpus_per_task == 0) {
    shape.mem = profile.mem;
  } else {
    const double megabytes = slurm_memory_bytes(profile.mem) / (1024.0 * 1024) * gpus / profile_gpus;
    shape.mem = fmt::format("{}M", static_cast<long long>(std::ceil(megabytes)));
  }
  return shape;
}

std::string ResourceShape::to_string() const {
  const auto memory = !mem.empty() ? (mem == "0" ? std::string("all node memory") : mem) : mem_per_gpu + " per GPU";
  return fmt::format("{} GPU(s), {} CPU(s), {}", gpus, cpus, memory);
}

double profile_gpu_memory_bytes(const ClusterProfile& profile) {
  if (profile.gpu_memory_bytes > 0) return profile.gpu_memory_bytes;
  std::string label = profile.gpu_type;
  std::transform(label.begin(), label.end(), label.begin(), [](unsigned char c) { return std::tolower(c); });
  if (label.empty()) return 0;
  // A size in the label says which variant: a100_40g, a100-80gb, h100_94gb.
  static const std::regex sized("(^|[^0-9])([0-9]{2,3})g(b)?($|[^a-z0-9])");
  std::smatch match;
  if (std::regex_search(label, match, sized)) return std::stod(match[2]) * kGibibyte;
  for (const auto& gpu : kKnownGpus) {
    if (label.find(gpu.label) != std::string::npos) return gpu.gibibytes * kGibibyte;
  }
  return 0;
}

std::optional<std::string> checkpoint_of(const ModelSpec& spec) {
  if (spec.name == "mill-demo") return std::nullopt;
  const auto backend = spec.backend();
  if (backend == "api") return std::nullopt;
  if (backend == "vllm") return spec.arg("path");
  return spec.arg("path").value_or(spec.name);
}

ModelResources model_resources(const ModelSpec& spec, const ClusterProfile& profile, bool read_checkpoint) {
  ModelResources resources;
  std::string dtype;
  std::optional<double> context;
  const auto backend = spec.backend();
  if (spec.name == "mill-demo") {
    resources.gpus = read_demo_args(spec).gpus;
    resources.gpus_reason = spec.arg("gpus") ? fmt::format("gpus={}", resources.gpus) : "mill-demo stands in for a one-GPU model";
  } else if (backend == "api") {
    resources.gpus = 0;
    resources.gpus_reason = "api: the model runs on a server elsewhere";
  } else if (backend == "vllm") {
    const auto args = read_vllm_args(spec);
    if (args.parallelism_given) {
      resources.gpus = args.tensor_parallel_size * args.pipeline_parallel_size * args.data_parallel_size;
      resources.gpus_reason = fmt::format("tensor_parallel_size={} × pipeline_parallel_size={} × data_parallel_size={}",
                                          args.tensor_parallel_size, args.pipeline_parallel_size, args.data_parallel_size);
    } else {
      resources.gpus = std::max(1, profile.gpus_per_task);
      resources.gpus_reason = fmt::format("the profile's gpus_per_task (vllm spreads the model over them)");
    }
    dtype = args.dtype;
    if (args.max_model_len) context = static_cast<double>(*args.max_model_len);
  } else {
    const auto args = read_runtime_args(spec);
    resources.gpus = args.device == "cpu" ? 0 : 1;
    resources.gpus_reason = args.device == "cpu" ? "device=cpu" : "the in-process runtime runs on one GPU";
    dtype = args.dtype;
    if (args.max_context_length) context = static_cast<double>(*args.max_context_length);
  }
  if (const auto checkpoint = read_checkpoint ? checkpoint_of(spec) : std::nullopt) {
    try {
      const auto folder = locate_checkpoint(*checkpoint, spec.arg("revision").value_or("")).folder;
      resources.footprint = footprint_of(folder, dtype, context);
    } catch (const Error&) {
      // not found or unreadable: the preflight's model and checkpoint checks report it
    }
  }
  resources.shape = resource_shape(resources.gpus, profile);
  return resources;
}

std::optional<std::string> resources_problem(const ModelSpec& spec, const ModelResources& resources,
                                             const ClusterProfile& profile) {
  const auto model = quote_value(spec.to_string());
  if (resources.gpus > profile.gpus_per_node) {
    return fmt::format("model {} asks for {} GPUs ({}), but profile {} has {} per node and an element runs on one node",
                       model, resources.gpus, resources.gpus_reason, profile.name, profile.gpus_per_node);
  }
  const double gpu_memory = profile_gpu_memory_bytes(profile);
  if (!resources.footprint || resources.gpus == 0 || gpu_memory <= 0) return std::nullopt;
  const auto& footprint = *resources.footprint;
  const bool vllm = spec.backend() == "vllm";
  // What is suggested below is vllm's tensor parallelism, which may use gpu_memory_utilization of each GPU.
  double utilization = kVllmDefaultUtilization;
  int shards = resources.gpus;  // GPUs one copy of the weights is spread over
  if (vllm) {
    const auto args = read_vllm_args(spec);
    utilization = args.gpu_memory_utilization.value_or(kVllmDefaultUtilization);
    if (args.parallelism_given) shards = args.tensor_parallel_size * args.pipeline_parallel_size;
  }
  const auto fits_on = [&](int gpus, double usable) {
    return footprint.needed_bytes / gpus + kOverheadBytes <= usable;
  };
  if (fits_on(shards, vllm ? gpu_memory * utilization : gpu_memory)) return std::nullopt;
  const auto need = fmt::format("model {} needs ≈ {} in {} ({:.1f} B parameters; weights {}, KV cache {}); profile {} "
                                "gives it {} × {}",
                                model, format_gibibytes(footprint.needed_bytes + kOverheadBytes * shards), footprint.dtype,
                                footprint.parameters / 1e9, format_gibibytes(footprint.weight_bytes),
                                format_gibibytes(footprint.kv_cache_bytes), profile.name, shards,
                                format_gibibytes(gpu_memory));
  int enough = 0;
  for (int gpus = 2; gpus <= profile.gpus_per_node && enough == 0; gpus *= 2) {
    if (fits_on(gpus, gpu_memory * utilization)) enough = gpus;
  }
  if (enough == 0) {
    return need + fmt::format("; even {} GPUs of one node cannot hold it: use a profile with larger GPUs, a smaller "
                              "dtype, or a shorter max context",
                              profile.gpus_per_node);
  }
  if (vllm) return need + fmt::format("; use tensor_parallel_size={}", enough);
  return need + fmt::format("; the in-process runtime uses one GPU: run it as vllm[path=...,tensor_parallel_size={}]",
                            enough);
}

}  // namespace mill
