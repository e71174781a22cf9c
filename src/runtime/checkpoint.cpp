#include "checkpoint.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <set>

#include "mill/atomic_file.hpp"
#include "mill/checkpoint_files.hpp"
#include "mill/error.hpp"
#include "mill/text.hpp"

namespace mill::runtime {

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  const auto text = read_file(path, "checkpoint file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON ({})", path.string(), one_line(e.what())));
  }
}

}  // namespace

TransformerConfig read_config(const std::filesystem::path& folder) {
  const auto path = folder / "config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error(fmt::format("{} has no config.json (expected a Hugging Face checkpoint folder)", folder.string()));
  }
  const auto json = read_json(path);
  if (!json.is_object()) throw Error(fmt::format("{}: expected a JSON object", path.string()));
  auto field = [&](const char* name) -> const nlohmann::json& {
    const auto it = json.find(name);
    if (it == json.end() || it->is_null()) throw Error(fmt::format("{}: missing field {}", path.string(), name));
    return *it;
  };
  auto integer = [&](const char* name) {
    const auto& value = field(name);
    if (!value.is_number_integer() || value.get<std::int64_t>() <= 0) {
      throw Error(fmt::format("{}: {} must be a positive whole number, not {}", path.string(), name, value.dump()));
    }
    return value.get<std::int64_t>();
  };
  auto number_or = [&](const char* name, double fallback) {
    const auto it = json.find(name);
    if (it == json.end() || it->is_null()) return fallback;
    if (!it->is_number()) throw Error(fmt::format("{}: {} must be a number, not {}", path.string(), name, it->dump()));
    return it->get<double>();
  };
  auto flag_or = [&](const char* name, bool fallback) {
    const auto it = json.find(name);
    return it == json.end() || !it->is_boolean() ? fallback : it->get<bool>();
  };
  auto string_or = [&](const char* name, const std::string& fallback) {
    const auto it = json.find(name);
    return it == json.end() || !it->is_string() ? fallback : it->get<std::string>();
  };

  TransformerConfig config;
  const auto architectures = json.find("architectures");
  if (architectures == json.end() || !architectures->is_array() || architectures->empty() ||
      !(*architectures)[0].is_string()) {
    throw Error(fmt::format("{}: no \"architectures\" list (supported: {})", path.string(), join(runtime_architectures(), ", ")));
  }
  config.architecture = (*architectures)[0].get<std::string>();
  const auto& a = config.architecture;
  if (a == "LlamaForCausalLM" || a == "MistralForCausalLM" || a == "Qwen2ForCausalLM") {
    config.family = "llama";
    config.hidden_size = integer("hidden_size");
    config.intermediate_size = integer("intermediate_size");
    config.layers = integer("num_hidden_layers");
    config.heads = integer("num_attention_heads");
    config.kv_heads = json.contains("num_key_value_heads") && !json["num_key_value_heads"].is_null()
                          ? integer("num_key_value_heads")
                          : config.heads;
    config.head_dim = json.contains("head_dim") && !json["head_dim"].is_null() ? integer("head_dim")
                                                                                  : config.hidden_size / config.heads;
    config.norm_eps = number_or("rms_norm_eps", 1e-6);
    config.norm = NormKind::rms;
    const auto act = string_or("hidden_act", "silu");
    if (act != "silu") throw Error(fmt::format("{}: hidden_act {} is not supported (expected silu)", path.string(), quote_value(act)));
    config.activation = Activation::silu_gated;
    config.tied_embeddings = flag_or("tie_word_embeddings", false);
    config.rotary_dim = config.head_dim;
    config.rope_theta = number_or("rope_theta", 10000);
    const auto sliding = json.find("sliding_window");
    const bool sliding_used = a == "MistralForCausalLM" || flag_or("use_sliding_window", false);
    if (sliding_used && sliding != json.end() && sliding->is_number_integer()) config.sliding_window = sliding->get<std::int64_t>();
  } else if (a == "GPT2LMHeadModel") {
    config.family = "gpt2";
    config.hidden_size = integer("n_embd");
    config.layers = integer("n_layer");
    config.heads = integer("n_head");
    config.kv_heads = config.heads;
    config.head_dim = config.hidden_size / config.heads;
    config.intermediate_size = json.contains("n_inner") && !json["n_inner"].is_null() ? integer("n_inner") : 4 * config.hidden_size;
    config.norm_eps = number_or("layer_norm_epsilon", 1e-5);
    config.norm = NormKind::layer;
    const auto act = string_or("activation_function", "gelu_new");
    if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
      config.activation = Activation::gelu_tanh;
    } else if (act == "gelu") {
      config.activation = Activation::gelu_exact;
    } else {
      throw Error(fmt::format("{}: activation_function {} is not supported (expected gelu_new or gelu)", path.string(), quote_value(act)));
    }
    config.tied_embeddings = true;
    config.learned_positions = true;
    config.max_positions = integer("n_positions");
  } else if (a == "GPTNeoXForCausalLM") {
    config.family = "gpt_neox";
    config.hidden_size = integer("hidden_size");
    config.intermediate_size = integer("intermediate_size");
    config.layers = integer("num_hidden_layers");
    config.heads = integer("num_attention_heads");
    config.kv_heads = config.heads;
    config.head_dim = config.hidden_size / config.heads;
    config.norm_eps = number_or("layer_norm_eps", 1e-5);
    config.norm = NormKind::layer;
    const auto act = string_or("hidden_act", "gelu");
    if (act == "gelu") {
      config.activation = Activation::gelu_exact;
    } else if (act == "gelu_new" || act == "gelu_fast" || act == "gelu_pytorch_tanh") {
      config.activation = Activation::gelu_tanh;
    } else {
      throw Error(fmt::format("{}: hidden_act {} is not supported (expected gelu)", path.string(), quote_value(act)));
    }
    config.tied_embeddings = flag_or("tie_word_embeddings", false);
    config.parallel_residual = flag_or("use_parallel_residual", true);
    const double pct = number_or("rotary_pct", number_or("partial_rotary_factor", 0.25));
    config.rotary_dim = static_cast<std::int64_t>(static_cast<double>(config.head_dim) * pct);
    config.rope_theta = number_or("rotary_emb_base", number_or("rope_theta", 10000));
  } else {
    throw Error(fmt::format("{}: architecture {} is not supported (supported: {})", path.string(), quote_value(a),
                            join(runtime_architectures(), ", ")));
  }
  config.vocab_size = integer("vocab_size");
  if (!config.learned_positions) {
    config.max_positions = json.contains("max_position_embeddings") ? integer("max_position_embeddings") : 4096;
  }
  if (config.heads % config.kv_heads != 0) {
    throw Error(fmt::format("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path.string(),
                            config.heads, config.kv_heads));
  }
  if (config.rotary_dim % 2 != 0) throw Error(fmt::format("{}: the rotary dimension {} is odd", path.string(), config.rotary_dim));

  // Rope scaling: config.json's rope_scaling (transformers 4.x) or rope_parameters (5.x).
  const nlohmann::json* scaling = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (json.contains(key) && json[key].is_object()) scaling = &json[key];
  }
  if (scaling && config.rotary_dim > 0) {
    const auto& s = *scaling;
    std::string type = s.value("rope_type", s.value("type", std::string("default")));
    if (s.contains("rope_theta") && s["rope_theta"].is_number()) config.rope_theta = s["rope_theta"].get<double>();
    if (type == "default") {
    } else if (type == "linear" || type == "llama3") {
      config.rope_type = type;
      config.rope_factor = s.value("factor", 1.0);
      if (type == "llama3") {
        config.rope_low_freq_factor = s.value("low_freq_factor", 1.0);
        config.rope_high_freq_factor = s.value("high_freq_factor", 4.0);
        config.rope_original_max_positions = s.value("original_max_position_embeddings", 8192.0);
      }
    } else {
      throw Error(fmt::format("{}: rope scaling type {} is not supported (supported: default, linear, llama3)",
                              path.string(), quote_value(type)));
    }
  }

  auto add_eos = [&](const nlohmann::json& value) {
    if (value.is_number_integer()) config.eos_token_ids.push_back(value.get<std::int64_t>());
    if (value.is_array()) {
      for (const auto& id : value) {
        if (id.is_number_integer()) config.eos_token_ids.push_back(id.get<std::int64_t>());
      }
    }
  };
  if (json.contains("eos_token_id")) add_eos(json["eos_token_id"]);
  const auto generation = folder / "generation_config.json";
  if (std::filesystem::exists(generation, ec)) {
    try {
      const auto gen = read_json(generation);
      if (gen.is_object() && gen.contains("eos_token_id")) add_eos(gen["eos_token_id"]);
    } catch (const Error&) {
      // generation_config.json only adds end-of-sequence ids; a broken one is not worth failing the load.
    }
  }
  return config;
}

