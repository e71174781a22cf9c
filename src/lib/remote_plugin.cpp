#include "mill/remote_plugin.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>

#include "mill/error.hpp"
#include "mill/worker.hpp"

namespace mill {

namespace {
void* plugin_handle() {
  static void* handle = nullptr;
  if (handle) return handle;
  const auto path = remote_plugin_path();
  handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* reason = ::dlerror();
    throw Error(fmt::format("the remote backends (api, vllm, serve) are not available: cannot load {} ({}); build the "
                            "mill_remote target or set MILL_REMOTE_PLUGIN",
                            path.string(), reason ? reason : "unknown reason"),
                ExitCode::eval_failed);
  }
  return handle;
}

template <typename Fn>
Fn plugin_symbol(const char* name) {
  auto symbol = reinterpret_cast<Fn>(::dlsym(plugin_handle(), name));
  if (!symbol) {
    throw Error(fmt::format("{} is not mill's remote plugin (no {} symbol)", remote_plugin_path().string(), name),
                ExitCode::eval_failed);
  }
  return symbol;
}
}  // namespace

std::filesystem::path remote_plugin_path() {
  if (const char* path = std::getenv("MILL_REMOTE_PLUGIN"); path && *path) return path;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path(".") : exe.parent_path()) / "libmill_remote.so";
}

std::unique_ptr<ModelBackend> load_remote_backend(const ModelSpec& spec) {
  auto create = plugin_symbol<CreateRemoteBackendFn>(kRemoteBackendSymbol);
  RemotePluginHost host;
  // The worker installs these handlers anyway; the plugin needs the flag to abandon a vLLM start-up wait.
  host.stop = &install_stop_signal_handlers();
  std::string error;
  int code = static_cast<int>(ExitCode::eval_failed);
  std::unique_ptr<ModelBackend> backend(create(&spec, &host, &error, &code));
  if (!backend) throw Error(error.empty() ? "the remote backend could not start" : error, static_cast<ExitCode>(code));
  return backend;
}

void serve_backend(ModelBackend& backend, const ServeOptions& options) {
  auto serve = plugin_symbol<RunRemoteServerFn>(kRemoteServeSymbol);
  std::string error;
  int code = static_cast<int>(ExitCode::internal);
  if (!serve(&backend, &options, &error, &code)) throw Error(error, static_cast<ExitCode>(code));
}

}  // namespace mill
