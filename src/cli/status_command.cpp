// `mill status [SWEEP_ID...]`: what each sweep in --output_dir has queued, running (with progress from the
// workers' heartbeats), finished and failed, from the sweep files first and squeue/scontrol where available.
#include <fmt/color.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "mill/base/error.hpp"
#include "mill/sweep/submit.hpp"
#include "mill/sweep/sweep_status.hpp"
#include "mill/base/text.hpp"

namespace mill::cli {

namespace {

struct StatusCommandOptions {
  std::vector<std::string> sweeps;
  bool json = false;
  bool all = false;
  bool no_slurm = false;
};

std::string coloured(ElementState state, bool colour) {
  const auto text = to_string(state);
  if (!colour) return text;
  switch (state) {
    case ElementState::completed: return fmt::format(fg(fmt::color::green), "{}", text);
    case ElementState::running: return fmt::format(fg(fmt::color::cyan), "{}", text);
    case ElementState::queued:
    case ElementState::interrupted: return fmt::format(fg(fmt::color::yellow), "{}", text);
    default: return fmt::format(fg(fmt::color::red) | fmt::emphasis::bold, "{}", text);
  }
}

void print_sweep(const SweepStatus& sweep, bool show_all, bool colour) {
  std::string where = sweep.mode != "slurm"            ? sweep.mode
                      : sweep.array_job_ids.size() > 1 ? fmt::format("array jobs {}", join(sweep.array_job_ids, ", "))
                                                       : fmt::format("array job {}", sweep.array_job_id.empty() ? "?" : sweep.array_job_id);
  if (!sweep.profile.empty()) where += ", profile " + sweep.profile;
  if (!sweep.submitted_at.empty()) where += ", submitted " + sweep.submitted_at;
  std::cout << fmt::format("sweep {} ({}{})\n", sweep.id, where,
                           sweep.slurm_unavailable ? "; squeue did not answer: from files only" : "");
  if (!sweep.continues.empty()) std::cout << fmt::format("  continues sweep {} (submitted by its continuation job)\n", sweep.continues);
  if (!sweep.continuation_job_id.empty()) {
    std::cout << fmt::format("  continuation job {} submits the remaining {} job(s) when these arrays end\n",
                             sweep.continuation_job_id, sweep.continuation_jobs_left);
  }
  const auto counts = sweep.counts();
  if (sweep.mode == "local") {
    const auto& process = sweep.local_process;
    const auto who = process.pid > 0 ? fmt::format("pid {} on {}", process.pid, one_line(process.host)) : std::string("its process");
    if (sweep.local_run == Liveness::alive) {
      std::cout << fmt::format("  local run: {}, still running\n", who);
    } else if (counts.count(ElementState::interrupted)) {
      std::cout << fmt::format("  interrupted: the local run ({}) {} before finishing; resume with: {}\n", who,
                               sweep.local_run == Liveness::gone ? "ended" : "stopped",
                               sweep.resume_command.empty() ? "the same mill schedule --local" : sweep.resume_command);
    }
  }
  std::vector<std::string> parts;
  for (const auto state : {ElementState::queued, ElementState::running, ElementState::completed, ElementState::failed,
                           ElementState::preempted, ElementState::interrupted, ElementState::unknown}) {
    const auto it = counts.find(state);
    if (it != counts.end()) parts.push_back(fmt::format("{} {}", it->second, to_string(state)));
  }
  std::cout << fmt::format("  {} element(s): {}\n", sweep.elements.size(), parts.empty() ? "none" : join(parts, ", "));
  std::size_t model_width = 5;
  for (const auto& element : sweep.elements) model_width = std::max(model_width, one_line(element.model).size());
  bool header = false;
  for (const auto& element : sweep.elements) {
    if (!show_all && element.state == ElementState::completed) continue;
    if (!header) {
      std::cout << fmt::format("  {:>7}  {:<11}  {:<{}}  {:>4}  {}\n", "element", "state", "model", model_width, "jobs", "detail");
      header = true;
    }
    const auto state = to_string(element.state);
    std::cout << fmt::format("  {:>7}  ", element.element) << coloured(element.state, colour)
              << std::string(11 - std::min<std::size_t>(11, state.size()), ' ')
              << fmt::format("  {:<{}}  {:>4}  {}\n", one_line(element.model), model_width, element.jobs, one_line(element.detail));
  }
}

// An id that names no sweep is a mistake (a typo, the wrong --output_dir), not an empty report: say which ids are
// unknown and what exists instead, in one line.
void refuse_unknown_sweep_ids(const std::vector<std::string>& requested, const std::filesystem::path& output_dir) {
  if (requested.empty()) return;
  std::vector<std::string> known;
  for (const auto& paths : list_sweeps(output_dir)) known.push_back(paths.dir.filename().string());
  std::vector<std::string> unknown;
  for (const auto& id : requested) {
    if (std::find(known.begin(), known.end(), id) == known.end()) unknown.push_back(quote_value(id));
  }
  if (unknown.empty()) return;
  const auto sweeps_dir = (output_dir / "sweeps").string();
  std::string known_text;
  if (known.empty()) {
    known_text = "there are no sweeps under " + quote_value(sweeps_dir);
  } else {
    constexpr std::size_t shown = 3;  // the newest ones: the likeliest to be meant
    std::vector<std::string> newest(known.end() - static_cast<std::ptrdiff_t>(std::min(shown, known.size())), known.end());
    known_text = fmt::format("{} sweep(s) under {}, newest {}; `mill status` lists them all", known.size(),
                             quote_value(sweeps_dir), join(newest, ", "));
  }
  throw Error(fmt::format("no sweep with id {}: {}", join(unknown, ", "), known_text), ExitCode::usage);
}

void run_status(const StatusCommandOptions& options, const GlobalOptions& global) {
  const auto output_dir = global.output_dir_path();
  StatusOptions status_options;
  status_options.ask_slurm = !options.no_slurm;
  status_options.sweeps = options.sweeps;
  refuse_unknown_sweep_ids(options.sweeps, output_dir);
  const auto sweeps = read_sweep_statuses(output_dir, status_options);
  // A sweeps directory that exists but cannot be listed would look like "no sweeps": say so instead.
  std::error_code unlisted;
  std::filesystem::directory_iterator listing(output_dir / "sweeps", unlisted);
  if (unlisted && unlisted != std::errc::no_such_file_or_directory) {
    throw Error(fmt::format("cannot read {}: {}", (output_dir / "sweeps").string(), unlisted.message()),
                ExitCode::usage);
  }
  std::size_t unreadable = 0;
  for (const auto& sweep : sweeps) {
    for (const auto& what : sweep.unreadable) spdlog::warn("sweep {}: {}", sweep.id, one_line(what));
    unreadable += sweep.unreadable.size();
  }
  if (options.json) {
    std::cout << to_json(sweeps).dump(2) << "\n";
    return;
  }
  if (sweeps.empty()) {
    std::cout << fmt::format("no sweeps under {}\n", (output_dir / "sweeps").string());
    return;
  }
  const bool colour = stdout_is_colour_terminal();
  for (const auto& sweep : sweeps) {
    print_sweep(sweep, options.all, colour);
    std::cout << "\n";
  }
  std::map<ElementState, int> totals;
  for (const auto& sweep : sweeps) {
    for (const auto& [state, count] : sweep.counts()) totals[state] += count;
  }
  std::cout << fmt::format("{} sweep(s): {} queued, {} running, {} completed, {} failed, {} preempted, {} interrupted, "
                           "{} unknown\n",
                           sweeps.size(), totals[ElementState::queued], totals[ElementState::running],
                           totals[ElementState::completed], totals[ElementState::failed],
                           totals[ElementState::preempted], totals[ElementState::interrupted],
                           totals[ElementState::unknown]);
  if (unreadable > 0) {
    std::cout << fmt::format("{} file(s) of these sweeps cannot be read (named above): their elements show as unknown\n",
                             unreadable);
  }
  if (totals[ElementState::failed] + totals[ElementState::preempted] > 0) {
    std::cout << "failed and preempted jobs are resubmitted by running the same `mill schedule` again; logs are in "
                 "<sweep>/logs/\n";
  }
  if (totals[ElementState::interrupted] > 0) {
    std::cout << "interrupted local sweeps resume with the command shown under them (it runs only what is missing)\n";
  }
}

}  // namespace

void register_status_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<StatusCommandOptions>();
  auto* command = app.add_subcommand(
      "status",
      "Show what the sweeps in --output_dir have queued, running (with progress), completed, failed and (--local "
      "runs that ended early) interrupted, with the command that resumes them (see docs/status.md).");
  command->add_option("sweeps", options->sweeps, "Sweep ids to show (default: all, oldest first)");
  add_flag(*command, "json", options->json, "Print the status as JSON (schema in docs/status.md)");
  add_flag(*command, "all", options->all, "List completed elements too");
  add_flag(*command, "no_slurm", options->no_slurm, "Do not ask squeue/scontrol; report from the files only");
  command->callback([options, &global] { run_status(*options, global); });
}

}  // namespace mill::cli
