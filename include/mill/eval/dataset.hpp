#pragma once
// Task datasets: where a task's documents live (the data directory), and loaders for CSV (both MMLU layouts),
// TSV, JSON, JSON Lines and documents written inline in the task YAML. Every document becomes a JSON object, after the
// task's `dataset.filter` and then its `preprocess:` steps (preprocess.hpp).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/eval/tasks.hpp"

namespace mill {

// --data_dir, else $MILL_DATA_DIR, else none (tasks with inline documents need none).
std::optional<std::filesystem::path> resolve_data_dir(const std::optional<std::filesystem::path>& flag);

// Splits CSV text into rows (RFC 4180: quoted fields may hold commas, quotes and newlines).
// `source` names the file in error messages.
std::vector<std::vector<std::string>> parse_csv(std::string_view text, const std::string& source);

// Rows of an MMLU CSV file as {"question", "choices": [4], "answer": 0-based index}. Accepts the Hugging Face
// export (header question,choice0..choice3,answer with an index) and the original release (no header, answer
// letter A-D).
std::vector<nlohmann::json> parse_mmlu_csv(std::string_view text, const std::string& source);

struct SplitData {
  std::vector<nlohmann::json> documents;  // after the task's `dataset.filter`, in file order
  std::string origin;                     // the file read, or "inline"
  std::string fingerprint;                // content hash of the bytes read
};

// Loads one split of a task (fields under `dataset:` in docs/tasks.md). A missing file names the task, the
// split, the path looked for and the data directory it was looked under.
SplitData load_split(const TaskInfo& task, const std::string& split, const std::optional<std::filesystem::path>& data_dir);

// The file a split is read from: dataset.path with {split} replaced, under `data_dir` unless it is absolute. A
// relative path without a data directory throws mill::Error naming --data_dir / MILL_DATA_DIR.
std::filesystem::path data_file_path(const TaskInfo& task, const std::string& split,
                                     const std::optional<std::filesystem::path>& data_dir);

// A file pattern of the task's (dataset.path, dataset.labels_path) for one split: {split} replaced, under `data_dir`
// unless absolute.
std::filesystem::path split_file_path(const TaskInfo& task, const std::string& pattern, const std::string& split,
                                      const std::optional<std::filesystem::path>& data_dir);

// Whether the task's documents come from files (not written inline in its YAML).
bool task_reads_files(const TaskInfo& task);

// The plan-time check of one split, without reading whole files: the file exists and parses as far as it is read,
// which is until `needed` documents (after the task's filter when `filtered`) are found or the file ends. Returns
// the number found (less than `needed` only when the split has no more); problems throw mill::Error.
std::size_t check_split(const TaskInfo& task, const std::string& split, const std::optional<std::filesystem::path>& data_dir,
                        std::size_t needed, bool filtered);

}  // namespace mill
