// The remote backends' request journals are shared by every worker of a sweep and read back on reruns: any
// content of a journal file must load (bad lines skipped) and must never turn into an answer for a request
// it was not recorded for.
#include <cstdint>
#include <filesystem>
#include <string>

#include "mill/remote/request_journal.hpp"
#include "scratch_dir.hpp"

namespace {

const std::string scope = "fuzz-model@rev";

struct Scratch : mill::fuzz::ScratchDir {
  std::filesystem::path journal_file;  // the name this process's journal writes to, found once
  Scratch() : ScratchDir("request-journal") {
    mill::RequestJournal journal(path, scope);
    journal.record(journal.key({{"probe", true}}), true);
    journal_file = journal.file();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Scratch scratch;
  mill::fuzz::write_input(scratch.journal_file, data, size);
  const nlohmann::json request = {{"kind", "loglikelihood"}, {"context", "fuzz"}, {"continuation", " me"}};
  const nlohmann::json answer = {{"logprob", -1.5}, {"greedy", false}};
  {
    mill::RequestJournal journal(scratch.path, scope);
    const auto key = journal.key(request);
    if (journal.key(request) != key || key.empty()) __builtin_trap();
    (void)journal.find(key);
    journal.record(key, answer);
    if (journal.find(key) == nullptr || *journal.find(key) != answer) __builtin_trap();
  }
  // Whatever the file held (a torn last line included), our line stands alone, so a rerun finds the answer.
  mill::RequestJournal again(scratch.path, scope);
  const auto* found = again.find(again.key(request));
  if (found == nullptr || *found != answer) __builtin_trap();
  return 0;
}
