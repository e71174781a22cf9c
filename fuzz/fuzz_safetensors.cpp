// Safetensors headers come from downloaded checkpoints: the parser must reject anything inconsistent with a
// mill::Error, and whatever it accepts must be safe to read (every byte range inside the file, sizes matching).
#include <cstdint>

#include "mill/base/error.hpp"
#include "mill/model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto header = mill::safetensors::parse_header(reinterpret_cast<const std::byte*>(data), size, "fuzz");
    if (header.data_offset > size) __builtin_trap();
    for (const auto& tensor : header.tensors) {
      if (tensor.begin > tensor.end || header.data_offset + tensor.end > size) __builtin_trap();
      if (static_cast<std::uint64_t>(tensor.numel()) * mill::safetensors::dtype_size(tensor.dtype) != tensor.end - tensor.begin) {
        __builtin_trap();
      }
    }
  } catch (const mill::Error&) {
  }
  return 0;
}
