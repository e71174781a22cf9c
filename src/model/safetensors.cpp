#include "mill/model/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <fmt/format.h>
#include <limits>
#include <nlohmann/json.hpp>

#include "mill/base/error.hpp"

namespace mill::safetensors {

namespace {
struct DTypeEntry {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
constexpr DTypeEntry kDTypes[] = {  // in the order of DType
    {DType::F64, "F64", 8},  {DType::F32, "F32", 4},         {DType::F16, "F16", 2},        {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},  {DType::I32, "I32", 4},         {DType::I16, "I16", 2},        {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},    {DType::BOOL, "BOOL", 1},       {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};
static_assert(std::size(kDTypes) == static_cast<std::size_t>(DType::F8_E5M2) + 1, "one entry per DType");

// Headers of real checkpoints are a few hundred KiB; anything far larger is a corrupt length prefix.
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(fmt::format("{}: not a valid safetensors file: {}", source, what));
}
}  // namespace

std::string_view dtype_name(DType dtype) { return kDTypes[static_cast<std::size_t>(dtype)].name; }

std::size_t dtype_size(DType dtype) { return kDTypes[static_cast<std::size_t>(dtype)].size; }

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

const TensorInfo* Header::find(std::string_view name) const {
  for (const auto& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

Header parse_header(const std::byte* bytes, std::size_t size, const std::string& source) {
  if (size < 8) fail(source, fmt::format("the file has {} bytes, fewer than the 8-byte header length", size));
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  if (header_length > kMaxHeaderBytes) fail(source, fmt::format("the header length {} is implausible", header_length));
  if (header_length > size - 8) {
    fail(source, fmt::format("the header length {} runs past the end of the file ({} bytes; truncated?)", header_length,
                             size));
  }
  Header header;
  header.data_offset = 8 + header_length;
  const std::uint64_t data_size = size - header.data_offset;
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(reinterpret_cast<const char*>(bytes) + 8,
                                 reinterpret_cast<const char*>(bytes) + 8 + header_length);
  } catch (const nlohmann::json::exception& e) {
    fail(source, fmt::format("the header is not JSON ({})", e.what()));
  }
  if (!json.is_object()) fail(source, "the header is not a JSON object");
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(source, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) fail(source, fmt::format("__metadata__ value of {} is not a string", key));
        header.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    // A copy: clang 14 cannot capture a structured binding in a lambda.
    const std::string tensor = name;
    auto where = [&](const std::string& what) { fail(source, fmt::format("tensor {}: {}", tensor, what)); };
    if (!entry.is_object()) where("the entry is not an object");
    TensorInfo info;
    info.name = name;
    const auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string()) where("no dtype string");
    const auto dtype_text = dtype->get<std::string>();
    const auto known = std::find_if(std::begin(kDTypes), std::end(kDTypes),
                                    [&](const DTypeEntry& e) { return e.name == dtype_text; });
    if (known == std::end(kDTypes)) {
      where(fmt::format("unknown dtype \"{}\" (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3 or "
                        "F8_E5M2)",
                        dtype_text));
    }
    info.dtype = known->dtype;
    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array()) where("no shape array");
    if (shape->size() > 16) where("more than 16 dimensions");
    // The element count is bounded by the file size, so a huge dimension is rejected before it can overflow.
    std::uint64_t numel = 1;
    for (const auto& dimension : *shape) {
      if (!dimension.is_number_integer() || dimension.get<std::int64_t>() < 0) where("a shape entry is not a whole number ≥ 0");
      const auto d = dimension.get<std::uint64_t>();
      if (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 16 / d) where("the shape is too large");
      numel *= d;
      info.shape.push_back(static_cast<std::int64_t>(d));
    }
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      where("data_offsets is not a pair of whole numbers");
    }
    info.begin = (*offsets)[0].get<std::uint64_t>();
    info.end = (*offsets)[1].get<std::uint64_t>();
    if (info.begin > info.end) where(fmt::format("data_offsets [{}, {}] are reversed", info.begin, info.end));
    if (info.end > data_size) {
      where(fmt::format("data_offsets end {} is past the data section ({} bytes; truncated file?)", info.end, data_size));
    }
    if (info.end - info.begin != numel * known->size) {
      where(fmt::format("{} bytes do not match shape × {} ({} bytes)", info.end - info.begin, dtype_text,
                        numel * known->size));
    }
    header.tensors.push_back(std::move(info));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (std::size_t i = 1; i < header.tensors.size(); ++i) {
    const auto& previous = header.tensors[i - 1];
    const auto& current = header.tensors[i];
    if (current.begin < previous.end && current.end > current.begin) {
      fail(source, fmt::format("tensors {} and {} overlap", previous.name, current.name));
    }
  }
  return header;
}

std::string serialize(const std::vector<TensorToWrite>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    std::uint64_t numel = 1;
    for (auto d : tensor.shape) numel *= static_cast<std::uint64_t>(d);
    if (numel * dtype_size(tensor.dtype) != tensor.bytes.size()) {
      throw Error(fmt::format("safetensors writer: tensor {} has {} bytes, its shape needs {}", tensor.name,
                              tensor.bytes.size(), numel * dtype_size(tensor.dtype)),
                  ExitCode::internal);
    }
    header[tensor.name] = {{"dtype", dtype_name(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  std::string text = header.dump();
  // Aligning the data section lets readers map tensors in place.
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::string out;
  out.reserve(8 + text.size() + offset);
  std::uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
  out += text;
  for (const auto& tensor : tensors) out += tensor.bytes;
  return out;
}

std::uint16_t float_to_bf16(float value) {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  if (std::isnan(value)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  const std::uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

std::uint16_t float_to_f16(float value) {
  const auto bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000;
  const std::uint32_t magnitude = bits & 0x7fffffff;
  if (magnitude > 0x7f800000) return static_cast<std::uint16_t>(sign | 0x7e00);  // NaN
  if (magnitude >= 0x477ff000) return static_cast<std::uint16_t>(sign | 0x7c00);  // overflow to infinity
  if (magnitude < 0x38800000) {
    // Subnormal half (or zero): scale into the 10-bit mantissa with round to nearest even.
    const float absolute = std::bit_cast<float>(magnitude);
    const float scaled = absolute * 16777216.0f;  // 2^24: one half subnormal step becomes 1
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(scaled)));
  }
  const std::uint32_t exponent = ((magnitude >> 23) - 127 + 15) << 10;
  const std::uint32_t mantissa = magnitude & 0x7fffff;
  std::uint32_t half = exponent | (mantissa >> 13);
  const std::uint32_t remainder = mantissa & 0x1fff;
  if (remainder > 0x1000 || (remainder == 0x1000 && (half & 1))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1f;
  const std::uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {
    const float value = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -value : value;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000 | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

}  // namespace mill::safetensors