MappedFile::MappedFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    throw Error(fmt::format("cannot read {}: {}", path.string(), std::strerror(error)));
  }
  size_ = static_cast<std::size_t>(info.st_size);
  if (size_ > 0) {
    // Private and writable: pages stay shared with the page cache until written, and nothing can fault by
    // writing into a read-only mapping.
    void* address = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      const int error = errno;
      ::close(fd);
      throw Error(fmt::format("cannot map {}: {}", path.string(), std::strerror(error)));
    }
    data_ = static_cast<std::byte*>(address);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

WeightStore::WeightStore(const std::filesystem::path& folder) {
  std::error_code ec;
  const auto file_names = weight_files(folder);
  std::set<std::string> dtypes;
  for (const auto& file_name : file_names) {
    const auto path = folder / file_name;
    if (!std::filesystem::exists(path, ec)) {
      throw Error(fmt::format("{}: the shard {} named by model.safetensors.index.json is missing", folder.string(), file_name));
    }
    files_.push_back(std::make_unique<MappedFile>(path));
    const auto& file = *files_.back();
    headers_.push_back(std::make_unique<safetensors::Header>(safetensors::parse_header(file.data(), file.size(), path.string())));
    const auto& header = *headers_.back();
    for (const auto& tensor : header.tensors) {
      if (index_.count(tensor.name)) {
        throw Error(fmt::format("{}: tensor {} is also in {}", path.string(), tensor.name, index_[tensor.name].file_name));
      }
      index_[tensor.name] = Entry{&file, &header, &tensor, file_name};
      dtypes.insert(std::string(safetensors::dtype_name(tensor.dtype)));
    }
  }
  dtype_summary_ = join(std::vector<std::string>(dtypes.begin(), dtypes.end()), "+");
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : index_) out.push_back(name);
  return out;
}

