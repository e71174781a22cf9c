#include "mill/sweep/requeue.hpp"

#include <csignal>
#include <cstdlib>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "mill/eval/job.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/sweep/slurm.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/manifest.hpp"

extern char** environ;

namespace mill {

namespace {
bool is_number(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}
}  // namespace

RequeueDecision decide_requeue(const std::map<std::string, std::string>& environment, bool made_progress,
                               int max_requeues) {
  auto value = [&](const char* name) {
    const auto it = environment.find(name);
    return it == environment.end() ? std::string() : it->second;
  };
  RequeueDecision decision;
  const auto job = value("SLURM_JOB_ID");
  const auto array_job = value("SLURM_ARRAY_JOB_ID");
  const auto array_task = value("SLURM_ARRAY_TASK_ID");
  if (!is_number(job)) {
    decision.reason = "not requeued: not running as a SLURM job";
    return decision;
  }
  const auto restarts_text = value("SLURM_RESTART_COUNT");
  const int restarts = is_number(restarts_text) ? std::atoi(restarts_text.c_str()) : 0;
  if (!made_progress) {
    decision.reason = "not requeued: this run made no progress (a requeue would likely stop at the same point)";
    return decision;
  }
  if (restarts >= max_requeues) {
    decision.reason = fmt::format("not requeued: requeued {} time(s) already (max_requeues {}); the next mill schedule "
                                  "resubmits what is missing",
                                  restarts, max_requeues);
    return decision;
  }
  const auto target = is_number(array_job) && is_number(array_task) ? array_job + "_" + array_task : job;
  decision.requeue = true;
  decision.reason = fmt::format("requeued {} (requeue {} of at most {})", target, restarts + 1, max_requeues);
  decision.command = {"scontrol", "requeue", target};
  return decision;
}

namespace {

// decide_requeue() on the process environment, then runs scontrol when it says so. SLURM cancels the running
// element as soon as it accepts the requeue, so call this last, after every file is written. Returns the
// decision, with `requeue` false and the reason amended when scontrol failed.
RequeueDecision requeue_if_worthwhile(bool made_progress, int max_requeues) {
  std::map<std::string, std::string> environment;
  for (char** entry = environ; *entry; ++entry) {
    const std::string text = *entry;
    if (text.rfind("SLURM_", 0) != 0) continue;
    const auto equals = text.find('=');
    if (equals != std::string::npos) environment[text.substr(0, equals)] = text.substr(equals + 1);
  }
  auto decision = decide_requeue(environment, made_progress, max_requeues);
  if (!decision.requeue) return decision;
  spdlog::info("{}", decision.reason);
  const auto output = run_program_captured(decision.command);
  if (!output.started || output.exit_code != 0) {
    decision.requeue = false;
    decision.reason = fmt::format("requeue failed ({}): {}", join(decision.command, " "),
                                  one_line(trim(output.err)));
  }
  return decision;
}

std::uintmax_t total_size(const std::vector<std::filesystem::path>& files) {
  std::uintmax_t total = 0;
  for (const auto& file : files) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(file, ec);
    if (!ec) total += size;
  }
  return total;
}
}  // namespace

ElementProgress::ElementProgress(const std::filesystem::path& manifest_path, int element,
                                 const std::filesystem::path& output_dir) {
  try {
    const auto manifest = read_manifest(manifest_path);
    if (const auto limit = manifest.max_requeues()) max_requeues_ = *limit;
    const auto registry = TaskRegistry::load(manifest.extra_task_paths());
    for (const auto& planned : element_jobs(manifest.elements.at(static_cast<std::size_t>(element)), registry, output_dir)) {
      journals_.push_back(journal_path(output_dir, planned.job));
    }
  } catch (const std::exception& e) {
    // Debug only: the worker then fails on the same manifest with its own one-line error.
    spdlog::debug("cannot list the journals of element {} of {}: {}", element, manifest_path.string(), e.what());
  }
  bytes_before_ = total_size(journals_);
}

bool ElementProgress::grew() const { return total_size(journals_) > bytes_before_; }

std::string requeue_stopped_element(const ElementProgress& progress, int stop_signal) {
  if (stop_signal == SIGTERM) {
    return "not requeued: stopped by SIGTERM (scancel, preemption or the time limit), which ends the job; the next "
           "mill schedule resubmits what is missing";
  }
  return requeue_if_worthwhile(progress.grew(), progress.max_requeues()).reason;
}

}  // namespace mill
