// The in-process backend: a Hugging Face checkpoint run with libtorch, exported as the plugin entry point that
// src/model/runtime_plugin.cpp loads for `mill eval`. Text goes through mill's tokenizer; everything below the
// token level is runtime.cpp.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "checkpoint.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/model_args.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/base/text.hpp"
#include "mill/tokenizers/tokenizer.hpp"
#include "runtime.hpp"
#include "transformer.hpp"

namespace mill::runtime {

namespace {

// `name` is one of read_runtime_args()'s canonical dtype names.
at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float16") return at::kHalf;
  if (name == "float32") return at::kFloat;
  return at::kBFloat16;
}

std::string dtype_name(at::ScalarType type) {
  if (type == at::kBFloat16) return "bfloat16";
  if (type == at::kHalf) return "float16";
  return "float32";
}

// Turns libtorch's multi-line exceptions into mill's one-line errors.
template <typename F>
auto guarded(const char* what, F&& body) {
  try {
    return body();
  } catch (const c10::OutOfMemoryError& e) {
    throw Error(fmt::format("model runtime ran out of memory during {}: {} (set a smaller batch_size or max_context_length)",
                            what, one_line(e.what_without_backtrace())),
                ExitCode::eval_failed);
  } catch (const c10::Error& e) {
    throw Error(fmt::format("model runtime failed during {}: {}", what, one_line(e.what_without_backtrace())),
                ExitCode::eval_failed);
  }
}

// Why this node looks like it has GPUs, asked without CUDA: CUDA_VISIBLE_DEVICES when it is set (SLURM sets it
// for a job's GPUs; empty or -1 means none), else the GPUs `nvidia-smi -L` lists. Empty when there are none.
std::string gpus_on_this_node() {
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
    const std::string value = trim(visible);
    if (value.empty() || value == "-1" || value == "NoDevFiles") return {};
    return fmt::format("CUDA_VISIBLE_DEVICES={}", value);
  }
  const char* path = std::getenv("PATH");
  if (!path) return {};
  for (const auto& dir : split_list(path, ':')) {
    if (dir.empty()) continue;
    const auto program = std::filesystem::path(dir) / "nvidia-smi";
    if (::access(program.c_str(), X_OK) != 0) continue;
    // The path goes to the shell single-quoted; a quote inside it ends the look-up rather than the quoting.
    if (program.string().find('\'') != std::string::npos) return {};
    FILE* pipe = ::popen(fmt::format("'{}' -L 2>/dev/null", program.string()).c_str(), "r");
    if (!pipe) return {};
    int gpus = 0;
    char line[512];
    while (std::fgets(line, sizeof line, pipe)) {
      if (std::strncmp(line, "GPU ", 4) == 0) ++gpus;
    }
    ::pclose(pipe);
    return gpus > 0 ? fmt::format("nvidia-smi lists {} GPU{}", gpus, gpus == 1 ? "" : "s") : std::string();
  }
  return {};
}

// The CPUs this process was given: SLURM_CPUS_PER_TASK when SLURM set it, else the affinity mask (what taskset,
// cgroups' cpusets and SLURM's binding leave to it); never more than the mask, since threads beyond it only queue.
int cpus_given() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int allowed = ::sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask) : 0;
  if (allowed <= 0) allowed = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  if (const char* slurm = std::getenv("SLURM_CPUS_PER_TASK")) {
    char* end = nullptr;
    const long value = std::strtol(slurm, &end, 10);
    if (end != slurm && *end == '\0' && value > 0) return static_cast<int>(std::min<long>(value, allowed));
  }
  return allowed;
}

// One count for libtorch's intra-op threads and OpenBLAS's pool, which libtorch does not set (Debian's libtorch
// calls the system BLAS). Asked of whatever BLAS is loaded, so other BLAS libraries are left alone.
void use_threads(int threads) {
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
  using SetThreads = void (*)(int);
  if (auto set_blas = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(threads);
}

// A forward allocates the same large activations again and again. glibc serves blocks over 32 MB with fresh mmap
// calls and returns them on free, so every forward page-faults its activations in again: on the development VM
// that made allocating and filling 64 MB cost 670 ms instead of 5 (docs/performance.md). Kept in the heap instead,
// freed blocks are reused; the process keeps what its largest forward needed (batches are bounded for that).
void keep_freed_memory() {
  ::mallopt(M_MMAP_MAX, 0);
  ::mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
}

// The largest resident set of this process so far, in bytes (Linux reports kilobytes).
std::int64_t peak_rss_bytes() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;
}

