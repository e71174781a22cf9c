#pragma once
// The per-sample journal: append-only JSON Lines beside the result, one object per evaluated document, flushed
// after every batch, so a rerun of an interrupted job resumes where it stopped. Schema in docs/results.md.
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/base/version.hpp"

namespace mill {

// What the lines of a journal must agree with, besides the job key, to be reused.
struct JournalExpectations {
  int scoring_version = kScoringVersion;  // a line from a newer scorer stops the job: never overwritten
  std::string data_fingerprint;           // of the data read now; lines of other data restart the job (empty: not checked)
};

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
