// Reading results for collect: one file parsed into a CollectedResult, a whole results tree scanned in parallel.
#include "mill/collect/collect.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <thread>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/model/model_spec.hpp"

namespace mill {

std::string model_identity_of(const std::string& spec) {
  try {
    return ModelSpec::parse(spec).identity();
  } catch (const Error&) {
    return spec;  // not a spec mill can parse: compare it as written
  }
}

namespace {

// Reads a whole file with plain syscalls: collect reads 100k small files, where stream set-up would dominate.
bool read_whole_file(const std::filesystem::path& path, std::string& out, std::string& problem) {
  // O_NOFOLLOW: a symlink in the results tree is not mill's, and is not read as a result.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    problem = fmt::format("cannot open: {}", error == ELOOP ? "it is a symbolic link" : std::strerror(error));
    errno = error;
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    problem = fmt::format("cannot stat: {}", std::strerror(errno));
    ::close(fd);
    return false;
  }
  out.resize(static_cast<std::size_t>(info.st_size));
  std::size_t done = 0;
  while (true) {
    if (done == out.size()) out.resize(out.size() + 4096);  // the file grew, or st_size was 0 (procfs-like)
    const auto got = ::read(fd, out.data() + done, out.size() - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      problem = fmt::format("cannot read: {}", std::strerror(errno));
      ::close(fd);
      return false;
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  out.resize(done);
  ::close(fd);
  return true;
}

// One result file's bytes; nullopt with `problem` set when they are not a valid final result.
std::optional<CollectedResult> parse_collected_result(const std::filesystem::path& path, std::string_view content,
                                                      const TaskRegistry& registry, std::string& problem) {
  auto file = parse_result(content, problem);
  if (!file) return std::nullopt;
  if (file->metrics.empty()) {
    problem = "no metric has a numeric value";
    return std::nullopt;
  }
  CollectedResult result{std::move(*file), path};
  result.data = result.provenance = nullptr;  // collect holds every result of a tree in memory
  // The model is the one its results directory stands for (results/<model>/<task>/<file>): results moved there by
  // `mill migrate` and those of a moved checkpoint (found by content) share their directory's row.
  const auto model_directory = path.parent_path().parent_path().filename().string();
  auto identity = model_directory.empty() ? std::string() : name_from_path_component(model_directory);
  if (identity.empty()) identity = result.model_identity;
  if (identity.empty()) identity = string_field(result.key_inputs, "model");
  result.model = identity.empty() ? model_identity_of(result.model) : identity;
  const auto* task = registry.find(result.task);
  if (result.benchmark.empty() && task) result.benchmark = task->benchmark;
  if (result.output_type.empty() && task) result.output_type = to_string(task->output_type);
  return result;
}

}  // namespace

ResultScan scan_results(const std::filesystem::path& output_dir, const TaskRegistry& registry, unsigned threads) {
  ResultScan scan;
  std::vector<std::filesystem::path> files;
  const auto root = output_dir / "results";
  // The entries of one directory; one that exists but cannot be listed (or stops listing) is recorded, not skipped.
  const auto list = [&](const std::filesystem::path& dir) {
    std::vector<std::filesystem::directory_entry> entries;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    for (std::filesystem::directory_iterator end; !ec && it != end; it.increment(ec)) entries.push_back(*it);
    if (ec && !(dir == root && ec == std::errc::no_such_file_or_directory)) {
      scan.unreadable.push_back({dir, fmt::format("cannot list the directory: {}", ec.message())});
    }
    return entries;
  };
  // The layout is fixed (results/<model>/<task>/<file>), so three flat listings beat a recursive walk.
  std::error_code ec;
  for (const auto& model_dir : list(root)) {
    if (!model_dir.is_directory(ec)) continue;
    for (const auto& task_dir : list(model_dir.path())) {
      if (!task_dir.is_directory(ec)) continue;
      for (const auto& file : list(task_dir.path())) {
        const auto name = file.path().filename().native();
        if (!name.ends_with(".json") || name.front() == '.') continue;
        files.push_back(file.path());
      }
    }
  }
  std::sort(files.begin(), files.end());

  std::vector<std::optional<CollectedResult>> parsed(files.size());
  std::vector<std::string> problems(files.size());
  std::vector<char> cannot_open(files.size(), 0);  // permissions, not damage
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> bytes{0};
  const auto work = [&] {
    std::string content;
    std::size_t local_bytes = 0;
    while (true) {
      const auto i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= files.size()) break;
      if (!read_whole_file(files[i], content, problems[i])) {
        cannot_open[i] = errno == EACCES || errno == EPERM;
        continue;
      }
      local_bytes += content.size();
      try {
        parsed[i] = parse_collected_result(files[i], content, registry, problems[i]);
      } catch (const std::exception& e) {
        // A result that parses as JSON but has fields of unexpected types: skip it like any damaged file.
        problems[i] = one_line(e.what());
      }
    }
    bytes += local_bytes;
  };
  if (threads == 0) threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(1, files.size() / 64)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();

  scan.bytes = bytes;
  scan.results.reserve(files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (parsed[i]) {
      scan.results.push_back(std::move(*parsed[i]));
    } else if (cannot_open[i]) {
      scan.unreadable.push_back({files[i], problems[i]});
    } else {
      scan.skipped.push_back({files[i], problems[i].empty() ? "not a valid result" : problems[i]});
    }
  }
  std::sort(scan.unreadable.begin(), scan.unreadable.end(),
            [](const SkippedFile& a, const SkippedFile& b) { return a.path < b.path; });
  return scan;
}

bool CollectFilter::accepts(const CollectedResult& result) const {
  if (!model_identities.empty() && !model_identities.count(result.model)) return false;
  if (!tasks.empty() && !tasks.count(result.task)) return false;
  if (!n_shots.empty() && !n_shots.count(result.n_shot)) return false;
  return true;
}

}  // namespace mill
