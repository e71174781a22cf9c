#pragma once
// The final result file (schema in docs/results.md) and the result-cache check that decides "done".
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "mill/eval/job.hpp"

namespace mill {

inline constexpr const char* kResultSchema = "mill.result/1";

enum class ResultState {
  done,     // a valid result with the expected key
  missing,  // no result file
  stale,    // a valid result, but computed with different key inputs
  corrupt,  // unreadable, not JSON, or not a valid result document
};
std::string to_string(ResultState state);

struct ResultCheck {
  ResultState state = ResultState::missing;
  std::string reason;  // empty when done; otherwise a short explanation for the job table
  // A stale result computed by a newer scorer (its key's scoring_version is higher than the one expected now):
  // this mill never overwrites it, so the planner does not run the job.
  std::optional<int> newer_scoring_version;
};

// Why `document` is not a valid final result (empty string when it is valid).
std::string result_document_problem(const nlohmann::json& document);

// The scoring_version in `key_inputs` when it is higher than the one in `expected_inputs` (a result of a newer
// mill, which this one must not overwrite), else nothing.
std::optional<int> newer_scoring_version(const nlohmann::json& key_inputs, const nlohmann::json& expected_inputs);

// Reads the result file at `path` and compares it with the key the job expects now.
ResultCheck check_result(const std::filesystem::path& path, const JobKey& expected);

// Throws mill::Error (eval_failed) naming both scoring versions when the result at `path` was computed by a newer
// scorer than the one `expected` belongs to: an older mill must not replace it.
void refuse_to_overwrite_newer_result(const std::filesystem::path& path, const JobKey& expected);

// Validates `document` and writes it atomically; an invalid document is a bug (ExitCode::internal).
void write_result(const std::filesystem::path& path, const nlohmann::json& document);

}  // namespace mill
