#include "mill/eval/results.hpp"

#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::string to_string(ResultState state) {
  switch (state) {
    case ResultState::done: return "done";
    case ResultState::missing: return "missing";
    case ResultState::stale: return "stale";
    case ResultState::corrupt: return "corrupt";
  }
  return "?";
}

std::string result_document_problem(const nlohmann::json& document) {
  if (!document.is_object()) return "not a JSON object";
  if (!document.contains("schema") || document["schema"] != kResultSchema) {
    return fmt::format("field `schema` is not {}", quote_value(kResultSchema));
  }
  if (!document.contains("key") || !document["key"].is_string()) return "field `key` is missing";
  if (!document.contains("key_inputs") || !document["key_inputs"].is_object()) return "field `key_inputs` is missing";
  if (!document.contains("task") || !document["task"].is_string()) return "field `task` is missing";
  if (!document.contains("model") || !document["model"].is_string()) return "field `model` is missing";
  if (!document.contains("n_shot") || !document["n_shot"].is_number_integer()) return "field `n_shot` is missing";
  if (!document.contains("n_samples") || !document["n_samples"].is_number_integer() ||
      document["n_samples"].get<long long>() < 0) {
    return "field `n_samples` is missing or negative";
  }
  if (!document.contains("metrics") || !document["metrics"].is_object() || document["metrics"].empty()) {
    return "field `metrics` is missing or empty";
  }
  for (const auto& [name, metric] : document["metrics"].items()) {
    if (!metric.is_object() || !metric.contains("value") || !(metric["value"].is_number() || metric["value"].is_null())) {
      return fmt::format("metric {} has no numeric `value`", name);
    }
  }
  return {};
}

namespace {
// The document when it is a valid result, else null with `problem` set.
nlohmann::json valid_document(std::string_view content, std::string& problem) {
  auto document = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    problem = content.empty() ? "empty file" : "not valid JSON (truncated or damaged)";
    return nullptr;
  }
  problem = result_document_problem(document);
  return problem.empty() ? document : nlohmann::json();
}
}  // namespace

std::optional<ResultFile> parse_result(std::string_view content, std::string& problem) {
  auto document = valid_document(content, problem);
  if (document.is_null()) return std::nullopt;
  return result_from_json(std::move(document), problem);
}

std::optional<ResultFile> result_from_json(nlohmann::json document, std::string& problem) {
  problem = result_document_problem(document);
  if (!problem.empty()) return std::nullopt;
  ResultFile result;
  result.key = document["key"].get<std::string>();
  result.key_inputs = std::move(document["key_inputs"]);
  result.task = document["task"].get<std::string>();
  result.model = document["model"].get<std::string>();
  result.model_identity = string_field(document, "model_identity");
  result.benchmark = string_field(document, "benchmark");
  result.output_type = string_field(document, "output_type");
  result.primary_metric = string_field(document, "primary_metric");
  result.n_shot = document["n_shot"].get<int>();
  if (const auto limit = integer_field(result.key_inputs, "limit")) result.limit = static_cast<int>(*limit);
  result.n_samples = document["n_samples"].get<long long>();
  if (document.contains("data")) result.data = std::move(document["data"]);
  if (document.contains("provenance")) result.provenance = std::move(document["provenance"]);
  auto document_method = string_field(document, "stderr_method");
  // The engine records how its standard errors were made under provenance.bootstrap (resamples, seed).
  if (document_method.empty() && result.provenance.is_object() && result.provenance.contains("bootstrap")) {
    document_method = "bootstrap";
  }
  for (auto& [name, metric] : document["metrics"].items()) {
    const auto value = finite_number_field(metric, "value");
    if (!value) continue;  // a metric the run could not compute (null) is not a number to average
    ResultMetric out;
    out.name = name;
    out.value = *value;
    out.standard_error = finite_number_field(metric, "stderr");
    out.stderr_method = string_field(metric, "stderr_method");
    if (out.stderr_method.empty()) out.stderr_method = document_method;
    if (out.stderr_method.empty() && out.standard_error) out.stderr_method = "result";
    out.n = integer_field(metric, "n").value_or(result.n_samples);
    result.metrics.push_back(std::move(out));
  }
  return result;
}

std::optional<int> newer_scoring_version(const nlohmann::json& key_inputs, const nlohmann::json& expected_inputs) {
  if (!key_inputs.is_object() || !expected_inputs.is_object()) return std::nullopt;
  const auto found = key_inputs.find("scoring_version");
  const auto ours = expected_inputs.find("scoring_version");
  if (found == key_inputs.end() || ours == expected_inputs.end() || !found->is_number_integer() ||
      !ours->is_number_integer() || found->get<int>() <= ours->get<int>()) {
    return std::nullopt;
  }
  return found->get<int>();
}

ResultCheck compare_result_key(const JobKey& expected, const std::string& found_digest,
                               const nlohmann::json& found_inputs) {
  const auto match = match_job_key(expected, found_digest, found_inputs);
  if (match.same) return {ResultState::done, {}};
  if (const auto newer = newer_scoring_version(found_inputs, expected.inputs)) {
    return {ResultState::stale,
            fmt::format("computed by a newer mill (scoring_version {}; this mill's is {}): left as it is", *newer,
                        expected.inputs["scoring_version"].get<int>()),
            *newer};
  }
  return {ResultState::stale, stale_reason(match.differing)};
}

ResultCheck check_result(const std::filesystem::path& path, const JobKey& expected) {
  std::optional<std::string> content;
  try {
    content = read_file_if_exists(path);
  } catch (const Error& e) {
    return {ResultState::corrupt, e.what()};
  }
  if (!content) return {ResultState::missing, {}};
  // Only the key is compared: the planner checks every job of a sweep, so nothing else is taken out of the file.
  std::string problem;
  const auto document = valid_document(*content, problem);
  if (document.is_null()) return {ResultState::corrupt, problem};
  return compare_result_key(expected, document["key"].get<std::string>(), document["key_inputs"]);
}

void refuse_to_overwrite_newer_result(const std::filesystem::path& path, const JobKey& expected) {
  const auto check = check_result(path, expected);
  if (!check.newer_scoring_version) return;
  throw Error(fmt::format("{} was computed by a newer mill (scoring_version {}; this mill's is {}); not overwritten: "
                          "evaluate this job with that mill or a newer one",
                          path.string(), *check.newer_scoring_version, expected.inputs["scoring_version"].get<int>()),
              ExitCode::eval_failed);
}

void write_result(const std::filesystem::path& path, const nlohmann::json& document) {
  if (auto problem = result_document_problem(document); !problem.empty()) {
    throw Error(fmt::format("internal error: refusing to write an invalid result to {}: {}", path.string(), problem),
                ExitCode::internal);
  }
  write_file_atomically(path, document.dump(2) + "\n");
}

}  // namespace mill
