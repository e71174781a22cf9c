// The entry points of libmill_remote.so (remote_plugin.hpp). Errors cross the boundary as text and exit codes.
#include <string>

#include "mill/remote/api_backend.hpp"
#include "mill/base/error.hpp"
#include "mill/remote/openai_server.hpp"
#include "mill/model/remote_plugin.hpp"
#include "mill/base/text.hpp"
#include "mill/remote/vllm_backend.hpp"

namespace {
template <typename Body>
auto guarded(std::string* error, int* code, Body body) -> decltype(body()) {
  try {
    return body();
  } catch (const mill::Error& e) {
    *error = e.what();
    *code = static_cast<int>(e.code());
  } catch (const std::exception& e) {
    *error = mill::one_line(e.what());
    *code = static_cast<int>(mill::ExitCode::internal);
  }
  return {};
}
}  // namespace

extern "C" __attribute__((visibility("default"))) mill::ModelBackend* mill_remote_create_backend(
    const mill::ModelSpec* spec, const mill::RemotePluginHost* host, std::string* error, int* code) {
  return guarded(error, code, [&]() -> mill::ModelBackend* {
    if (spec->backend() == "vllm") {
      mill::VllmLaunchOptions options;
      options.stop = host ? host->stop : nullptr;
      return new mill::VllmBackend(*spec, options);
    }
    return new mill::ApiBackend(mill::api_config_from_spec(*spec));
  });
}

extern "C" __attribute__((visibility("default"))) bool mill_remote_serve(mill::ModelBackend* backend,
                                                                         const mill::ServeOptions* options,
                                                                         std::string* error, int* code) {
  return guarded(error, code, [&] {
    mill::run_openai_server(*backend, *options);
    return true;
  });
}
