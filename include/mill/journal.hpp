#pragma once
// The per-sample journal: append-only JSON Lines beside the result, one object per evaluated document, flushed
// after every batch, so a rerun of an interrupted job resumes where it stopped. Schema in docs/results.md.
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mill {

class Journal {
 public:
  // Opens (creating directories) the journal at `path` for the job with key digest `key`. Lines from an earlier
  // run with the same key are kept; a journal written for another key is set aside as <path>.stale (never
  // reused), and a torn last line from a killed run is dropped.
  Journal(const std::filesystem::path& path, const std::string& key);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Entries already recorded, by doc_id.
  const std::map<long long, nlohmann::json>& entries() const { return entries_; }
  bool has(long long doc_id) const { return entries_.count(doc_id) != 0; }
  std::size_t resumed() const { return resumed_; }
  const std::string& note() const { return note_; }  // what happened to an existing file, for the log

  // Appends entries (each must carry doc_id; `key` is set here) and flushes them to disk (fsync).
  void append(const std::vector<nlohmann::json>& batch);

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::string key_;
  std::FILE* file_ = nullptr;
  std::map<long long, nlohmann::json> entries_;
  std::size_t resumed_ = 0;
  std::string note_;
};

}  // namespace mill
