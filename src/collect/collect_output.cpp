#include "mill/collect/collect_output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <optional>

#include "mill/base/atomic_file.hpp"
#include "mill/collect/collect.hpp"
#include "mill/base/error.hpp"

namespace mill {

namespace {

std::string_view first_line(std::string_view text) {
  const auto end = text.find('\n');
  return end == std::string_view::npos ? text : text.substr(0, end);
}

// aggregate.csv's header before the `stale` column existed: files of that mill are still collect's.
constexpr const char* kAggregateCsvHeaderWithoutStale =
    "model,task,benchmark,n_shot,limit,metric,aggregation,value,stderr,stderr_method,n_samples,n_tasks,"
    "n_tasks_expected,output_type,primary,key";

const char* mark_description(CollectFileKind kind) {
  switch (kind) {
    case CollectFileKind::aggregate_csv: return "its first line is not mill's aggregate.csv header";
    case CollectFileKind::report_md:
    case CollectFileKind::heatmap_svg: return "its first line is not mill collect's mark";
    case CollectFileKind::lm_eval_json: return "it has no \"exported_by\": \"mill ...\" field";
  }
  return "it lacks mill's mark";
}

// The file's bytes when it is a regular file, nullopt when it does not exist; anything else sets `problem`. Only its
// first bytes (enough for its mark) when its size is not `whole_if_size`: then it cannot equal what replaces it,
// and a 45 MB aggregate.csv need not be read.
std::optional<std::string> read_existing(const std::filesystem::path& path, std::string& problem,
                                         std::optional<std::size_t> whole_if_size) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return std::nullopt;
    problem = fmt::format("cannot look at {}: {}", path.string(), std::strerror(errno));
    return std::nullopt;
  }
  if (S_ISLNK(info.st_mode)) {
    problem = fmt::format("{} is a symbolic link, which mill collect did not make", path.string());
    return std::nullopt;
  }
  if (!S_ISREG(info.st_mode)) {
    problem = fmt::format("{} is not a regular file", path.string());
    return std::nullopt;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    problem = fmt::format("cannot read {} to check that mill collect wrote it: {}", path.string(), std::strerror(errno));
    return std::nullopt;
  }
  constexpr std::size_t kMarkBytes = 4096;
  const bool whole = !whole_if_size || static_cast<std::size_t>(info.st_size) == *whole_if_size;
  std::string content;
  char buffer[65536];
  while (whole || content.size() < kMarkBytes) {
    const auto got = ::read(fd, buffer, whole ? sizeof buffer : kMarkBytes - content.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      problem = fmt::format("cannot read {}: {}", path.string(), std::strerror(errno));
      ::close(fd);
      return std::nullopt;
    }
    if (got == 0) break;
    content.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return content;
}

// Whether `content` is a file of this kind that mill collect wrote (this version or an earlier one).
bool written_by_collect(std::string_view content, CollectFileKind kind) {
  switch (kind) {
    case CollectFileKind::aggregate_csv: {
      const auto header = first_line(content);
      return header == kAggregateCsvHeader || header == kAggregateCsvHeaderWithoutStale;
    }
    case CollectFileKind::report_md:
      // Reports of earlier versions had no mark but always began with this title and line.
      return first_line(content) == kReportMark || content.starts_with("# mill results\n\nCollected by mill ");
    case CollectFileKind::heatmap_svg:
      return first_line(content) == kHeatmapMark ||
             (content.starts_with("<svg ") &&
              content.substr(0, 2048).find(">mill results: primary metric per task") != std::string_view::npos);
    case CollectFileKind::lm_eval_json: {
      const auto document = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
      if (!document.is_object()) return false;
      const auto it = document.find("exported_by");
      return it != document.end() && it->is_string() && it->get<std::string>().starts_with(kExportedByPrefix);
    }
  }
  return false;
}

}  // namespace

std::vector<std::filesystem::path> write_collect_outputs(const std::vector<CollectOutput>& outputs) {
  std::vector<std::optional<std::string>> existing(outputs.size());
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const auto& output = outputs[i];
    std::string problem;
    // Exports are JSON (their mark is a field, so read whole); the others' mark is their first line.
    const bool whole = output.kind == CollectFileKind::lm_eval_json;
    existing[i] = read_existing(output.path, problem, whole ? std::nullopt : std::optional(output.content.size()));
    if (problem.empty() && existing[i] && !written_by_collect(*existing[i], output.kind)) {
      problem = fmt::format("{} was not written by mill collect ({})", output.path.string(),
                            mark_description(output.kind));
    }
    if (!problem.empty()) {
      throw Error(output.remedy.empty() ? problem + "; not overwriting it"
                                        : fmt::format("{}; not overwriting it: {}", problem, output.remedy));
    }
  }
  std::vector<std::filesystem::path> written;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const auto& output = outputs[i];
    if (existing[i] && existing[i]->size() == output.content.size()) {  // report.md's time has a fixed width
      const bool same = output.same_as ? output.same_as(*existing[i]) : *existing[i] == output.content;
      if (same) continue;
    }
    write_file_atomically(output.path, output.content);
    written.push_back(output.path);
  }
  return written;
}

}  // namespace mill
