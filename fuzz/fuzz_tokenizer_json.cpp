// tokenizer.json files come with downloaded checkpoints: loading one must succeed or throw mill::Error, and a
// loaded tokenizer must encode and decode text without reading out of bounds, every id inside its vocabulary.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "mill/error.hpp"
#include "mill/tokenizer.hpp"

namespace {

struct ScratchDir {
  std::filesystem::path path =
      std::filesystem::path("/dev/shm") / ("mill-fuzz-tokenizer-" + std::to_string(::getpid()));
  ScratchDir() { std::filesystem::create_directories(path); }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Words, digits, whitespace runs, punctuation, special-token spellings, multi-byte and invalid UTF-8.
constexpr std::string_view sample =
    "Hello wor1d's  12345\n\t<s>x</s><|endoftext|> caf\xc3\xa9 \xe2\x96\x81\xf0\x9f\x98\x80!?\xff\xc3";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ScratchDir scratch;
  const auto file = scratch.path / "tokenizer.json";
  if (std::FILE* out = std::fopen(file.c_str(), "wb")) {
    if (size > 0) std::fwrite(data, 1, size, out);
    std::fclose(out);
  }
  try {
    const auto tokenizer = mill::Tokenizer::load(file);
    for (const bool special : {true, false}) {
      const auto ids = tokenizer->encode(sample, special);
      for (const auto id : ids)
        if (id < 0 || static_cast<std::size_t>(id) >= tokenizer->vocab_size()) __builtin_trap();
      (void)tokenizer->decode(ids, special);
    }
    (void)mill::encode_pair(*tokenizer, "Question: 2+2= ", "4", true);
  } catch (const mill::Error& e) {
    // For writing seeds: MILL_FUZZ_VERBOSE=1 <target> <file> says why a file was rejected.
    static const bool verbose = std::getenv("MILL_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
  }
  return 0;
}
