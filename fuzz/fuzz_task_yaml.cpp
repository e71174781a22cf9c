// Task definitions come from users' --extra_task_paths.
#include <cstdint>
#include <string>

#include "mill/base/error.hpp"
#include "mill/eval/tasks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto registry = mill::TaskRegistry::from_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
    for (const auto& task : registry.tasks()) (void)registry.expand({task.name});
  } catch (const mill::Error&) {
  }
  return 0;
}
