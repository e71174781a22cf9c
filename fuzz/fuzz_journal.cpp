// Per-sample journals are read back after kill -9, full disks and hand edits: whatever the file holds, opening
// it must give a usable journal (damaged lines dropped, a foreign one set aside) or a mill::Error, and what is
// appended afterwards must be read back exactly by the next open.
#include <cstdint>
#include <filesystem>
#include <string>

#include "mill/base/error.hpp"
#include "mill/eval/journal.hpp"
#include "scratch_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const mill::fuzz::ScratchDir scratch("journal");
  const auto path = scratch.path / "job.jsonl";
  std::error_code ec;
  std::filesystem::remove(scratch.path / "job.jsonl.stale", ec);
  mill::fuzz::write_input(path, data, size);
  const std::string key = "fuzz-key";
  constexpr long long new_doc = 1LL << 40;
  try {
    std::size_t expected = 0;
    {
      mill::Journal journal(path, key);
      for (const auto& [doc_id, entry] : journal.entries()) {
        if (!entry.is_object() || entry.value("key", std::string()) != key || entry.at("doc_id") != doc_id)
          __builtin_trap();
      }
      if (journal.resumed() != journal.entries().size()) __builtin_trap();
      journal.append({nlohmann::json{
          {"doc_id", new_doc}, {"scores", {{"acc", 1}}}, {"n_tokens", 2}, {"prediction", "caf\xc3\xa9"}}});
      if (!journal.has(new_doc)) __builtin_trap();
      expected = journal.entries().size();
    }
    // The file is clean now: everything is read back and nothing is reported damaged or foreign.
    mill::Journal again(path, key);
    if (again.entries().size() != expected || !again.has(new_doc) || !again.note().empty()) __builtin_trap();
  } catch (const mill::Error&) {
  }
  return 0;
}
