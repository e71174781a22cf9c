#include "mill/sweep/work_estimate.hpp"

#include <sys/stat.h>

#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/eval/dataset.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

// Documents rendered to measure the mean request: enough to average over, few enough to stay fast.
constexpr int kMeasuredDocuments = 32;

// The data files' identity without reading them: path, size and modification time.
std::string file_stamp(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return path.string() + ":missing";
  return fmt::format("{}:{}:{}.{}", path.string(), info.st_size, info.st_mtim.tv_sec, info.st_mtim.tv_nsec);
}

std::string estimate_key(const TaskInfo& task, int n_shot, std::optional<int> limit,
                         const std::optional<std::filesystem::path>& data_dir) {
  std::string stamps;
  if (task_reads_files(task)) {
    for (const char* field : {"eval_split", "fewshot_split"}) {
      const auto split = task.definition.value(field, std::string(field == std::string("eval_split") ? "test" : ""));
      if (split.empty()) continue;
      try {
        stamps += file_stamp(data_file_path(task, split, data_dir)) + ";";
      } catch (const Error&) {
        stamps += "unresolved;";
      }
    }
  }
  // The task's fingerprint is what its job keys use: its definition, less metadata.
  return content_hash(fmt::format("{}\n{}\n{}\n{}", task.fingerprint, n_shot, limit ? *limit : -1, stamps));
}

}  // namespace

WorkEstimator::WorkEstimator(std::filesystem::path cache_dir, std::optional<std::filesystem::path> data_dir)
    : data_dir_(std::move(data_dir)) {
  if (cache_dir.empty()) return;
  cache_file_ = cache_dir / "work-estimates.json";
  try {
    if (const auto text = read_file_if_exists(cache_file_)) {
      auto cached = nlohmann::json::parse(*text, nullptr, false);
      if (cached.is_object()) cache_ = std::move(cached);
    }
  } catch (const Error&) {
    // an unreadable cache is an empty one
  }
}

JobWork WorkEstimator::estimate(const TaskInfo& task, int n_shot, std::optional<int> limit) {
  // Every model of a sweep asks for the same (task, n_shot, limit): answered once per process.
  const auto asked = std::make_tuple(&task, n_shot, limit.value_or(-1));
  if (const auto it = answered_.find(asked); it != answered_.end()) return it->second;
  const auto key = estimate_key(task, n_shot, limit, data_dir_);
  if (const auto it = cache_.find(key); it != cache_.end() && it->is_object()) {
    return answered_[asked] =
               JobWork{it->value("documents", 0.0), it->value("input_bytes", 0.0), it->value("output_tokens", 0.0)};
  }
  const int measured_limit = limit ? std::min(*limit, kMeasuredDocuments) : kMeasuredDocuments;
  const auto prepared = prepare_task(task, n_shot, measured_limit, data_dir_);
  std::vector<const Sample*> samples;
  for (const auto& sample : prepared.samples) samples.push_back(&sample);
  const auto measured = work_of_samples(samples);
  double documents = prepared.data["eval"].value("documents", 0.0);
  if (limit) documents = std::min(documents, static_cast<double>(*limit));
  JobWork work;
  work.documents = documents;
  work.input_bytes = measured.documents > 0 ? measured.input_bytes / measured.documents * documents : 0;
  if (task.output_type == OutputType::generative) {
    work.output_tokens = documents * generation_settings(task).max_new_tokens;
  }
  cache_[key] = {{"task", task.name}, {"documents", work.documents}, {"input_bytes", work.input_bytes},
                 {"output_tokens", work.output_tokens}};
  changed_ = true;
  return answered_[asked] = work;
}

void WorkEstimator::save() const {
  if (!changed_ || cache_file_.empty()) return;
  try {
    std::error_code ec;
    std::filesystem::create_directories(cache_file_.parent_path(), ec);
    write_file_atomically(cache_file_, cache_.dump() + "\n");
  } catch (const Error&) {
  }
}

}  // namespace mill
