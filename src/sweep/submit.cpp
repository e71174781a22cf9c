#include "mill/sweep/submit.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <random>
#include <set>
#include <spdlog/spdlog.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/base/json_fields.hpp"
#include "mill/base/process_liveness.hpp"
#include "mill/sweep/sbatch.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "mill/base/host.hpp"
#include "mill/sweep/manifest.hpp"

namespace mill {

namespace fs = std::filesystem;

std::filesystem::path SweepPaths::heartbeat(int element) const {
  return dir / "heartbeats" / fmt::format("element-{}.json", element);
}

std::filesystem::path SweepPaths::status(int element) const {
  return dir / "status" / fmt::format("element-{}.json", element);
}

std::filesystem::path SweepPaths::script(std::size_t array) const {
  return array == 0 ? script() : dir / fmt::format("job-{}.sbatch", array);
}

std::filesystem::path sweeps_root(const std::filesystem::path& output_dir) { return output_dir / "sweeps"; }

std::filesystem::path submit_lock_path(const std::filesystem::path& output_dir) {
  return sweeps_root(output_dir) / "submit.lock";
}

nlohmann::json read_submission_record(const SweepPaths& sweep, std::vector<std::string>* unreadable) {
  std::optional<std::string> text;
  try {
    text = read_file_if_exists(sweep.submission());
  } catch (const Error& e) {
    if (unreadable) unreadable->push_back(e.what());
    return nullptr;
  }
  if (!text) return nullptr;
  auto document = nlohmann::json::parse(*text, nullptr, false);
  return document.is_object() ? document : nlohmann::json();
}

std::vector<std::string> submitted_array_ids(const nlohmann::json& submission) {
  std::vector<std::string> ids;
  if (const auto& arrays = member(submission, "arrays"); arrays.is_array()) {
    for (const auto& array : arrays) {
      if (const auto& id = member(array, "array_job_id"); id.is_string()) ids.push_back(id.get<std::string>());
    }
  }
  // Sweeps of one array (and records written before `arrays`) name it only here.
  if (const auto& id = member(submission, "array_job_id"); ids.empty() && id.is_string()) {
    ids.push_back(id.get<std::string>());
  }
  return ids;
}

SweepPaths create_sweep(const std::filesystem::path& output_dir) {
  std::random_device random;
  const auto root = sweeps_root(output_dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", root.string(), ec.message()), ExitCode::system);
  for (int attempt = 0; attempt < 100; ++attempt) {
    // Milliseconds in the id keep two sweeps made in one second in the order they were made (ids sort by name).
    const auto now = std::chrono::system_clock::now();
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    const auto id = fmt::format("{}.{:03d}Z-{:06x}", utc_time(now, "%Y%m%dT%H%M%S"), millis, random() & 0xffffff);
    const auto dir = root / id;
    // create_directory reports false when it already exists: the id is then taken, try another.
    if (fs::create_directory(dir, ec)) {
      fs::create_directories(dir / "logs", ec);
      if (ec) throw Error(fmt::format("cannot create {}: {}", (dir / "logs").string(), ec.message()), ExitCode::system);
      return SweepPaths{dir};
    }
    if (ec) throw Error(fmt::format("cannot create {}: {}", dir.string(), ec.message()), ExitCode::system);
  }
  throw Error(fmt::format("cannot create a new sweep directory under {}", root.string()), ExitCode::internal);
}

std::vector<SweepPaths> list_sweeps(const std::filesystem::path& output_dir) {
  std::vector<SweepPaths> sweeps;
  std::error_code ec;
  for (fs::directory_iterator it(sweeps_root(output_dir), ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) sweeps.push_back(SweepPaths{it->path()});
  }
  std::sort(sweeps.begin(), sweeps.end(), [](const SweepPaths& a, const SweepPaths& b) { return a.dir < b.dir; });
  return sweeps;
}

std::map<std::string, InFlightJob> jobs_in_flight(const std::filesystem::path& output_dir,
                                                  const std::vector<QueueEntry>& queue) {
  std::map<std::string, std::vector<const QueueEntry*>> queued_by_array;
  for (const auto& entry : queue) queued_by_array[entry.array_job_id].push_back(&entry);
  std::map<std::string, InFlightJob> in_flight;
  if (queued_by_array.empty()) return in_flight;
  for (const auto& sweep : list_sweeps(output_dir)) {
    const auto submission = read_submission_record(sweep);
    if (submission.is_null()) continue;
    std::optional<Manifest> manifest;
    bool manifest_unreadable = false;
    for (const auto& array_id : submitted_array_ids(submission)) {
      const auto queued = queued_by_array.find(array_id);
      if (queued == queued_by_array.end()) continue;
      if (!manifest && !manifest_unreadable) {
        try {
          manifest = read_manifest(sweep.manifest());
        } catch (const Error&) {
          manifest_unreadable = true;  // its jobs cannot be named: they are not reported in flight
        }
      }
      if (!manifest) break;
      for (const auto* entry : queued->second) {
        if (entry->array_task_id < 0 || entry->array_task_id >= static_cast<int>(manifest->elements.size())) continue;
        for (const auto& job : manifest->elements[entry->array_task_id].jobs) {
          if (job.key.empty()) continue;
          in_flight[job.key] = InFlightJob{sweep.dir.filename().string(), array_id, entry->array_task_id, entry->state};
        }
      }
    }
  }
  return in_flight;
}

SubmitBudget submit_budget(const ClusterProfile& profile, int queued_by_user, int wanted_elements) {
  SubmitBudget budget;
  const int queue_room = std::max(0, profile.queue_limit - queued_by_user);
  budget.elements = std::min({wanted_elements, queue_room, profile.max_array_size});
  if (budget.elements >= wanted_elements) return budget;
  if (queue_room <= profile.max_array_size) {
    budget.limited_by = fmt::format("queue_limit {} of profile {}: {} of your jobs are queued already, room for {}",
                                    profile.queue_limit, profile.name, queued_by_user, queue_room);
  } else {
    budget.limited_by = fmt::format("max_array_size {} of profile {} (the site's MaxArraySize)", profile.max_array_size,
                                    profile.name);
  }
  return budget;
}

namespace {

// The SLURM job name of a sweep's array: "mill-<sweep id>", unique, so squeue can find the array by it.
std::string sweep_job_name(const std::string& sweep_id) { return "mill-" + sweep_id; }

// sbatch's answer: the job id, or (when sbatch failed after slurmctld may have accepted the job) what the queue
// lists under the job name that no earlier array of this sweep has; "" when neither.
std::string run_sbatch(const std::vector<std::string>& argv, const std::string& job_name,
                       const std::vector<std::string>& known_ids, std::string& failure) {
  spdlog::info("running {}", join(argv, " "));
  const auto output = run_program_captured(argv);
  auto job_id = output.exit_code == 0 ? parse_sbatch_job_id(output.out) : "";
  if (job_id.empty() && output.started) {
    if (const auto named = query_jobs_named(job_name)) {
      for (const auto& entry : *named) {
        if (std::find(known_ids.begin(), known_ids.end(), entry.array_job_id) == known_ids.end()) {
          job_id = entry.array_job_id;
          spdlog::warn("sbatch reported a failure, but SLURM has job {} named {}: recorded as submitted", job_id, job_name);
          break;
        }
      }
    }
  }
  if (job_id.empty()) {
    failure = !output.started ? output.err
              : output.exit_code != 0
                  ? fmt::format("exit {}: {}", output.exit_code, one_line(trim(output.err)))
                  : fmt::format("no job id in its output {}", quote_value(trim(output.out)));
  }
  return job_id;
}

void write_list(const fs::path& path, const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += item + "\n";
  write_file_atomically(path, text);
}

}  // namespace

std::vector<std::string> render_array_scripts(SbatchRequest shared, const std::vector<ArrayRequest>& arrays) {
  std::vector<std::string> scripts;
  for (const auto& array : arrays) {
    shared.first_element = array.first_element;
    shared.array_size = array.elements;
    shared.shape = array.shape;
    shared.time_minutes = array.time_minutes;
    scripts.push_back(render_sbatch_script(shared));
  }
  return scripts;
}

SubmitResult submit_sweep(const SubmitRequest& request) {
  if (request.elements.empty() || request.arrays.empty()) {
    throw Error("internal error: nothing to submit", ExitCode::internal);
  }
  const auto& profile = *request.sbatch.profile;
  const auto& arrays = request.arrays;
  SubmitResult result;
  result.sweep = create_sweep(request.sbatch.output_dir);
  result.sweep_id = result.sweep.dir.filename().string();
  result.elements = static_cast<int>(request.elements.size());
  for (const auto& element : request.elements) result.jobs += static_cast<int>(element.size());

  auto settings = request.settings;
  settings["sweep_id"] = result.sweep_id;
  const auto manifest = make_manifest(request.elements, settings);

  const auto job_name = sweep_job_name(result.sweep_id);
  auto sbatch = request.sbatch;
  sbatch.sweep_dir = result.sweep.dir;
  sbatch.manifest = result.sweep.manifest();
  sbatch.job_name = job_name;
  // The record exists before sbatch runs: if mill dies after SLURM accepted the array but before its answer is
  // written, the next schedule finds the array by its job name (reconcile_submissions) instead of submitting again.
  nlohmann::json array_records = nlohmann::json::array();
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    array_records.push_back({{"array_job_id", nullptr},
                             {"first_element", arrays[i].first_element},
                             {"elements", arrays[i].elements},
                             {"gpus", arrays[i].shape.gpus},
                             {"shape", arrays[i].shape.to_string()},
                             {"time_limit_minutes", arrays[i].time_minutes},
                             {"time_limit", arrays[i].time_explanation},
                             {"script", result.sweep.script(i).filename().string()},
                             {"sbatch", sbatch_command(sbatch, result.sweep.script(i))}});
  }
  nlohmann::json record = {{"schema", kSubmissionSchema},
                           {"sweep_id", result.sweep_id},
                           {"mode", "slurm"},
                           {"state", kStateSubmitting},
                           {"job_name", job_name},
                           {"array_job_id", nullptr},
                           {"arrays", array_records},
                           {"submitted_at", utc_time()},
                           {"host", host_name()},
                           {"user", current_user_name()},
                           {"mill_version", version()},
                           {"profile", profile.name},
                           {"elements", result.elements},
                           {"jobs", result.jobs},
                           {"time_limit_minutes", arrays.front().time_minutes},
                           {"max_array_len", profile.max_array_len},
                           {"sbatch", array_records.front()["sbatch"]},
                           {"command", request.command_line}};
  if (!request.continues.empty()) record["continues"] = request.continues;
  try {
    write_manifest(result.sweep.manifest(), manifest);
    result.scripts = render_array_scripts(sbatch, arrays);
    for (std::size_t i = 0; i < arrays.size(); ++i) write_file_atomically(result.sweep.script(i), result.scripts[i]);
    if (request.continuation) {
      write_list(result.sweep.models_list(), request.models);
      write_list(result.sweep.tasks_list(), request.tasks);
      auto argv = request.continuation->before_schedule;
      argv.insert(argv.end(), {"schedule", "--models_file", result.sweep.models_list().string(), "--tasks_file",
                               result.sweep.tasks_list().string()});
      argv.insert(argv.end(), request.continuation->schedule_options.begin(), request.continuation->schedule_options.end());
      argv.insert(argv.end(), {"--continues", result.sweep_id});
      write_file_atomically(result.sweep.continuation_script(),
                            render_continuation_script(profile, job_name + "-continue", argv));
    }
    write_file_atomically(result.sweep.submission(), record.dump(2) + "\n");
  } catch (...) {
    std::error_code ec;
    fs::remove_all(result.sweep.dir, ec);
    throw;
  }

  for (std::size_t i = 0; i < arrays.size(); ++i) {
    std::string failure;
    const auto id = run_sbatch(sbatch_command(sbatch, result.sweep.script(i)), job_name, result.array_job_ids, failure);
    if (id.empty() && i == 0) {
      std::error_code ec;
      fs::remove_all(result.sweep.dir, ec);
      throw Error(fmt::format("sbatch did not accept the array ({}); nothing was submitted", failure),
                  ExitCode::submit_failed);
    }
    if (id.empty()) {
      result.warnings.push_back(fmt::format("sbatch did not accept array {} of {} ({} element(s), {}): {}; its jobs "
                                            "are planned again by the next mill schedule",
                                            i + 1, arrays.size(), arrays[i].elements, arrays[i].shape.to_string(), failure));
      record["arrays"][i]["array_job_id"] = "refused";
      continue;
    }
    result.array_job_ids.push_back(id);
    record["arrays"][i]["array_job_id"] = id;
    if (i == 0) {
      result.array_job_id = id;
      record["array_job_id"] = id;
      record["state"] = kStateSubmitted;
    }
    write_file_atomically(result.sweep.submission(), record.dump(2) + "\n");
  }
  // Refused arrays are not the sweep's: only accepted ids stay as strings.
  nlohmann::json accepted = nlohmann::json::array();
  for (const auto& array : record["arrays"]) {
    if (array["array_job_id"].is_string() && array["array_job_id"] != "refused") accepted.push_back(array);
  }
  record["arrays"] = accepted;

  if (request.continuation) {
    std::vector<std::string> argv = {"sbatch", "--parsable", "--chdir=" + result.sweep.dir.string(),
                                     "--dependency=afterany:" + join(result.array_job_ids, ":"),
                                     result.sweep.continuation_script().string()};
    std::string failure;
    const auto id = run_sbatch(argv, job_name + "-continue", {}, failure);
    nlohmann::json continuation = {{"jobs_left", request.continuation->jobs_left},
                                   {"elements_left", request.continuation->elements_left},
                                   {"script", result.sweep.continuation_script().filename().string()},
                                   {"sbatch", argv}};
    if (id.empty()) {
      result.warnings.push_back(fmt::format("sbatch did not accept the continuation job ({}); run the same mill schedule "
                                            "again once the queue drains",
                                            failure));
      continuation["job_id"] = nullptr;
    } else {
      result.continuation_job_id = id;
      continuation["job_id"] = id;
    }
    record["continuation"] = continuation;
  }
  write_file_atomically(result.sweep.submission(), record.dump(2) + "\n");
  return result;
}

std::vector<std::string> reconcile_submissions(const std::filesystem::path& output_dir) {
  std::vector<std::string> settled;
  for (const auto& sweep : list_sweeps(output_dir)) {
    auto record = read_submission_record(sweep);
    if (record.is_null()) continue;
    // Interrupted before the first array's answer (state `submitting`), or between two arrays (one without its id).
    bool unanswered_array = false;
    if (const auto arrays = record.find("arrays"); arrays != record.end() && arrays->is_array()) {
      for (const auto& array : *arrays) unanswered_array |= array.is_object() && array.value("array_job_id", nlohmann::json()).is_null();
    }
    if (record.value("state", nlohmann::json()) != kStateSubmitting && !unanswered_array) continue;
    const auto sweep_id = sweep.dir.filename().string();
    const auto job_name = string_field(record, "job_name", sweep_job_name(sweep_id));
    std::string error;
    const auto named = query_jobs_named(job_name, &error);
    if (!named) {
      throw Error(fmt::format("cannot tell whether the interrupted submission of sweep {} reached SLURM ({}); nothing "
                              "submitted",
                              sweep_id, error),
                  ExitCode::submit_failed);
    }
    // The sweep's arrays were submitted in order, so their ids ascend.
    std::vector<std::string> ids;
    for (const auto& entry : *named) {
      if (std::find(ids.begin(), ids.end(), entry.array_job_id) == ids.end()) ids.push_back(entry.array_job_id);
    }
    std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    const auto array_id = ids.empty() ? std::string() : ids.front();
    record["reconciled_at"] = utc_time();
    if (auto arrays = record.find("arrays"); arrays != record.end() && arrays->is_array()) {
      nlohmann::json found = nlohmann::json::array();
      for (std::size_t i = 0; i < arrays->size() && i < ids.size(); ++i) {
        auto array = (*arrays)[i];
        array["array_job_id"] = ids[i];
        found.push_back(array);
      }
      *arrays = found;
    }
    if (!array_id.empty()) {
      record["state"] = kStateSubmitted;
      record["array_job_id"] = array_id;
      settled.push_back(fmt::format("sweep {}: its submission was interrupted after SLURM accepted array {}; recorded "
                                    "(its jobs are in flight, not submitted again)",
                                    sweep_id, array_id));
    } else {
      record["state"] = kStateNotInQueue;
      settled.push_back(fmt::format("sweep {}: its submission was interrupted and SLURM has no array named {}; none of "
                                    "its jobs count as in flight",
                                    sweep_id, job_name));
    }
    write_file_atomically(sweep.submission(), record.dump(2) + "\n");
  }
  return settled;
}

void write_local_submission(const SweepPaths& sweep, int elements, int jobs, const std::vector<std::string>& command_line) {
  nlohmann::json record = {{"schema", kSubmissionSchema},
                           {"sweep_id", sweep.dir.filename().string()},
                           {"mode", "local"},
                           {"submitted_at", utc_time()},
                           {"host", host_name()},
                           {"mill_version", version()},
                           {"elements", elements},
                           {"jobs", jobs},
                           {"command", command_line}};
  // Which process runs the sweep, and from where, so that `mill status` can tell a run that ended from one that
  // goes on, and say how to resume it.
  add_process_fields(record, this_process());
  std::error_code no_cwd;
  if (const auto cwd = std::filesystem::current_path(no_cwd); !no_cwd) record["cwd"] = cwd.string();
  write_file_atomically(sweep.submission(), record.dump(2) + "\n");
}

}  // namespace mill
