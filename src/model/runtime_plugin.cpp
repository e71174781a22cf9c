#include "mill/model/runtime_plugin.hpp"

#include <dlfcn.h>

#include <cstdlib>

#include "mill/base/error.hpp"
#include "mill/base/plugin.hpp"

namespace mill {
namespace {

// GCC announces ASan with __SANITIZE_ADDRESS__, clang through __has_feature.
constexpr bool running_under_address_sanitizer() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#endif
#endif
  return false;
}

}  // namespace

constexpr PluginInfo kRuntimePlugin{"the in-process model runtime is not available", "runtime", "mill_runtime",
                                    "MILL_RUNTIME_PLUGIN", "libmill_runtime.so"};

std::filesystem::path runtime_plugin_path() { return plugin_path(kRuntimePlugin); }

std::unique_ptr<ModelBackend> load_runtime_backend(const ModelSpec& spec) {
  static void* handle = nullptr;
  if (!handle) {
    // Debian's libtorch needs libprotobuf, and libsentencepiece (loaded with mill_core) exports its own
    // protobuf-lite under the same symbol names: loaded normally, libprotobuf would bind to those and crash in
    // its initialisation. Loading it first with RTLD_DEEPBIND makes it bind to itself. (Sanitizer runtimes refuse
    // the flag; pip's CUDA libtorch carries protobuf privately and needs none of this.)
    if (!running_under_address_sanitizer() && std::filesystem::exists(runtime_plugin_path())) {
      for (const char* protobuf : {"libprotobuf.so.32", "libprotobuf.so.23"}) {
        if (::dlopen(protobuf, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)) break;
      }
    }
    // libtorch's OpenMP threads and OpenBLAS's own threads take turns on the same cores; OpenMP's default of
    // spinning after each parallel region kept OpenBLAS waiting (prefill 2-3x slower on 2 cores,
    // docs/performance.md). libgomp reads this once, when the plugin loads it; a value already set is kept.
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    handle = open_plugin(kRuntimePlugin);
  }
  auto create = reinterpret_cast<CreateRuntimeBackendFn>(plugin_symbol(handle, kRuntimePlugin, kRuntimeBackendSymbol));
  std::string error;
  std::unique_ptr<ModelBackend> backend(create(&spec, &error));
  if (!backend) throw Error(error.empty() ? "the model runtime could not load " + spec.name : error, ExitCode::eval_failed);
  return backend;
}

}  // namespace mill
