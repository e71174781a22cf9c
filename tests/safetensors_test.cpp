#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "mill/base/error.hpp"
#include "mill/model/safetensors.hpp"

using namespace mill;
using namespace mill::safetensors;

namespace {
std::string float_bytes(const std::vector<float>& values) {
  std::string out(values.size() * 4, '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

Header parse(const std::string& bytes) {
  return parse_header(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "test.safetensors");
}

// A file with a hand-written header (for inconsistent headers the writer would never produce).
std::string with_header(const std::string& json, std::size_t data_bytes) {
  std::string out;
  const std::uint64_t length = json.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
  return out + json + std::string(data_bytes, '\0');
}
}  // namespace

TEST_CASE("safetensors files round-trip through the writer and the parser") {
  const std::string bytes = serialize({{"a.weight", DType::F32, {2, 3}, float_bytes({1, 2, 3, 4, 5, 6})},
                                       {"b", DType::BF16, {1}, std::string("\x80\x3f", 2)},
                                       {"empty", DType::F16, {0, 4}, ""}},
                                      {{"format", "pt"}});
  const auto header = parse(bytes);
  CHECK(header.data_offset % 8 == 0);
  CHECK(header.metadata.at("format") == "pt");
  REQUIRE(header.tensors.size() == 3);
  const auto* a = header.find("a.weight");
  REQUIRE(a);
  CHECK(a->dtype == DType::F32);
  CHECK(a->shape == std::vector<std::int64_t>{2, 3});
  CHECK(a->end - a->begin == 24);
  float fifth = 0;
  std::memcpy(&fifth, bytes.data() + header.data_offset + a->begin + 4 * 4, 4);
  CHECK(fifth == 5.0f);
  CHECK(header.find("b")->numel() == 1);
  CHECK(header.find("missing") == nullptr);
}

TEST_CASE("every truncation of a safetensors file is a clear error, never a crash") {
  const std::string bytes = serialize({{"w", DType::F32, {4, 4}, float_bytes(std::vector<float>(16, 0.5f))}});
  for (std::size_t size = 0; size < bytes.size(); ++size) {
    const std::string truncated = bytes.substr(0, size);
    CHECK_THROWS_AS(parse(truncated), Error);
  }
  CHECK_NOTHROW(parse(bytes));
}

TEST_CASE("inconsistent safetensors headers are rejected with the reason") {
  auto message = [](const std::string& bytes) {
    try {
      parse(bytes);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(message(with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4)),
             Catch::Contains("do not match"));
  CHECK_THAT(message(with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4)),
             Catch::Contains("past the data section"));
  CHECK_THAT(message(with_header("{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)),
             Catch::Contains("unknown dtype"));
  CHECK_THAT(message(with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                                 12)),
             Catch::Contains("overlap"));
  CHECK_THAT(message(with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0)),
             Catch::Contains("shape"));
  CHECK_THAT(message(with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                                 "\"data_offsets\":[0,0]}}",
                                 0)),
             Catch::Contains("too large"));
  CHECK_THAT(message(with_header("[1,2]", 0)), Catch::Contains("not a JSON object"));
  CHECK_THAT(message(with_header("{\"w\":", 0)), Catch::Contains("not JSON"));
  CHECK_THAT(message(std::string("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10)), Catch::Contains("implausible"));
  CHECK_THAT(message(with_header("{}", 0)), Catch::Contains("no error"));  // an empty file is valid
}

TEST_CASE("half-precision conversions round to nearest even and survive a round trip") {
  for (float value : {0.0f, 1.0f, -2.5f, 0.333f, 65504.0f, 1e-6f, -1e-3f, 3.14159f}) {
    CHECK(bf16_to_float(float_to_bf16(value)) == Approx(value).epsilon(1.0 / 128));
    CHECK(f16_to_float(float_to_f16(value)) == Approx(value).epsilon(1.0 / 1024).margin(1e-7));
  }
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_f16(1.0f) == 0x3c00);
  CHECK(float_to_f16(-2.0f) == 0xc000);
  CHECK(std::isinf(f16_to_float(float_to_f16(1e6f))));
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even mantissa (1.0).
  CHECK(float_to_bf16(1.0f + 1.0f / 256) == 0x3f80);
}
