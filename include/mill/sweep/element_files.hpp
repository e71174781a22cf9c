#pragma once
// An array element's own files in its sweep folder (schemas in docs/eval.md): the heartbeat the worker rewrites
// while it runs (heartbeats/element-<I>.json) and the status file it writes when it ends (status/element-<I>.json).
// The worker writes them here; `mill status` and the cost model read them here. Reading is lenient: a file from an
// older or interrupted run is read as far as it goes.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mill {

struct ElementJobRecord {
  std::string task;
  int n_shot = 0;
  std::string state = "pending";  // pending, running, done, skipped, failed, busy, preempted
  std::string message;
  nlohmann::json cost;  // a done job's cost observation (cost_model.hpp): the history later plans learn from
};

struct ElementStatusRecord {
  int element = 0;
  std::string state;  // completed, failed, preempted, interrupted, busy
  int exit_code = -1;
  std::string message;
  double finished_at = 0;  // Unix seconds
  std::vector<ElementJobRecord> jobs;
  long long pid = 0;
  std::string host;
};

struct Heartbeat {
  int element = 0;
  long long pid = 0;
  std::string host;
  long long job_index = -1;  // 0-based; -1 when unknown
  long long jobs_total = -1;
  std::string task;
  long long n_shot = -1;
  long long done_samples = -1;
  long long total_samples = -1;
  long long updated_at = -1;  // Unix seconds; -1 when unknown
};

// Unix seconds from an ISO 8601 UTC time ("2026-11-25T08:30:00Z", fractions allowed) or a number; -1 if neither.
long long parse_timestamp(const nlohmann::json& value);

// Written atomically; a write the system refuses is mill::Error.
void write_heartbeat(const std::filesystem::path& sweep_dir, const Heartbeat& heartbeat);
void write_element_status(const std::filesystem::path& sweep_dir, const ElementStatusRecord& status);
void remove_heartbeat(const std::filesystem::path& sweep_dir, int element) noexcept;

// The documents as the reader sees them: nullopt for anything that is not a JSON object.
std::optional<Heartbeat> heartbeat_from_json(const nlohmann::json& document);
std::optional<ElementStatusRecord> element_status_from_json(const nlohmann::json& document);

// Reads an element's file: nullopt when absent or damaged; one that exists but cannot be read adds a line to
// `unreadable` (status lists them) and is nullopt too.
std::optional<Heartbeat> read_heartbeat(const std::filesystem::path& sweep_dir, int element,
                                        std::vector<std::string>& unreadable);
std::optional<ElementStatusRecord> read_element_status(const std::filesystem::path& sweep_dir, int element,
                                                       std::vector<std::string>& unreadable);
// Every readable status file of a sweep, in file-name order (the cost model's history).
std::vector<ElementStatusRecord> read_element_statuses(const std::filesystem::path& sweep_dir);

}  // namespace mill
