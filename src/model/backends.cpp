// make_backend(): the one place that maps a model spec to the backend that runs it (declared in model.hpp).
#include <fmt/format.h>

#include "mill/model/demo_backend.hpp"
#include "mill/base/error.hpp"
#include "mill/model/model.hpp"
#include "mill/model/remote_plugin.hpp"
#include "mill/model/runtime_plugin.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::unique_ptr<ModelBackend> make_backend(const ModelSpec& spec) {
  if (spec.name == "mill-demo") return std::make_unique<DemoBackend>(spec);
  const auto backend = spec.backend();
  if (backend == "local") return load_runtime_backend(spec);
  if (backend == "api" || backend == "vllm") return load_remote_backend(spec);
  throw Error(fmt::format("model spec {}: the {} backend is not available in this build of mill",
                          quote_value(spec.to_string()), backend),
              ExitCode::eval_failed);
}

std::vector<std::vector<double>> ModelBackend::token_logprobs(const std::vector<std::vector<std::int32_t>>&) {
  throw Error("this model backend scores text only; token-level log-probabilities need the in-process runtime",
              ExitCode::eval_failed);
}

}  // namespace mill
