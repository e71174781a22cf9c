#pragma once
// The safetensors file format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw little-endian tensor bytes. The parser checks everything a
// loader relies on, so a truncated or inconsistent file is a clear mill::Error and never an out-of-bounds read;
// it takes plain bytes so it can be fuzzed on its own. The writer serves `mill demo-model` and the tests.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mill::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

std::string_view dtype_name(DType dtype);  // "F32", "BF16", ...
std::size_t dtype_size(DType dtype);       // bytes per element

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte range relative to the start of the data section
  std::uint64_t end = 0;
  std::int64_t numel() const;
};

struct Header {
  std::uint64_t data_offset = 0;           // where the data section starts in the file (8 + header length)
  std::vector<TensorInfo> tensors;         // in file order of their data
  std::map<std::string, std::string> metadata;  // the optional "__metadata__" string map
  const TensorInfo* find(std::string_view name) const;
};

// Parses and validates the header of a whole safetensors file held in `bytes` (e.g. memory-mapped). `source`
// names the file in error messages. Checks: the length prefix fits the file, the header is a JSON object, each
// entry has a known dtype, a non-negative shape and offsets inside the data section whose size matches the
// shape, and no two tensors overlap.
Header parse_header(const std::byte* bytes, std::size_t size, const std::string& source);

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::string bytes;  // little-endian raw data, numel * dtype_size bytes
};

// Serialises tensors (in the given order) into safetensors bytes; the header is padded to 8-byte alignment.
std::string serialize(const std::vector<TensorToWrite>& tensors, const std::map<std::string, std::string>& metadata = {});

// Float conversions used to write half-precision tensors (round to nearest even).
std::uint16_t float_to_bf16(float value);
std::uint16_t float_to_f16(float value);
float bf16_to_float(std::uint16_t bits);
float f16_to_float(std::uint16_t bits);

}  // namespace mill::safetensors
