// `mill schedule MODELS TASKS`: plan a sweep, skip what is done, pick the cluster profile, compute the time
// limit and render the sbatch array script. --dry_run prints all of it and submits nothing.
#include <unistd.h>

#include <fmt/color.h>
#include <fmt/format.h>
#include <iostream>

#include "commands.hpp"
#include "mill/cluster.hpp"
#include "mill/error.hpp"
#include "mill/plan.hpp"
#include "mill/sbatch.hpp"
#include "mill/tasks.hpp"
#include "mill/text.hpp"
#include "mill/walltime.hpp"

namespace mill::cli {

namespace {

struct ScheduleOptions {
  std::string models;
  std::string tasks;
  std::string n_shots;
  std::string cluster = "auto";
  bool dry_run = false;
  bool local = false;
  bool json = false;
  std::string venv_path;
  std::string extra_task_paths;
  double minutes_per_eval = 10.0;
  int evals_per_element = 8;
  int limit = 0;
};

std::filesystem::path mill_executable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path("mill") : path;
}

std::string colour_status(ResultState state, bool colour) {
  const auto text = to_string(state);
  if (!colour) return text;
  switch (state) {
    case ResultState::done: return fmt::format(fg(fmt::color::green), "{}", text);
    case ResultState::missing: return fmt::format(fg(fmt::color::yellow), "{}", text);
    default: return fmt::format(fg(fmt::color::red) | fmt::emphasis::bold, "{}", text);
  }
}

void print_job_table(const Plan& plan, bool colour) {
  std::size_t model_width = 5, task_width = 4;
  for (const auto& job : plan.jobs) {
    model_width = std::max(model_width, job.job.model.to_string().size());
    task_width = std::max(task_width, job.job.task->name.size());
  }
  const auto header = fmt::format("{:<{}}  {:<{}}  {:>6}  {:<7}  {}", "model", model_width, "task", task_width, "n_shot",
                                  "status", "reason");
  std::cout << (colour ? fmt::format(fmt::emphasis::bold, "{}", header) : header) << "\n";
  for (const auto& job : plan.jobs) {
    // Padding is computed on the plain text so colour codes do not break alignment.
    const auto status = to_string(job.check.state);
    std::cout << fmt::format("{:<{}}  {:<{}}  {:>6}  ", one_line(job.job.model.to_string()), model_width, job.job.task->name,
                             task_width, job.job.n_shot)
              << colour_status(job.check.state, colour) << std::string(7 - std::min<std::size_t>(7, status.size()), ' ')
              << "  " << one_line(job.check.reason) << "\n";
  }
}

nlohmann::json job_json(const PlannedJob& job) {
  return {{"model", job.job.model.to_string()}, {"task", job.job.task->name},
          {"n_shot", job.job.n_shot},           {"status", to_string(job.check.state)},
          {"reason", job.check.reason},         {"key", job.key.digest},
          {"result", job.result.string()}};
}

void run_schedule(const ScheduleOptions& options, const GlobalOptions& global) {
  if (options.minutes_per_eval <= 0) {
    throw Error(fmt::format("--minutes_per_eval: {} is not a positive number of minutes", options.minutes_per_eval));
  }
  if (options.evals_per_element < 1) {
    throw Error(fmt::format("--evals_per_element: {} is not a positive integer", options.evals_per_element));
  }
  if (!options.venv_path.empty() && !std::filesystem::exists(std::filesystem::path(options.venv_path) / "bin" / "activate")) {
    throw Error(fmt::format("--venv_path: {} has no bin/activate (expected a virtual environment directory)",
                            quote_value(options.venv_path)));
  }
  std::vector<std::filesystem::path> extra_paths;
  for (const auto& path : parse_list_option(options.extra_task_paths)) extra_paths.push_back(std::filesystem::absolute(path));
  const auto registry = TaskRegistry::load(extra_paths);

  PlanRequest request;
  request.models = parse_list_option(options.models);
  request.tasks = parse_list_option(options.tasks);
  if (!options.n_shots.empty()) request.n_shots = parse_int_list_option(options.n_shots, "--n_shots");
  if (options.limit != 0) request.limit = options.limit;
  request.output_dir = global.output_dir_path();

  // Choose the profile before touching results, so a configuration error shows up first.
  const auto clusters = load_cluster_config(global.cache_dir_path());
  const auto hostname = current_hostname();
  const auto choice = options.local ? ProfileChoice{&clusters.profiles.front(), "--local: no SLURM"}
                                    : choose_profile(clusters, options.cluster, hostname);
  const auto& profile = *choice.profile;

  const auto plan = build_plan(request, registry);
  const auto pending = plan.pending();
  const int largest_share = largest_model_share(plan);
  const auto walltime = compute_walltime(std::min(options.evals_per_element, std::max(1, largest_share)),
                                         options.minutes_per_eval, profile.max_time_minutes);
  const auto elements = group_into_elements(plan, walltime.evals_per_element);

  SbatchRequest sbatch;
  sbatch.profile = &profile;
  sbatch.array_size = static_cast<int>(elements.size());
  sbatch.time_minutes = walltime.minutes;
  sbatch.mill_binary = mill_executable();
  sbatch.output_dir = request.output_dir;
  sbatch.cache_dir = global.cache_dir_path();
  sbatch.sweep_dir = request.output_dir / "sweeps" / "<sweep-id>";
  sbatch.manifest = sbatch.sweep_dir / "manifest.json";
  if (!options.venv_path.empty()) sbatch.venv_path = std::filesystem::absolute(options.venv_path);
  const auto script = elements.empty() ? std::string() : render_sbatch_script(sbatch);

  const auto summary = fmt::format(
      "{} job(s) = {} model(s) × {} task(s) × n_shots; {} to run ({} missing, {} stale, {} corrupt), {} done (skipped)",
      plan.jobs.size(), parse_list_option(options.models).size(), registry.expand(request.tasks).size(), pending.size(),
      plan.count(ResultState::missing), plan.count(ResultState::stale), plan.count(ResultState::corrupt),
      plan.count(ResultState::done));

  if (options.json) {
    nlohmann::json out = {{"summary", summary},
                          {"jobs", nlohmann::json::array()},
                          {"counts",
                           {{"total", plan.jobs.size()},
                            {"pending", pending.size()},
                            {"done", plan.count(ResultState::done)},
                            {"missing", plan.count(ResultState::missing)},
                            {"stale", plan.count(ResultState::stale)},
                            {"corrupt", plan.count(ResultState::corrupt)}}},
                          {"profile", {{"name", profile.name}, {"reason", choice.reason}}},
                          {"array", {{"elements", elements.size()}, {"evals_per_element", walltime.evals_per_element},
                                     {"throttle", profile.max_array_len}}},
                          {"time_limit", {{"minutes", walltime.minutes},
                                          {"slurm", format_slurm_time(walltime.minutes)},
                                          {"explanation", walltime.explanation}}},
                          {"script", script},
                          {"submitted", false}};
    for (const auto& job : plan.jobs) out["jobs"].push_back(job_json(job));
    std::cout << out.dump(2) << "\n";
  } else {
    const bool colour = stdout_is_colour_terminal();
    if (options.dry_run) print_job_table(plan, colour);
    std::cout << "\n" << summary << "\n";
    std::cout << fmt::format("cluster profile: {} ({})\n", profile.name, choice.reason);
    if (!elements.empty()) {
      std::cout << fmt::format("array: {} element(s), up to {} eval(s) of one model each, at most {} running (%{})\n",
                               elements.size(), walltime.evals_per_element, profile.max_array_len, profile.max_array_len);
      std::cout << "time limit: " << walltime.explanation << "\n";
    }
    if (options.dry_run && !script.empty()) {
      std::cout << "\n--- sbatch script (submitted as: " << join(sbatch_command(sbatch, sbatch.sweep_dir / "job.sbatch"), " ")
                << ") ---\n"
                << script << "--- end of script ---\n";
    }
  }
  if (options.dry_run || pending.empty()) {
    if (!options.json) std::cout << (pending.empty() ? "nothing to do: every job is done\n" : "dry run: nothing submitted\n");
    return;
  }
  throw Error("submitting to SLURM is not available in this build yet; use --dry_run", ExitCode::submit_failed);
}

}  // namespace

