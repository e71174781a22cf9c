#pragma once
// The in-process model runtime (libtorch) lives in a shared library that only `mill eval` loads, so the
// planner, collector and --help never pay libtorch's start-up cost. The plugin is found at $MILL_RUNTIME_PLUGIN,
// else as libmill_runtime.so next to the mill binary.
#include <filesystem>
#include <memory>

#include "mill/model/model.hpp"

namespace mill {

// The symbol the plugin exports (extern "C"): creates a backend for `spec`, or returns nullptr and sets
// `error` to a one-line message.
using CreateRuntimeBackendFn = ModelBackend* (*)(const ModelSpec* spec, std::string* error);
inline constexpr const char* kRuntimeBackendSymbol = "mill_runtime_create_backend";

// Where the plugin is looked for.
std::filesystem::path runtime_plugin_path();

// Loads the plugin (once) and creates the in-process backend; a missing plugin is a clear mill::Error.
std::unique_ptr<ModelBackend> load_runtime_backend(const ModelSpec& spec);

}  // namespace mill