// libtorch_cuda is loaded with libtorch when the build has CUDA; a CPU-only build (Debian's) has none.
bool libtorch_has_cuda() {
  for (const char* name : {"libtorch_cuda.so", "libc10_cuda.so"}) {
    if (void* handle = ::dlopen(name, RTLD_NOLOAD | RTLD_LAZY)) {
      ::dlclose(handle);
      return true;
    }
  }
  return false;
}

class RuntimeBackend final : public ModelBackend, public TokenModel {
 public:
  explicit RuntimeBackend(const ModelSpec& spec) {
    const auto args = read_runtime_args(spec);
    const auto started = std::chrono::steady_clock::now();
    dtype_ = parse_dtype(args.dtype);
    if (args.device == "auto") {
      device_ = at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    } else if (args.device == "cpu") {
      device_ = at::Device(at::kCPU);
    } else {
      if (!at::hasCUDA()) {
        throw Error(fmt::format("model arg device={}: this libtorch build or machine has no CUDA (use device=cpu or auto)",
                                args.device));
      }
      device_ = at::Device(args.device);
    }
    RuntimeSettings settings;
    settings.batch_size = args.batch_size;
    if (args.max_context_length) settings.max_context_length = *args.max_context_length;
    if (args.share_prefixes) settings.share_prefixes = *args.share_prefixes;
    if (args.generation_cache) settings.generation_cache = *args.generation_cache;
    use_chat_template_ = args.use_chat_template;
    threads_ = args.threads > 0 ? args.threads : cpus_given();
    use_threads(threads_);
    if (device_.is_cpu()) keep_freed_memory();

    location_ = locate_checkpoint(spec);
    const auto config = read_config(location_.folder);
    tokenizer_ = Tokenizer::load(location_.folder);
    WeightStore weights(location_.folder);
    weights_dtype_ = weights.dtype_summary();
    auto model = guarded("loading the weights", [&] {
      return std::make_unique<Transformer>(config, weights, at::TensorOptions().dtype(dtype_).device(device_));
    });
    parameters_ = model->parameter_count();
    if (auto eos = tokenizer_->eos_id()) settings.eos_ids.push_back(*eos);
    runtime_ = std::make_unique<Runtime>(std::move(model), settings);
    const auto prefix = tokenizer_->bos_id() ? tokenizer_->bos_id() : tokenizer_->eos_id();
    if (!prefix) throw Error(fmt::format("{}: the tokenizer has neither a BOS nor an EOS token", location_.folder.string()));
    prefix_token_ = *prefix;
    load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    // Once per load, at the default log level (quiet only from --log_level error): where the model runs decides
    // whether a job takes minutes or days.
    if (spdlog::should_log(spdlog::level::warn)) {
      std::fprintf(stderr, "%s\n",
                   one_line(fmt::format("mill: model {} ({}, {} parameters, {} weights) on {} as {}, loaded in {:.1f} s",
                                        location_.folder.string(), config.architecture, parameters_, weights_dtype_,
                                        device_.str(), dtype_name(dtype_), load_seconds_))
                       .c_str());
    }
    if (args.device == "auto" && device_.is_cpu()) {
      if (const auto gpus = gpus_on_this_node(); !gpus.empty()) {
        spdlog::warn("device=auto runs the model on the CPU although this node has GPUs ({}): {}; see docs/runtime.md, "
                     "Building (or pass device=cpu to choose the CPU knowingly)",
                     gpus,
                     libtorch_has_cuda() ? "libtorch found no usable CUDA device (driver, or the devices this job may use)"
                                         : "this mill runtime was built against a CPU-only libtorch; rebuild it with "
                                           "-DCMAKE_PREFIX_PATH pointing at a CUDA PyTorch's libtorch");
      }
    }
  }

