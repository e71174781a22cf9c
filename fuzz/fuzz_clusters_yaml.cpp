// clusters.yaml is edited by hand.
#include <cstdint>
#include <string_view>

#include "mill/sweep/cluster.hpp"
#include "mill/base/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto config = mill::parse_cluster_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
    (void)mill::choose_profile(config, "auto", "login01.example");
  } catch (const mill::Error&) {
  }
  return 0;
}
