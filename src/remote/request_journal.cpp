#include "mill/remote/request_journal.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "mill/base/text.hpp"
#include "mill/base/host.hpp"

namespace mill {

namespace {
// Bumped when the meaning of a journaled answer changes, so old lines are ignored rather than misread.
constexpr const char* kJournalFormat = "mill.request-journal/1";

}  // namespace

RequestJournal::RequestJournal(std::filesystem::path directory, const std::string& scope)
    : directory_(std::move(directory)),
      scope_hash_(content_hash(std::string(kJournalFormat) + "\n" + scope).substr(0, 20)) {
  if (directory_.empty()) return;
  std::error_code ec;
  if (!std::filesystem::is_directory(directory_, ec)) return;
  const std::string prefix = scope_hash_ + ".";
  for (const auto& entry : std::filesystem::directory_iterator(directory_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || entry.path().extension() != ".jsonl") continue;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      const auto parsed = nlohmann::json::parse(line, nullptr, false);
      // A torn last line (a killed writer) or a foreign line is skipped; the request is simply sent again.
      if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("key") || !parsed["key"].is_string() ||
          !parsed.contains("answer")) {
        continue;
      }
      answers_[parsed["key"].get<std::string>()] = parsed["answer"];
    }
  }
}

RequestJournal::~RequestJournal() {
  if (file_) std::fclose(file_);
}

std::string RequestJournal::key(const nlohmann::json& request) const {
  return content_hash(scope_hash_ + "\n" + request.dump());
}

const nlohmann::json* RequestJournal::find(const std::string& key) const {
  const auto it = answers_.find(key);
  return it == answers_.end() ? nullptr : &it->second;
}

void RequestJournal::record(const std::string& key, const nlohmann::json& answer) {
  answers_[key] = answer;
  if (directory_.empty()) return;
  if (!file_) {
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    file_path_ = directory_ / fmt::format("{}.{}.{}.jsonl", scope_hash_, path_component(mill::host_name()), ::getpid());
    // Never through a symlink planted in a shared results tree; permissions from the umask.
    const int fd = ::open(file_path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
    file_ = fd < 0 ? nullptr : ::fdopen(fd, "a+");
    if (!file_ && fd >= 0) ::close(fd);
    if (!file_) {
      spdlog::warn("cannot write the request journal {}: {}; answers are not kept for a rerun", file_path_.string(),
                   std::strerror(errno));
      directory_.clear();
      return;
    }
    // A killed process that had this pid on this host may have left a torn last line: end it, so that our first
    // line is not glued to it and lost.
    const bool torn = std::fseek(file_, -1, SEEK_END) == 0 && std::fgetc(file_) != '\n';
    std::fseek(file_, 0, SEEK_END);  // the switch from reading to writing needs a seek
    if (torn) std::fputc('\n', file_);
  }
  const auto line = nlohmann::json{{"key", key}, {"answer", answer}}.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    spdlog::warn("cannot append to the request journal {}", file_path_.string());
  }
}

std::filesystem::path remote_state_dir() {
  auto environment = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value ? value : "";
  };
  if (auto value = environment("MILL_REMOTE_DIR"); !value.empty()) return value;
  if (auto value = environment("MILL_CACHE_DIR"); !value.empty()) return std::filesystem::path(value) / "remote";
  if (auto value = environment("XDG_CACHE_HOME"); !value.empty())
    return std::filesystem::path(value) / "mill" / "remote";
  if (auto value = environment("HOME"); !value.empty())
    return std::filesystem::path(value) / ".cache" / "mill" / "remote";
  return std::filesystem::temp_directory_path() / "mill-remote";
}

}  // namespace mill
