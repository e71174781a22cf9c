#pragma once
// The final result file (schema in docs/results.md): its one parser, its validated writer, and the result-cache
// check that decides "done". The engine's run_job is the one place that builds a result document.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// Why `document` is not a valid final result (empty string when it is valid).
std::string result_document_problem(const nlohmann::json& document);

// One metric of a result file as read back; a metric the run could not compute (null in the file) is left out.
struct ResultMetric {
  std::string name;
  double value = 0;
  std::optional<double> standard_error;
  std::string stderr_method;  // what the result says produced it ("bootstrap", ...); "result" when it does not say
  long long n = 0;            // samples behind this metric (the metric's own `n`, else the result's n_samples)
};

// A valid result file as read back: what status, the planner's cache check, collect and the lm-eval export use.
struct ResultFile {
  std::string key;
  nlohmann::json key_inputs;
  std::string task;
  std::string model;           // the model spec as the job was given it
  std::string model_identity;  // empty in files older than the field
  std::string benchmark, output_type, primary_metric;  // empty when the file does not say
  int n_shot = 0;
  std::optional<int> limit;  // from key_inputs
  long long n_samples = 0;
  std::vector<ResultMetric> metrics;
  nlohmann::json data, provenance;  // as written (null when absent)
};

// Parses a result file's bytes; nullopt with `problem` set when they are not a valid final result.
std::optional<ResultFile> parse_result(std::string_view content, std::string& problem);
// The same for a document already in memory (the engine's outcome).
std::optional<ResultFile> result_from_json(nlohmann::json document, std::string& problem);

struct ResultCheck {
  ResultState state = ResultState::missing;
  std::string reason;  // empty when done; otherwise a short explanation for the job table
  // A stale result computed by a newer scorer (its key's scoring_version is higher than the one expected now):
  // this mill never overwrites it, so the planner does not run the job.
  std::optional<int> newer_scoring_version;
};

// The scoring_version in `key_inputs` when it is higher than the one in `expected_inputs` (a result of a newer
// mill, which this one must not overwrite), else nothing.
std::optional<int> newer_scoring_version(const nlohmann::json& key_inputs, const nlohmann::json& expected_inputs);

// Compares the key a result recorded with the key the job expects now: done, else stale with the reason.
ResultCheck compare_result_key(const JobKey& expected, const std::string& found_digest,
                               const nlohmann::json& found_inputs);

// Reads the result file at `path` and compares it with the key the job expects now.
ResultCheck check_result(const std::filesystem::path& path, const JobKey& expected);

// Throws mill::Error (eval_failed) naming both scoring versions when the result at `path` was computed by a newer
// scorer than the one `expected` belongs to: an older mill must not replace it.
void refuse_to_overwrite_newer_result(const std::filesystem::path& path, const JobKey& expected);

// Validates `document` and writes it atomically; an invalid document is a bug (ExitCode::internal).
void write_result(const std::filesystem::path& path, const nlohmann::json& document);

}  // namespace mill
