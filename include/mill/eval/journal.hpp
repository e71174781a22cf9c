#pragma once
// The per-sample journal: append-only JSON Lines beside the result, one object per evaluated document, flushed
// after every batch, so a rerun of an interrupted job resumes where it stopped. Schema in docs/results.md.
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mill/base/version.hpp"

namespace mill {

// What the lines of a journal must agree with, besides the job key, to be reused.
struct JournalExpectations {
  int scoring_version = kScoringVersion;  // a line from a newer scorer stops the job: never overwritten
  std::string data_fingerprint;           // of the data read now; lines of other data restart the job (empty: not checked)
};

// One usable line of a journal's text: its parsed entry (an object with an integer doc_id, a key, numeric scores
// and, if present, an integer n_tokens) and the line as written, which a rewrite keeps verbatim.
struct JournalLine {
  std::string_view text;
  nlohmann::json entry;
};
// The usable lines of a journal in file order; `damaged` counts the others: a last line torn by a kill (no newline),
// garbage, a field of the wrong type. The one reader of journal files (the engine resuming, compare).
struct JournalText {
  std::vector<JournalLine> lines;
  std::size_t damaged = 0;
};
JournalText parse_journal(std::string_view content);

class Journal {
 public:
  // Opens (creating directories) the journal at `path` for the job with key digest `key`. Lines from an earlier
  // run with the same key and data are kept; a journal written for another key or other data is set aside under
  // the first free name of <path>.stale, <path>.stale.1, ... (never reused, never overwritten), and a torn last
  // line from a killed run is dropped. A line written by a newer scorer is mill::Error (eval_failed), the file
  // left as it is.
  Journal(const std::filesystem::path& path, const std::string& key, const JournalExpectations& expect = {});
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Entries already recorded, by doc_id.
  const std::map<long long, nlohmann::json>& entries() const { return entries_; }
  bool has(long long doc_id) const { return entries_.count(doc_id) != 0; }
  std::size_t resumed() const { return resumed_; }
  const std::string& note() const { return note_; }  // what happened to an existing file, for the log

  // Appends entries (each must carry doc_id; `key`, `scoring_version` and `data_fingerprint` are set here) and flushes them
  // to disk (fsync).
  void append(const std::vector<nlohmann::json>& batch);

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::string key_;
  JournalExpectations expect_;
  std::FILE* file_ = nullptr;
  std::map<long long, nlohmann::json> entries_;
  std::size_t resumed_ = 0;
  std::string note_;
};

}  // namespace mill
