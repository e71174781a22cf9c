#include "mill/sweep/element_files.hpp"

#include <algorithm>
#include <spdlog/spdlog.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/host.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/sweep/submit.hpp"

namespace mill {

long long parse_timestamp(const nlohmann::json& value) {
  if (value.is_number()) return static_cast<long long>(value.get<double>());
  return value.is_string() ? unix_seconds_of(value.get<std::string>()) : -1;
}

void write_heartbeat(const std::filesystem::path& sweep_dir, const Heartbeat& heartbeat) {
  const nlohmann::json document = {{"element", heartbeat.element},
                                   {"pid", heartbeat.pid},
                                   {"host", heartbeat.host},
                                   {"state", "running"},
                                   {"job_index", heartbeat.job_index},
                                   {"jobs_total", heartbeat.jobs_total},
                                   {"task", heartbeat.task},
                                   {"n_shot", heartbeat.n_shot},
                                   {"done_samples", heartbeat.done_samples},
                                   {"total_samples", heartbeat.total_samples},
                                   {"updated_at", heartbeat.updated_at}};
  write_file_atomically(SweepPaths{sweep_dir}.heartbeat(heartbeat.element), document.dump() + "\n");
}

void write_element_status(const std::filesystem::path& sweep_dir, const ElementStatusRecord& status) {
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& record : status.jobs) {
    nlohmann::json job = {{"task", record.task}, {"n_shot", record.n_shot}, {"state", record.state}};
    if (!record.message.empty()) job["message"] = record.message;
    if (!record.cost.is_null()) job["cost"] = record.cost;
    jobs.push_back(std::move(job));
  }
  const nlohmann::json document = {{"element", status.element}, {"state", status.state},
                                   {"exit_code", status.exit_code}, {"message", status.message},
                                   {"finished_at", status.finished_at}, {"jobs", jobs},
                                   {"pid", status.pid},           {"host", status.host}};
  write_file_atomically(SweepPaths{sweep_dir}.status(status.element), document.dump(2) + "\n");
}

void remove_heartbeat(const std::filesystem::path& sweep_dir, int element) noexcept {
  std::error_code ignored;
  std::filesystem::remove(SweepPaths{sweep_dir}.heartbeat(element), ignored);
}

std::optional<Heartbeat> heartbeat_from_json(const nlohmann::json& document) {
  if (!document.is_object()) return std::nullopt;
  Heartbeat out;
  out.element = static_cast<int>(integer_field(document, "element").value_or(0));
  out.pid = integer_field(document, "pid").value_or(0);
  out.host = string_field(document, "host");
  out.job_index = integer_field(document, "job_index").value_or(-1);
  out.jobs_total = integer_field(document, "jobs_total").value_or(-1);
  out.task = string_field(document, "task");
  out.n_shot = integer_field(document, "n_shot").value_or(-1);
  out.done_samples = integer_field(document, "done_samples").value_or(-1);
  out.total_samples = integer_field(document, "total_samples").value_or(-1);
  out.updated_at = parse_timestamp(member(document, "updated_at"));
  return out;
}

std::optional<ElementStatusRecord> element_status_from_json(const nlohmann::json& document) {
  if (!document.is_object()) return std::nullopt;
  ElementStatusRecord out;
  out.element = static_cast<int>(integer_field(document, "element").value_or(0));
  out.state = string_field(document, "state");
  out.exit_code = static_cast<int>(integer_field(document, "exit_code").value_or(-1));
  out.message = string_field(document, "message");
  out.finished_at = finite_number_field(document, "finished_at").value_or(0);
  out.pid = integer_field(document, "pid").value_or(0);
  out.host = string_field(document, "host");
  if (const auto jobs = document.find("jobs"); jobs != document.end() && jobs->is_array()) {
    for (const auto& job : *jobs) {
      ElementJobRecord record;
      record.task = string_field(job, "task");
      record.n_shot = static_cast<int>(integer_field(job, "n_shot").value_or(0));
      record.state = string_field(job, "state");
      record.message = string_field(job, "message");
      record.cost = member(job, "cost");
      out.jobs.push_back(std::move(record));
    }
  }
  return out;
}

namespace {
nlohmann::json read_document(const std::filesystem::path& path, std::vector<std::string>& unreadable) {
  try {
    const auto text = read_file_if_exists(path);
    return text ? nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false) : nlohmann::json();
  } catch (const Error& e) {
    unreadable.push_back(e.what());
    return nullptr;
  }
}
}  // namespace

std::optional<Heartbeat> read_heartbeat(const std::filesystem::path& sweep_dir, int element,
                                        std::vector<std::string>& unreadable) {
  return heartbeat_from_json(read_document(SweepPaths{sweep_dir}.heartbeat(element), unreadable));
}

std::optional<ElementStatusRecord> read_element_status(const std::filesystem::path& sweep_dir, int element,
                                                       std::vector<std::string>& unreadable) {
  return element_status_from_json(read_document(SweepPaths{sweep_dir}.status(element), unreadable));
}

std::vector<ElementStatusRecord> read_element_statuses(const std::filesystem::path& sweep_dir) {
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (std::filesystem::directory_iterator it(sweep_dir / "status", error), end; !error && it != end;
       it.increment(error)) {
    files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  std::vector<ElementStatusRecord> statuses;
  std::vector<std::string> unreadable;
  for (const auto& path : files) {
    if (auto status = element_status_from_json(read_document(path, unreadable))) statuses.push_back(std::move(*status));
  }
  for (const auto& line : unreadable) spdlog::debug("element status: {}", line);
  return statuses;
}

}  // namespace mill