  std::vector<std::vector<double>> token_logprobs(const std::vector<std::vector<std::int32_t>>& sequences) override {
    std::vector<Tokens> items;
    for (const auto& ids : sequences) items.emplace_back(ids.begin(), ids.end());
    return guarded("token scoring", [&] { return runtime_->score_tokens(items); });
  }

  BackendCapabilities capabilities() const override { return {true, true, true}; }
  TokenModel* token_model() override { return this; }

  std::vector<TokenId> encode(const std::string& text, bool add_special_tokens) const override {
    return tokenizer_->encode(text, add_special_tokens);
  }
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const override {
    return tokenizer_->decode(ids, skip_special_tokens);
  }
  std::size_t vocab_size() const override { return static_cast<std::size_t>(runtime_->model().config().vocab_size); }
  std::size_t max_length() const override { return static_cast<std::size_t>(runtime_->max_length()); }
  std::optional<std::string> apply_chat_template(const std::vector<ChatMessage>& messages) const override {
    if (!tokenizer_->has_chat_template()) return std::nullopt;
    return tokenizer_->apply_chat_template(messages, true);
  }
  std::vector<std::vector<PositionLogprobs>> score_positions(const std::vector<std::vector<TokenId>>& sequences,
                                                             int top) override {
    std::vector<Tokens> items;
    for (const auto& ids : sequences) items.emplace_back(ids.begin(), ids.end());
    return guarded("token scoring", [&] { return runtime_->score_positions(items, top); });
  }
  std::vector<TokenGenerationResult> generate_tokens(const std::vector<TokenGenerationRequest>& requests) override {
    std::vector<GenerateRequest> items;
    for (const auto& request : requests) {
      GenerateRequest item;
      item.context.assign(request.context.begin(), request.context.end());
      if (item.context.empty()) item.context.push_back(prefix_token_);
      item.max_new_tokens = request.max_new_tokens;
      item.sampling = request.sampling;
      item.top_logprobs = request.top_logprobs;
      items.push_back(std::move(item));
    }
    auto stop = [&](std::size_t r, const Tokens& generated) {
      if (!requests[r].on_token) return false;
      return !requests[r].on_token(std::vector<TokenId>(generated.begin(), generated.end()));
    };
    const auto generations = guarded("generation", [&] { return runtime_->generate(items, stop); });
    std::vector<TokenGenerationResult> results;
    for (const auto& generation : generations) {
      TokenGenerationResult result;
      result.tokens.assign(generation.tokens.begin(), generation.tokens.end());
      result.logprobs = generation.logprobs;
      result.hit_token_limit = generation.hit_token_limit;
      if (generation.eos) result.eos = static_cast<TokenId>(*generation.eos);
      result.eos_logprobs = generation.eos_logprobs;
      results.push_back(std::move(result));
    }
    return results;
  }