at::Tensor WeightStore::get(const std::string& name, const std::vector<std::int64_t>& shape,
                            const at::TensorOptions& options) const {
  const auto it = index_.find(name);
  if (it == index_.end()) throw Error(fmt::format("the checkpoint has no tensor {} (needed by this architecture)", name));
  const auto& entry = it->second;
  const auto& info = *entry.info;
  if (info.shape != shape) {
    throw Error(fmt::format("{}: tensor {} has shape [{}], config.json implies [{}]", entry.file_name, name,
                            fmt::join(info.shape, ", "), fmt::join(shape, ", ")));
  }
  at::ScalarType type;
  switch (info.dtype) {
    case safetensors::DType::F32: type = at::kFloat; break;
    case safetensors::DType::F16: type = at::kHalf; break;
    case safetensors::DType::BF16: type = at::kBFloat16; break;
    case safetensors::DType::F64: type = at::kDouble; break;
    default:
      throw Error(fmt::format("{}: tensor {} is stored as {}; mill loads F32, F16, BF16 or F64 weights", entry.file_name,
                              name, safetensors::dtype_name(info.dtype)));
  }
  const std::byte* data = entry.file->data() + entry.header->data_offset + info.begin;
  auto view = at::from_blob(const_cast<std::byte*>(data), info.shape, at::TensorOptions().dtype(type));
  // Unaligned data (a header not padded to 8 bytes) is copied first; vectorised kernels expect aligned rows.
  if (reinterpret_cast<std::uintptr_t>(data) % safetensors::dtype_size(info.dtype) != 0) {
    auto aligned = at::empty(info.shape, at::TensorOptions().dtype(type));
    std::memcpy(aligned.data_ptr(), data, info.end - info.begin);
    view = aligned;
  }
  // Always an owning copy: the model never depends on the mapping staying valid.
  if (view.scalar_type() == options.dtype().toScalarType() && options.device().is_cpu()) return view.clone();
  return view.to(options.device(), options.dtype().toScalarType());
}

}  // namespace mill::runtime
