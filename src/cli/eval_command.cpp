// `mill eval MODEL_SPEC TASKS`: evaluate one model on tasks here, one job after another with one backend; and the
// array worker `mill eval --manifest FILE --element I`. Progress goes to stderr (progress.hpp: a live line on a
// terminal, timestamped lines elsewhere), one result line per job to stdout.
#include <fmt/format.h>

#include <iostream>
#include <optional>

#include "commands.hpp"
#include "mill/base/error.hpp"
#include "mill/base/progress.hpp"
#include "mill/sweep/requeue.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/worker.hpp"

namespace mill::cli {

namespace {

struct EvalOptions {
  std::string model;
  std::string tasks;
  std::string n_shots;
  int limit = 0;
  std::string extra_task_paths;
  std::string data_dir;
  std::string manifest;
  int element = -1;
  int docs_per_batch = 32;
  int lock_wait = 120;
  bool quiet = false;
};

void finish(int code, const ProgressDisplay& display) {
  if (code == static_cast<int>(ExitCode::eval_failed)) {
    throw Error("some jobs failed (see the messages above); the others completed", ExitCode::eval_failed);
  }
  if (code == static_cast<int>(ExitCode::busy)) {
    throw Error("some jobs are being evaluated by another mill process (see the messages above); rerun later to "
                "pick up what it leaves unfinished",
                ExitCode::busy);
  }
  if (code == static_cast<int>(ExitCode::preempted)) {
    throw Error("stopped by a signal after flushing the journal; run the same command again to resume",
                ExitCode::preempted);
  }
  if (code == static_cast<int>(interrupted_exit_code())) {
    const auto where = display.where();
    throw Error(fmt::format("interrupted (Ctrl-C){}; the journal is flushed; resume with: {}",
                            where.empty() ? "" : " during " + where, own_command_text()),
                interrupted_exit_code());
  }
}

void run_eval(const EvalOptions& options, const GlobalOptions& global) {
  WorkerOptions worker;
  worker.output_dir = global.output_dir_path();
  if (!options.data_dir.empty()) worker.data_dir = std::filesystem::absolute(options.data_dir);
  if (options.docs_per_batch < 1) throw Error("--docs_per_batch must be at least 1");
  worker.docs_per_batch = static_cast<std::size_t>(options.docs_per_batch);
  worker.progress = !options.quiet;
  ProgressDisplay display(progress_settings_for_stderr(options.quiet));
  worker.display = &display;
  if (options.lock_wait < 0) throw Error(fmt::format("--lock_wait {} is negative (expected seconds, e.g. 120)", options.lock_wait));
  worker.lock_wait = std::chrono::seconds(options.lock_wait);
  install_stop_signal_handlers();

  if (!options.manifest.empty()) {
    if (!options.model.empty() || !options.tasks.empty()) {
      throw Error("--manifest runs the jobs the manifest lists: give no MODEL_SPEC or TASKS with it");
    }
    if (options.element < 0) throw Error("--manifest needs --element I (the array index, 0-based)");
    const auto manifest = std::filesystem::absolute(options.manifest);
    const ElementProgress progress(manifest, options.element, worker.output_dir);  // for the bounded requeue
    const int code = run_manifest_element(manifest, options.element, worker);
    if (code == static_cast<int>(ExitCode::preempted)) {
      std::cerr << "mill: " << requeue_stopped_element(progress, stop_signal()) << "\n";
    }
    finish(code, display);
    return;
  }
  if (options.model.empty() || options.tasks.empty()) {
    throw Error("mill eval needs MODEL_SPEC and TASKS (e.g. mill eval mill-demo demo), or --manifest FILE --element I");
  }
  std::vector<std::filesystem::path> extra_paths;
  for (const auto& path : split_list(options.extra_task_paths)) extra_paths.emplace_back(path);
  const auto registry = TaskRegistry::load(extra_paths);
  const auto tasks = registry.expand(split_list(options.tasks));
  std::optional<std::vector<int>> shots;
  if (!options.n_shots.empty()) shots = parse_int_list_option(options.n_shots, "--n_shots");
  if (options.limit < 0) throw Error(fmt::format("--limit {} is negative (expected a positive number)", options.limit));
  std::vector<EvalJobRequest> requests;
  for (const auto* task : tasks) {
    for (int n : shots ? *shots : std::vector<int>{task->default_n_shots}) {
      EvalJobRequest request{task->name, n, std::nullopt, {}};
      if (options.limit > 0) request.limit = options.limit;
      requests.push_back(request);
    }
  }
  finish(run_eval_jobs(options.model, requests, registry, worker), display);
}

}  // namespace

void register_eval_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<EvalOptions>();
  auto* command = app.add_subcommand(
      "eval", "Evaluate one model on tasks here (or run one array element of a sweep with --manifest/--element)");
  command->add_option("model_spec", options->model,
                      "NAME_OR_PATH[key=value,...], e.g. mill-demo or \"org/model[dtype=float16]\"");
  command->add_option("tasks", options->tasks, "Comma-separated task and benchmark names (mill tasks lists them)");
  add_option(*command, "n_shots", options->n_shots, "Few-shot counts, e.g. 0 or 0,5 (default: each task's own)");
  add_option(*command, "limit", options->limit, "Evaluate only the first N documents of each task (smoke tests)");
  add_option(*command, "extra_task_paths", options->extra_task_paths, "Directories or files of extra task YAMLs");
  add_option(*command, "data_dir", options->data_dir, "Where task data files live (default $MILL_DATA_DIR)");
  add_option(*command, "manifest", options->manifest, "Worker mode: a sweep's manifest.json");
  add_option(*command, "element", options->element, "Worker mode: which array element of the manifest to run");
  add_option(*command, "docs_per_batch", options->docs_per_batch,
             "Documents per backend call and per journal flush (default 32)");
  add_option(*command, "lock_wait", options->lock_wait,
             "Seconds to wait for a job another mill process is evaluating before leaving it to that one (default "
             "120)");
  add_flag(*command, "quiet", options->quiet,
           "No progress on stderr (otherwise a live line on a terminal, timestamped lines every "
           "$MILL_PROGRESS_INTERVAL seconds, default 30, elsewhere)");
  command->callback([options, &global] { run_eval(*options, global); });
}

}  // namespace mill::cli
