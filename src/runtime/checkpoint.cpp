#include "checkpoint.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <set>

#include "mill/base/atomic_file.hpp"
#include "mill/model/checkpoint_files.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

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
  const bool gemma = a == "Gemma2ForCausalLM" || a == "Gemma3ForCausalLM";
  const bool moe = a == "MixtralForCausalLM" || a == "Qwen3MoeForCausalLM";
  auto optional_integer = [&](const char* name, std::int64_t fallback) {
    return json.contains(name) && !json[name].is_null() ? integer(name) : fallback;
  };
  if (a == "LlamaForCausalLM" || a == "MistralForCausalLM" || a == "Qwen2ForCausalLM" || a == "Qwen3ForCausalLM" ||
      a == "Olmo2ForCausalLM" || a == "Phi3ForCausalLM" || gemma || moe) {
    config.family = a == "Phi3ForCausalLM" ? "phi3" : "llama";
    config.hidden_size = integer("hidden_size");
    config.intermediate_size = integer("intermediate_size");
    config.layers = integer("num_hidden_layers");
    config.heads = integer("num_attention_heads");
    config.kv_heads = optional_integer("num_key_value_heads", config.heads);
    config.head_dim = optional_integer("head_dim", config.hidden_size / config.heads);
    config.norm_eps = number_or("rms_norm_eps", 1e-6);
    config.norm = NormKind::rms;
    const char* act_field = gemma && json.contains("hidden_activation") ? "hidden_activation" : "hidden_act";
    const auto act = string_or(act_field, gemma ? "gelu_pytorch_tanh" : "silu");
    if (act == "silu") {
      config.activation = Activation::silu_gated;
    } else if (gemma && (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast")) {
      config.activation = Activation::gelu_tanh_gated;
    } else {
      throw Error(fmt::format("{}: {} {} is not supported (expected {})", path.string(), act_field, quote_value(act),
                              gemma ? "gelu_pytorch_tanh" : "silu"));
    }
    config.tied_embeddings = flag_or("tie_word_embeddings", gemma);
    config.rotary_dim = config.head_dim;
    if (a == "Phi3ForCausalLM") {
      config.rotary_dim = static_cast<std::int64_t>(static_cast<double>(config.head_dim) * number_or("partial_rotary_factor", 1.0));
    }
    config.rope.theta = number_or("rope_theta", 10000);
    const auto sliding = json.find("sliding_window");
    const bool has_window = sliding != json.end() && sliding->is_number_integer() && sliding->get<std::int64_t>() > 0;
    if (a == "MistralForCausalLM" || a == "MixtralForCausalLM" || ((a == "Qwen2ForCausalLM" || a == "Qwen3ForCausalLM") && flag_or("use_sliding_window", false))) {
      if (has_window) config.sliding_window = sliding->get<std::int64_t>();
    }
    if (a == "Qwen3ForCausalLM" || a == "Qwen3MoeForCausalLM") config.qk_norm = QKNorm::per_head;
    if (a == "Olmo2ForCausalLM") {
      config.qk_norm = QKNorm::whole;
      config.pre_norms = false;
      config.post_norms = true;
      config.norm_scale_in_float = true;
    }
    if (a == "Phi3ForCausalLM" && has_window) {
      config.local_window = sliding->get<std::int64_t>();
      config.local_layers.assign(static_cast<std::size_t>(config.layers), true);
    }
    if (gemma) {
      config.norm_plus_one = true;
      config.norm_scale_in_float = true;
      config.post_norms = true;
      config.embedding_scale = std::sqrt(static_cast<double>(config.hidden_size));
      config.attention_scale = 1.0 / std::sqrt(number_or("query_pre_attn_scalar", static_cast<double>(config.head_dim)));
      config.attention_softcap = number_or("attn_logit_softcapping", a == "Gemma2ForCausalLM" ? 50.0 : 0.0);
      config.final_softcap = number_or("final_logit_softcapping", a == "Gemma2ForCausalLM" ? 30.0 : 0.0);
      if (a == "Gemma3ForCausalLM") config.qk_norm = QKNorm::per_head;
      if (has_window) {
        config.local_window = sliding->get<std::int64_t>();
        // transformers 4.5x+ spells the pattern out as layer_types; earlier configs imply it (Gemma 2: even layers
        // are local; Gemma 3: all but every sliding_window_pattern-th layer).
        const auto types = json.find("layer_types");
        const auto pattern = optional_integer("sliding_window_pattern", 6);
        for (std::int64_t l = 0; l < config.layers; ++l) {
          bool local;
          if (types != json.end() && types->is_array() && static_cast<std::int64_t>(types->size()) == config.layers) {
            const auto& type = (*types)[static_cast<std::size_t>(l)];
            if (!type.is_string() || (type != "sliding_attention" && type != "full_attention")) {
              throw Error(fmt::format("{}: layer_types[{}] is {}, expected \"sliding_attention\" or \"full_attention\"",
                                      path.string(), l, type.dump()));
            }
            local = type == "sliding_attention";
          } else {
            local = a == "Gemma2ForCausalLM" ? l % 2 == 0 : (l + 1) % pattern != 0;
          }
          config.local_layers.push_back(local);
        }
      }
      if (a == "Gemma3ForCausalLM") {
        config.has_local_rope = true;
        config.local_rope.theta = number_or("rope_local_base_freq", 10000);
      }
    }
    if (moe) {
      const bool mixtral = a == "MixtralForCausalLM";
      config.experts = integer(mixtral ? "num_local_experts" : "num_experts");
      config.experts_per_token = integer("num_experts_per_tok");
      if (config.experts_per_token > config.experts) {
        throw Error(fmt::format("{}: num_experts_per_tok {} exceeds the {} experts", path.string(), config.experts_per_token,
                                config.experts));
      }
      config.expert_intermediate_size = mixtral ? config.intermediate_size : integer("moe_intermediate_size");
      config.normalize_top_k = mixtral ? true : flag_or("norm_topk_prob", false);
      // Qwen3-MoE: layers in mlp_only_layers, and those off the decoder_sparse_step grid, keep a dense MLP.
      const auto step = mixtral ? 1 : optional_integer("decoder_sparse_step", 1);
      std::vector<std::int64_t> dense;
      if (!mixtral && json.contains("mlp_only_layers") && json["mlp_only_layers"].is_array()) {
        for (const auto& l : json["mlp_only_layers"]) {
          if (l.is_number_integer()) dense.push_back(l.get<std::int64_t>());
        }
      }
      for (std::int64_t l = 0; l < config.layers; ++l) {
        config.sparse_layers.push_back(std::find(dense.begin(), dense.end(), l) == dense.end() && (l + 1) % step == 0);
      }
    }
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
    config.rope.theta = number_or("rotary_emb_base", number_or("rope_theta", 10000));
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

  // Rope scaling: config.json's rope_scaling (transformers 4.x) or rope_parameters (5.x; Gemma 3 there nests one
  // object per layer type).
  const nlohmann::json* scaling = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (json.contains(key) && json[key].is_object()) scaling = &json[key];
  }
  if (scaling && scaling->contains("full_attention") && (*scaling)["full_attention"].is_object()) {
    if (scaling->contains("sliding_attention") && (*scaling)["sliding_attention"].is_object()) {
      const auto& local = (*scaling)["sliding_attention"];
      if (local.contains("rope_theta") && local["rope_theta"].is_number()) config.local_rope.theta = local["rope_theta"].get<double>();
    }
    scaling = &(*scaling)["full_attention"];
  }
  if (scaling && config.rotary_dim > 0) {
    const auto& s = *scaling;
    auto& rope = config.rope;
    const std::string type = s.value("rope_type", s.value("type", std::string("default")));
    if (s.contains("rope_theta") && s["rope_theta"].is_number()) rope.theta = s["rope_theta"].get<double>();
    auto number = [&](const char* name, double fallback) {
      const auto it = s.find(name);
      if (it == s.end() || it->is_null()) return fallback;
      if (!it->is_number()) throw Error(fmt::format("{}: rope scaling {} must be a number, not {}", path.string(), name, it->dump()));
      return it->get<double>();
    };
    // Phi-3 keeps original_max_position_embeddings at the top level of config.json.
    const double original = number("original_max_position_embeddings", number_or("original_max_position_embeddings", static_cast<double>(config.max_positions)));
    if (type == "default") {
    } else if (type == "linear" || type == "dynamic") {
      rope.type = type;
      rope.factor = number("factor", 1.0);
    } else if (type == "llama3") {
      rope.type = type;
      rope.factor = number("factor", 1.0);
      rope.low_freq_factor = number("low_freq_factor", 1.0);
      rope.high_freq_factor = number("high_freq_factor", 4.0);
      rope.original_max_positions = number("original_max_position_embeddings", 8192.0);
    } else if (type == "yarn") {
      rope.type = type;
      rope.original_max_positions = original;
      rope.factor = number("factor", static_cast<double>(config.max_positions) / original);
      const auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
      const double m = number("mscale", 0), m_all = number("mscale_all_dim", 0);
      rope.attention_factor = number("attention_factor", m != 0 && m_all != 0 ? mscale(rope.factor, m) / mscale(rope.factor, m_all)
                                                                               : mscale(rope.factor, 1));
      rope.beta_fast = number("beta_fast", 32);
      rope.beta_slow = number("beta_slow", 1);
      rope.truncate = s.value("truncate", true);
    } else if (type == "longrope" || type == "su") {
      rope.type = "longrope";
      rope.original_max_positions = original;
      const double factor = number("factor", static_cast<double>(config.max_positions) / original);
      rope.attention_factor = number("attention_factor", factor <= 1 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(original)));
      for (auto [name, target] : {std::pair{"short_factor", &rope.short_factor}, std::pair{"long_factor", &rope.long_factor}}) {
        if (!s.contains(name) || !s[name].is_array() || static_cast<std::int64_t>(s[name].size()) != config.rotary_dim / 2) {
          throw Error(fmt::format("{}: longrope needs {} as a list of {} numbers (rotary dimension / 2)", path.string(), name,
                                  config.rotary_dim / 2));
        }
        for (const auto& v : s[name]) {
          if (!v.is_number()) throw Error(fmt::format("{}: longrope {} holds {}, not a number", path.string(), name, v.dump()));
          target->push_back(v.get<double>());
        }
      }
    } else {
      throw Error(fmt::format("{}: rope scaling type {} is not supported (supported: default, linear, llama3, yarn, dynamic, "
                              "longrope)",
                              path.string(), quote_value(type)));
    }
  }
  if (config.rope.type == "dynamic") config.rope.original_max_positions = static_cast<double>(config.max_positions);

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

