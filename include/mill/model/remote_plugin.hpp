#pragma once
// The remote backends (`api[...]`/`litellm[...]`, `vllm[...]`) and `mill serve` need libcurl and cpp-httplib,
// which cost milliseconds to load, so they live in a plugin that only eval and serve load: $MILL_REMOTE_PLUGIN,
// else libmill_remote.so next to the mill binary. This header is the host's side of that boundary.
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "mill/model/model.hpp"

namespace mill {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                // 0: any free port (reported through on_listening)
  std::string served_model_name;  // the id /v1/models lists and requests must name; default: the spec as typed
  int max_batch = 64;             // requests per backend call
  // HTTP connections served at once. A connection keeps its thread while idle between requests (keep-alive, up to
  // 5 s), so a request on a connection beyond this many waits that long; the vllm backend opens 64.
  int threads = 128;
  std::function<void(const std::string& host, int port)> on_listening;
};

// What the host hands the plugin.
struct RemotePluginHost {
  const std::atomic<bool>* stop = nullptr;  // set by SIGUSR1/SIGTERM in `mill eval` (stops a vLLM start-up wait)
};

// The plugin's entry points (extern "C"). On failure they return null / false and fill `error` and `code`.
using CreateRemoteBackendFn = ModelBackend* (*)(const ModelSpec* spec, const RemotePluginHost* host, std::string* error,
                                                int* code);
using RunRemoteServerFn = bool (*)(ModelBackend* backend, const ServeOptions* options, std::string* error, int* code);
inline constexpr const char* kRemoteBackendSymbol = "mill_remote_create_backend";
inline constexpr const char* kRemoteServeSymbol = "mill_remote_serve";

// make_backend() for "api" and "vllm" specs.
std::unique_ptr<ModelBackend> load_remote_backend(const ModelSpec& spec);

// `mill serve`: serves `backend` until SIGINT/SIGTERM.
void serve_backend(ModelBackend& backend, const ServeOptions& options);

}  // namespace mill