  nlohmann::json provenance() const override {
    const auto& counters = runtime_->counters();
    const auto& settings = runtime_->settings();
    return {{"backend", "local"},
            {"runtime", "libtorch"},
            {"model_path", location_.folder.string()},
            {"revision", location_.revision},
            {"architecture", runtime_->model().config().architecture},
            {"parameters", parameters_},
            {"weights_dtype", weights_dtype_},
            {"device", device_.str()},
            {"dtype", dtype_name(dtype_)},
            {"batch_size", settings.batch_size > 0 ? nlohmann::json(settings.batch_size) : nlohmann::json("auto")},
            {"max_context_length", runtime_->max_length()},
            {"use_chat_template", use_chat_template_},
            {"threads", threads_},
            {"peak_rss_mb", static_cast<double>(peak_rss_bytes()) / (1 << 20)},
            {"load_seconds", load_seconds_},
            {"forward_tokens", counters.forward_tokens},
            {"padded_tokens", counters.padded_tokens},
            {"forwards", counters.forwards},
            {"prefix_tokens_reused", counters.prefix_tokens_reused}};
  }

  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>& requests) override {
    std::vector<ScoreRequest> scored;
    scored.reserve(requests.size());
    for (const auto& request : requests) {
      ContextContinuationTokens pair;
      if (use_chat_template_) {
        const auto context = tokenizer_->apply_chat_template({{"user", request.context}}, true);
        pair = encode_pair(*tokenizer_, context, request.continuation, false);
      } else {
        pair = encode_pair(*tokenizer_, request.context, request.continuation, true);
      }
      ScoreRequest item;
      item.context.assign(pair.context.begin(), pair.context.end());
      // An empty context is scored after the BOS (else EOS) token, as the reference harness does.
      if (item.context.empty()) item.context.push_back(prefix_token_);
      item.continuation.assign(pair.continuation.begin(), pair.continuation.end());
      scored.push_back(std::move(item));
    }
    const auto scores = guarded("log-likelihood scoring", [&] { return runtime_->score(scored); });
    std::vector<LoglikelihoodResult> results;
    for (const auto& score : scores) results.push_back({score.logprob, score.greedy, score.n_tokens});
    return results;
  }

  std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>& requests) override {
    std::vector<Tokens> texts;
    for (const auto& request : requests) {
      const auto ids = tokenizer_->encode(request.text, false);
      texts.emplace_back(ids.begin(), ids.end());
    }
    const auto scores = guarded("rolling log-likelihood", [&] { return runtime_->score_rolling(texts, prefix_token_); });
    std::vector<RollingResult> results;
    for (const auto& score : scores) results.push_back({score.logprob, score.n_tokens});
    return results;
  }

  std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& requests) override {
    std::vector<GenerateRequest> items;
    for (const auto& request : requests) {
      const auto context = use_chat_template_ ? tokenizer_->apply_chat_template({{"user", request.context}}, true) : request.context;
      const auto ids = tokenizer_->encode(context, !use_chat_template_);
      GenerateRequest item;
      item.context.assign(ids.begin(), ids.end());
      if (item.context.empty()) item.context.push_back(prefix_token_);
      item.max_new_tokens = request.max_new_tokens;
      items.push_back(std::move(item));
    }
    // Stop sequences are checked on the decoded text after every token, so a stop string split across tokens
    // is still found.
    auto stop = [&](std::size_t r, const Tokens& generated) {
      if (requests[r].stop.empty()) return false;
      return find_first_stop(decode(generated), requests[r].stop) != std::string::npos;
    };
    const auto generations = guarded("generation", [&] { return runtime_->generate(items, stop); });
    std::vector<GenerationResult> results;
    for (std::size_t r = 0; r < generations.size(); ++r) {
      GenerationResult result;
      result.text = decode(generations[r].tokens);
      const auto cut = find_first_stop(result.text, requests[r].stop);
      if (cut != std::string::npos) result.text.resize(cut);
      result.hit_token_limit = generations[r].hit_token_limit && cut == std::string::npos;
      result.n_tokens = static_cast<int>(generations[r].tokens.size());
      results.push_back(std::move(result));
    }
    return results;
  }

 private:
  std::string decode(const Tokens& tokens) const {
    std::vector<TokenId> ids(tokens.begin(), tokens.end());
    return tokenizer_->decode(ids, true);
  }

  CheckpointLocation location_;
  at::ScalarType dtype_ = at::kBFloat16;
  at::Device device_ = at::Device(at::kCPU);
  bool use_chat_template_ = false;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Runtime> runtime_;
  std::string weights_dtype_;
  std::int64_t parameters_ = 0;
  std::int64_t prefix_token_ = 0;
  int threads_ = 1;
  double load_seconds_ = 0;
};

}  // namespace

}  // namespace mill::runtime

extern "C" __attribute__((visibility("default"))) mill::ModelBackend* mill_runtime_create_backend(const mill::ModelSpec* spec,
                                                                                                 std::string* error) {
  try {
    return new mill::runtime::RuntimeBackend(*spec);
  } catch (const std::exception& e) {
    if (error) *error = mill::one_line(e.what());
    return nullptr;
  } catch (...) {
    if (error) *error = "the model runtime failed with an unknown error";
    return nullptr;
  }
}
