#pragma once
// The final result file (schema in docs/results.md) and the result-cache check that decides "done".
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "mill/job.hpp"

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
};

// Why `document` is not a valid final result (empty string when it is valid).
std::string result_document_problem(const nlohmann::json& document);

// Reads the result file at `path` and compares it with the key the job expects now.
ResultCheck check_result(const std::filesystem::path& path, const JobKey& expected);

// Validates `document` and writes it atomically; an invalid document is a bug (ExitCode::internal).
void write_result(const std::filesystem::path& path, const nlohmann::json& document);

}  // namespace mill