void MappedFile::release(std::size_t begin, std::size_t end) const {
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const auto first = (begin + page - 1) / page * page, last = std::min(end, size_) / page * page;
  // Advice only: if the kernel declines, the pages stay resident and nothing else changes.
  if (first < last) ::madvise(data_ + first, last - first, MADV_DONTNEED);
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
    auto file = std::make_shared<const MappedFile>(path);
    headers_.push_back(std::make_unique<safetensors::Header>(safetensors::parse_header(file->data(), file->size(), path.string())));
    const auto& header = *headers_.back();
    for (const auto& tensor : header.tensors) {
      if (index_.count(tensor.name)) {
        throw Error(fmt::format("{}: tensor {} is also in {}", path.string(), tensor.name, index_[tensor.name].file_name));
      }
      index_[tensor.name] = Entry{file, &header, &tensor, file_name};
      dtypes.insert(std::string(safetensors::dtype_name(tensor.dtype)));
    }
  }
  dtype_summary_ = join(std::vector<std::string>(dtypes.begin(), dtypes.end()), "+");
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
  const auto begin = entry.header->data_offset + info.begin, end = entry.header->data_offset + info.end;
  const std::byte* data = entry.file->data() + begin;
  // The view owns a share of the mapping; when it goes, so do its pages (converted tensors are copies, so their
  // source pages go as soon as the conversion is done).
  auto view = at::from_blob(
      const_cast<std::byte*>(data), info.shape,
      [file = entry.file, begin, end](void*) { file->release(begin, end); }, at::TensorOptions().dtype(type));
  // Unaligned data (a header not padded to 8 bytes) is copied first; vectorised kernels expect aligned rows.
  if (reinterpret_cast<std::uintptr_t>(data) % safetensors::dtype_size(info.dtype) != 0) {
    auto aligned = at::empty(info.shape, at::TensorOptions().dtype(type));
    std::memcpy(aligned.data_ptr(), data, info.end - info.begin);
    view = aligned;
  }
  if (view.scalar_type() == options.dtype().toScalarType() && options.device().is_cpu()) return view;
  return view.to(options.device(), options.dtype().toScalarType());
}

}  // namespace mill::runtime
