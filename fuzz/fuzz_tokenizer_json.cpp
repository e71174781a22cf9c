// tokenizer.json files come with downloaded checkpoints: loading one must succeed or throw mill::Error, and a
// loaded tokenizer must encode and decode text without reading out of bounds, every id inside its vocabulary.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "mill/base/error.hpp"
#include "mill/tokenizers/tokenizer.hpp"
#include "scratch_dir.hpp"

namespace {

// Words, digits, whitespace runs, punctuation, special-token spellings, multi-byte and invalid UTF-8.
constexpr std::string_view sample =
    "Hello wor1d's  12345\n\t<s>x</s><|endoftext|> caf\xc3\xa9 \xe2\x96\x81\xf0\x9f\x98\x80!?\xff\xc3";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const mill::fuzz::ScratchDir scratch("tokenizer");
  const auto file = scratch.path / "tokenizer.json";
  mill::fuzz::write_input(file, data, size);
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
