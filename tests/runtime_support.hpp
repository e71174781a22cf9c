#pragma once
// What the tests of the in-process runtime share: whether the plugin was built (and can load here), and the device
// they run on.
#include <cstdlib>
#include <filesystem>
#include <string>

#include "support.hpp"

namespace mill::test {

// The plugin built next to the tests, made the one `mill eval` and load_runtime_backend use. Sanitized builds have
// none (the sanitizer runtimes refuse the RTLD_DEEPBIND load libtorch needs).
inline bool runtime_plugin_available() {
  const auto plugin = runtime_plugin_path();
  if (plugin.empty() || !std::filesystem::exists(plugin)) return false;
  ::setenv("MILL_RUNTIME_PLUGIN", plugin.c_str(), 1);
  return true;
}

// MILL_TEST_DEVICE=cuda runs the same invariants on a GPU.
inline std::string runtime_test_device() {
  const char* device = std::getenv("MILL_TEST_DEVICE");
  return device && *device ? device : "cpu";
}

}  // namespace mill::test

#define REQUIRE_PLUGIN()                                                   \
  if (!mill::test::runtime_plugin_available()) {                           \
    WARN("the model runtime plugin was not built (no libtorch); skipped"); \
    return;                                                                \
  }
