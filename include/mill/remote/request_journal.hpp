#pragma once
// The request-level journal of the remote backends: every answered request is appended (one JSON line: request
// hash and the parsed answer) as soon as it arrives, so a rerun after an interruption or a failure does not send
// (or pay for) it again. Files live in one directory ($MILL_REMOTE_DIR/requests, docs/backends.md):
//   <scope hash>.<host>.<pid>.jsonl   one writer per file, so concurrent workers never interleave lines;
// a journal is read from every file of its scope. The scope is the model's identity and revision, so
// the answers of one model never serve another. Requests and answers hold no credentials.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>

namespace mill {

class RequestJournal {
 public:
  // An empty `directory` disables the journal (nothing is read or written).
  RequestJournal(std::filesystem::path directory, const std::string& scope);
  ~RequestJournal();
  RequestJournal(const RequestJournal&) = delete;
  RequestJournal& operator=(const RequestJournal&) = delete;

  // The key of a request: a hash of the scope and the request's logical content (kind and fields).
  std::string key(const nlohmann::json& request) const;

  const nlohmann::json* find(const std::string& key) const;
  // Appends and flushes one line. Write failures are logged, not thrown: the answer is still used.
  void record(const std::string& key, const nlohmann::json& answer);

  std::size_t size() const { return answers_.size(); }
  // The file this process appends to (empty until the first record).
  const std::filesystem::path& file() const { return file_path_; }

 private:
  std::filesystem::path directory_;
  std::string scope_hash_;
  std::unordered_map<std::string, nlohmann::json> answers_;
  std::filesystem::path file_path_;
  std::FILE* file_ = nullptr;
};

// Where the remote backends keep request journals and server logs: $MILL_REMOTE_DIR, else
// $MILL_CACHE_DIR/remote, $XDG_CACHE_HOME/mill/remote or ~/.cache/mill/remote. `mill eval` sets MILL_REMOTE_DIR
// to <output_dir>/remote when it is unset.
std::filesystem::path remote_state_dir();

}  // namespace mill
