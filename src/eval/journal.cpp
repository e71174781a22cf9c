#include "mill/eval/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/set_aside.hpp"

namespace mill {

namespace {
bool well_formed(const nlohmann::json& entry) {
  if (entry.is_discarded() || !entry.is_object()) return false;
  const auto doc_id = entry.find("doc_id");
  if (doc_id == entry.end() || !doc_id->is_number_integer()) return false;
  if (!entry.contains("key")) return false;
  const auto scores = entry.find("scores");
  if (scores == entry.end() || !scores->is_object()) return false;
  for (const auto& score : scores->items()) {
    if (!score.value().is_number()) return false;
  }
  const auto tokens = entry.find("n_tokens");
  return tokens == entry.end() || tokens->is_number_integer();
}
}  // namespace

JournalText parse_journal(std::string_view content) {
  JournalText out;
  std::size_t start = 0;
  while (start < content.size()) {
    auto end = content.find('\n', start);
    const bool complete = end != std::string_view::npos;
    if (!complete) end = content.size();
    const auto line = content.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    auto entry = nlohmann::json::parse(line, nullptr, false);
    // A line torn by a kill or garbage would otherwise fail the aggregation for good: its sample is evaluated again.
    if (!complete || !well_formed(entry)) {
      ++out.damaged;
      continue;
    }
    out.lines.push_back({line, std::move(entry)});
  }
  return out;
}

Journal::Journal(const std::filesystem::path& path, const std::string& key, const JournalExpectations& expect)
    : path_(path), key_(key), expect_(expect) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", path.parent_path().string(), ec.message()), ExitCode::eval_failed);

  std::string kept;
  bool rewrite = false;
  if (auto content = read_file_if_exists(path)) {
    auto parsed = parse_journal(*content);
    std::size_t foreign = 0;
    std::size_t damaged = parsed.damaged;
    std::string other_data;  // a fingerprint of other data found in this key's lines
    for (auto& [line, entry] : parsed.lines) {
      if (const auto version = entry.find("scoring_version");
          version != entry.end() && version->is_number_integer() && version->get<int>() > expect.scoring_version) {
        throw Error(fmt::format("journal {} was written by a newer mill (scoring_version {}; this mill's is {}); left "
                                "as it is: run this job with that mill or a newer one",
                                path.string(), version->get<int>(), expect.scoring_version),
                    ExitCode::eval_failed);
      }
      if (!entry["key"].is_string() || entry["key"].get<std::string>() != key_) {
        ++foreign;
        continue;
      }
      if (const auto data = entry.find("data_fingerprint"); !expect.data_fingerprint.empty() && data != entry.end() &&
                                                data->is_string() && *data != expect.data_fingerprint) {
        other_data = data->get<std::string>();
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
    if (!other_data.empty()) {
      // The data changed since the interrupted run (a file edited or replaced): its samples would mix with new
      // ones, so the job starts afresh and the old journal is kept aside.
      const auto aside = move_aside(path);
      note_ = fmt::format("journal {} was written for other data (fingerprint {}, now {}); kept it as {} and "
                          "starting afresh",
                          path.string(), other_data.substr(0, 12), expect.data_fingerprint.substr(0, 12), aside.string());
      entries_.clear();
      kept.clear();
    } else if (foreign > 0 && entries_.empty()) {
      // Computed for another key (another model revision, task definition or scorer): never mixed in.
      const auto aside = move_aside(path);
      note_ = fmt::format("journal {} was written for another job key; moved it to {} and starting afresh",
                          path.string(), aside.string());
      kept.clear();
      rewrite = false;
    } else if (foreign + damaged > 0) {
      // A few bad lines among this key's: keep the good ones and evaluate the dropped documents again. With lines
      // of another key the original is kept aside first, so nothing written is destroyed.
      const auto aside = foreign > 0 ? copy_aside(path) : std::filesystem::path();
      rewrite = true;
      note_ = fmt::format("journal {}: dropped {} damaged line(s) (torn by a kill or corrupted){}; their documents are "
                          "evaluated again",
                          path.string(), foreign + damaged,
                          foreign > 0 ? fmt::format(", {} of another job key (original kept as {})", foreign, aside.string())
                                      : std::string());
    }
    resumed_ = entries_.size();
  }
  if (rewrite) write_file_atomically(path, kept);
  // Appended through a descriptor that refuses a symlink planted in the results tree (O_NOFOLLOW); 0666 leaves
  // the permissions to the umask, so a teammate in a group-shared tree can resume the job.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0 && errno == ELOOP) {
    throw Error(fmt::format("journal {} is a symbolic link; mill never writes through links in the results tree "
                            "(remove it if you did not make it)",
                            path.string()),
                ExitCode::eval_failed);
  }
  file_ = fd < 0 ? nullptr : ::fdopen(fd, "ab");
  if (!file_) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    throw Error(fmt::format("cannot open journal {}: {}", path.string(), std::strerror(error)), ExitCode::eval_failed);
  }
}

Journal::~Journal() {
  if (file_) std::fclose(file_);
}

void Journal::append(const std::vector<nlohmann::json>& batch) {
  std::string text;
  for (auto entry : batch) {
    entry["key"] = key_;
    entry["scoring_version"] = expect_.scoring_version;
    if (!expect_.data_fingerprint.empty()) entry["data_fingerprint"] = expect_.data_fingerprint;
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
