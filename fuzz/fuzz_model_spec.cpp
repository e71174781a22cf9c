// Model specs come from the command line and from manifests.
#include <cstdint>
#include <string_view>

#include "mill/base/error.hpp"
#include "mill/model/model_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto spec = mill::ModelSpec::parse(text);
    // What we print must parse back to the same spec.
    const auto again = mill::ModelSpec::parse(spec.to_string());
    if (again.name != spec.name || again.args != spec.args) __builtin_trap();
    (void)spec.identity();
  } catch (const mill::Error&) {
  }
  return 0;
}