void register_schedule_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<ScheduleOptions>();
  auto* command = app.add_subcommand(
      "schedule",
      "Plan a sweep of MODELS × TASKS × n_shots, skip jobs whose valid result exists in --output_dir, and submit the "
      "rest as one throttled SLURM array (see docs/schedule.md).");
  command->add_option("models", options->models, "Comma-separated model specs: NAME_OR_PATH[key=value,...]")->required();
  command->add_option("tasks", options->tasks, "Comma-separated task or benchmark names (mmlu, mmlu_pro, ...)")->required();
  add_option(*command, "n_shots", options->n_shots, "Comma-separated few-shot counts, e.g. 0,5 (default: each task's own)");
  add_option(*command, "cluster", options->cluster, "auto (match the hostname) or a profile name from clusters.yaml")
      ->capture_default_str();
  add_flag(*command, "dry_run", options->dry_run, "Print the job table, time limit and script; submit nothing");
  add_flag(*command, "local", options->local, "Run every job here, one after another, without SLURM");
  add_flag(*command, "json", options->json, "Print the plan as JSON (jobs with status and reason, profile, time, script)");
  add_option(*command, "venv_path", options->venv_path, "Virtual environment the workers activate before mill eval");
  add_option(*command, "extra_task_paths", options->extra_task_paths, "Comma-separated directories of extra task YAML files");
  add_option(*command, "minutes_per_eval", options->minutes_per_eval,
             "Expected minutes per eval; the time limit is evals × this × 1.25 + 5 (default 10)")
      ->capture_default_str();
  add_option(*command, "evals_per_element", options->evals_per_element,
             "Most evals of one model that one array element runs (default 8)")
      ->capture_default_str();
  add_option(*command, "limit", options->limit, "Evaluate only the first N documents of each task (smoke tests)");
  command->callback([options, &global] { run_schedule(*options, global); });
}

}  // namespace mill::cli
