#pragma once
// Task datasets: where a task's documents live (the data directory), and loaders for CSV (both MMLU layouts),
// JSON, JSON Lines and documents written inline in the task YAML. Every document becomes a JSON object.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/tasks.hpp"

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

}  // namespace mill
