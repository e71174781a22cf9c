#include "mill/journal.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "mill/atomic_file.hpp"
#include "mill/error.hpp"

namespace mill {

Journal::Journal(const std::filesystem::path& path, const std::string& key) : path_(path), key_(key) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", path.parent_path().string(), ec.message()), ExitCode::eval_failed);

  std::string kept;
  bool rewrite = false;
  if (auto content = read_file_if_exists(path)) {
    std::size_t start = 0;
    std::size_t foreign = 0;
    std::size_t damaged = 0;
    while (start < content->size()) {
      auto end = content->find('\n', start);
      const bool complete = end != std::string::npos;
      if (!complete) end = content->size();
      const auto line = std::string_view(*content).substr(start, end - start);
      start = end + 1;
      if (line.empty()) continue;
      auto entry = nlohmann::json::parse(line, nullptr, false);
      if (!complete || entry.is_discarded() || !entry.is_object() || !entry.contains("doc_id") ||
          !entry["doc_id"].is_number_integer()) {
        ++damaged;  // a line torn by a kill, or garbage: its sample is simply evaluated again
        continue;
      }
      if (entry.value("key", std::string()) != key_) {
        ++foreign;
        continue;
      }
      const auto doc_id = entry["doc_id"].get<long long>();
      if (entries_.count(doc_id)) {
        ++damaged;  // duplicates cannot come from mill itself; keep the first
        continue;
      }
      kept.append(line);
      kept += '\n';
      entries_.emplace(doc_id, std::move(entry));
    }
    if (foreign > 0) {
      // Computed for another key (another model revision, task definition or scorer): never mixed in.
      std::filesystem::path stale = path;
      stale += ".stale";
      std::filesystem::rename(path, stale, ec);
      note_ = fmt::format("journal {} was written for another job key; moved it to {} and starting afresh",
                          path.string(), stale.string());
      entries_.clear();
      kept.clear();
      rewrite = false;
    } else if (damaged > 0) {
      rewrite = true;
      note_ = fmt::format("journal {}: dropped {} damaged line(s) (a run was killed mid-write)", path.string(), damaged);
    }
    resumed_ = entries_.size();
  }
  if (rewrite) write_file_atomically(path, kept);
  file_ = std::fopen(path.c_str(), "ab");
  if (!file_) {
    throw Error(fmt::format("cannot open journal {}: {}", path.string(), std::strerror(errno)), ExitCode::eval_failed);
  }
}

Journal::~Journal() {
  if (file_) std::fclose(file_);
}

void Journal::append(const std::vector<nlohmann::json>& batch) {
  std::string text;
  for (auto entry : batch) {
    entry["key"] = key_;
    text += entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    const auto doc_id = entry["doc_id"].get<long long>();
    entries_[doc_id] = std::move(entry);
  }
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fflush(file_) != 0 ||
      ::fsync(::fileno(file_)) != 0) {
    throw Error(fmt::format("cannot write journal {}: {}", path_.string(), std::strerror(errno)), ExitCode::eval_failed);
  }
}

}  // namespace mill
