#include "mill/runtime_plugin.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <fmt/format.h>

#include "mill/error.hpp"

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

std::filesystem::path runtime_plugin_path() {
  if (const char* path = std::getenv("MILL_RUNTIME_PLUGIN"); path && *path) return path;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path(".") : exe.parent_path()) / "libmill_runtime.so";
}

std::unique_ptr<ModelBackend> load_runtime_backend(const ModelSpec& spec) {
  static void* handle = nullptr;
  const auto path = runtime_plugin_path();
  if (!handle) {
    // Debian's libtorch needs libprotobuf, and libsentencepiece (loaded with mill_core) exports its own
    // protobuf-lite under the same symbol names: loaded normally, libprotobuf would bind to those and crash in
    // its initialisation. Loading it first with RTLD_DEEPBIND makes it bind to itself. (Sanitizer runtimes refuse
    // the flag; pip's CUDA libtorch carries protobuf privately and needs none of this.)
    if (!running_under_address_sanitizer() && std::filesystem::exists(path)) {
      for (const char* protobuf : {"libprotobuf.so.32", "libprotobuf.so.23"}) {
        if (::dlopen(protobuf, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)) break;
      }
    }
    handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* reason = ::dlerror();
      throw Error(fmt::format("the in-process model runtime is not available: cannot load {} ({}); build the "
                              "mill_runtime target or set MILL_RUNTIME_PLUGIN",
                              path.string(), reason ? reason : "unknown reason"),
                  ExitCode::eval_failed);
    }
  }
  auto create = reinterpret_cast<CreateRuntimeBackendFn>(::dlsym(handle, kRuntimeBackendSymbol));
  if (!create) {
    throw Error(fmt::format("{} is not a mill runtime plugin (no {} symbol)", path.string(), kRuntimeBackendSymbol),
                ExitCode::eval_failed);
  }
  std::string error;
  std::unique_ptr<ModelBackend> backend(create(&spec, &error));
  if (!backend) throw Error(error.empty() ? "the model runtime could not load " + spec.name : error, ExitCode::eval_failed);
  return backend;
}

}  // namespace mill
