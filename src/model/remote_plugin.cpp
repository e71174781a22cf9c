#include "mill/model/remote_plugin.hpp"

#include "mill/base/error.hpp"
#include "mill/base/plugin.hpp"
#include "mill/base/stop_signal.hpp"

namespace mill {

namespace {
constexpr PluginInfo kRemotePlugin{"the remote backends (api, vllm, serve) are not available", "remote",
                                   "mill_remote", "MILL_REMOTE_PLUGIN", "libmill_remote.so"};

void* remote_handle() {
  static void* const handle = open_plugin(kRemotePlugin);  // a failed open is retried by the next call
  return handle;
}

template <typename Fn>
Fn remote_symbol(const char* name) {
  return reinterpret_cast<Fn>(plugin_symbol(remote_handle(), kRemotePlugin, name));
}
}  // namespace

std::unique_ptr<ModelBackend> load_remote_backend(const ModelSpec& spec) {
  auto create = remote_symbol<CreateRemoteBackendFn>(kRemoteBackendSymbol);
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
  auto serve = remote_symbol<RunRemoteServerFn>(kRemoteServeSymbol);
  std::string error;
  int code = static_cast<int>(ExitCode::internal);
  if (!serve(&backend, &options, &error, &code)) throw Error(error, static_cast<ExitCode>(code));
}

}  // namespace mill
