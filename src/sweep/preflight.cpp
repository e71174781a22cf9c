#include "mill/sweep/preflight.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <map>

#include "mill/model/checkpoint_files.hpp"
#include "mill/eval/dataset.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/fewshot.hpp"
#include "mill/model/model_args.hpp"
#include "mill/sweep/resources.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

constexpr const char* kSkipHint =
    " (if the compute nodes see other files than this host, e.g. another Hugging Face cache, --skip_model_check skips "
    "this check)";

// The largest n_shot any job of the task asks for.
int largest_n_shot(const PreflightRequest& request, const TaskInfo& task) {
  if (!request.n_shots) return task.default_n_shots;
  return request.n_shots->empty() ? 0 : *std::max_element(request.n_shots->begin(), request.n_shots->end());
}

void check_data(const PreflightRequest& request, const TaskInfo& task, std::vector<PreflightProblem>& problems) {
  auto report = [&](const std::string& message) { problems.push_back({"data", "", {task.name}, message}); };
  const auto where = fmt::format("task {} ({})", task.name, task.source);
  const auto eval_split = task.definition.value("eval_split", std::string("test"));
  try {
    if (check_split(task, eval_split, request.data_dir, 1, false) == 0) {
      report(fmt::format("{}: split {} has no documents", where, quote_value(eval_split)));
      return;
    }
  } catch (const Error& e) {
    report(e.what());
    return;
  }
  const int n_shot = largest_n_shot(request, task);
  if (n_shot == 0 || task.output_type == OutputType::perplexity) return;
  const auto fewshot_split = task.definition.value("fewshot_split", std::string());
  if (task.definition.contains("fewshot_documents")) return;  // written in the task: check_task_definition checked them
  if (fewshot_split.empty()) {
    report(fmt::format("{}: --n_shots {} needs few-shot examples but the task has no `fewshot_split` (use --n_shots 0)",
                       where, n_shot));
    return;
  }
  // From the evaluation split itself, a document is never its own example: one more is needed (the engine's rule).
  FewshotSettings settings;
  try {
    settings = fewshot_settings(task);
  } catch (const Error& e) {
    report(e.what());
    return;
  }
  const std::size_t own = fewshot_pool_needed(settings, static_cast<std::size_t>(n_shot), fewshot_split == eval_split) -
                          static_cast<std::size_t>(n_shot);
  try {
    const auto found = check_split(task, fewshot_split, request.data_dir, static_cast<std::size_t>(n_shot) + own, true);
    if (found < static_cast<std::size_t>(n_shot) + own) {
      report(fmt::format("{}: --n_shots {} is more than the {} few-shot example(s) in split {}", where, n_shot,
                         found - std::min(found, own), quote_value(fewshot_split)));
    }
  } catch (const Error& e) {
    report(e.what());
  }
}

void check_model(const PreflightRequest& request, const ModelSpec& spec, std::vector<PreflightProblem>& problems) {
  const auto name = spec.to_string();
  auto report = [&](const std::string& message) { problems.push_back({"model", name, {}, message}); };
  try {
    check_model_args(spec);
    // GPUs per node and memory per GPU: known here, so a model that cannot start never waits in the queue.
    if (request.profile) {
      const auto resources = model_resources(spec, *request.profile, request.check_model_files);
      if (auto problem = resources_problem(spec, resources, *request.profile)) report(*problem);
    }
  } catch (const Error& e) {
    report(e.what());
  }
  if (!request.check_model_files) return;
  const auto checkpoint = checkpoint_of(spec);
  if (!checkpoint) return;
  const bool runtime = spec.backend() == "local";
  CheckpointLocation location;
  try {
    location = locate_checkpoint(*checkpoint, spec.arg("revision").value_or(""));
  } catch (const Error& e) {
    report(std::string(e.what()) + kSkipHint);
    return;
  }
  for (const auto& problem : checkpoint_problems(location.folder, runtime)) {
    report(fmt::format("model {}: {}{}", quote_value(name), problem, location.revision == "local" ? "" : kSkipHint));
  }
}

bool writable_folder(const std::filesystem::path& path) { return ::access(path.c_str(), W_OK | X_OK) == 0; }

// The problem with writing under `output_dir` (it, or the nearest existing folder above it, and its results/ and
// sweeps/ folders must be writable), if any.
std::optional<std::string> output_dir_problem(const std::filesystem::path& output_dir) {
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(output_dir, ec);
  auto existing = absolute;
  while (!std::filesystem::exists(existing, ec) && existing.has_parent_path() && existing != existing.parent_path()) {
    existing = existing.parent_path();
  }
  if (!std::filesystem::is_directory(existing, ec)) {
    return fmt::format("--output_dir {}: {} is not a directory", quote_value(output_dir.string()), existing.string());
  }
  std::vector<std::filesystem::path> folders = {existing};
  if (existing == absolute) {
    for (const char* sub : {"results", "sweeps"}) {
      if (std::filesystem::is_directory(absolute / sub, ec)) folders.push_back(absolute / sub);
    }
  }
  for (const auto& folder : folders) {
    if (!writable_folder(folder)) {
      return fmt::format("--output_dir {}: {} is not writable by this user ({}); results could not be written",
                         quote_value(output_dir.string()), folder.string(), std::strerror(errno));
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<PreflightProblem> run_preflight(const PreflightRequest& request) {
  std::vector<PreflightProblem> problems;
  std::vector<const TaskInfo*> valid_tasks;
  for (const auto* task : request.tasks) {
    try {
      check_task_definition(*task);
      valid_tasks.push_back(task);
    } catch (const Error& e) {
      problems.push_back({"task", "", {task->name}, e.what()});
    }
  }
  // Tasks that read files without a data directory: one line for all of them, not one per subject.
  std::vector<std::string> need_data_dir;
  for (const auto* task : valid_tasks) {
    if (!request.data_dir && task_reads_files(*task)) {
      try {
        data_file_path(*task, task->definition.value("eval_split", std::string("test")), std::nullopt);
      } catch (const Error&) {
        need_data_dir.push_back(task->name);
        continue;
      }
    }
    check_data(request, *task, problems);
  }
  if (!need_data_dir.empty()) {
    const std::size_t shown = std::min<std::size_t>(need_data_dir.size(), 3);
    problems.push_back(
        {"data", "", need_data_dir,
         fmt::format("{} task(s) ({}{}) read data files but no data directory is set: pass --data_dir DIR or set "
                     "MILL_DATA_DIR (docs/tasks.md)",
                     need_data_dir.size(),
                     join(std::vector<std::string>(need_data_dir.begin(), need_data_dir.begin() + shown), ", "),
                     need_data_dir.size() > shown ? ", ..." : "")});
  }
  for (const auto& model : request.models) check_model(request, model, problems);
  if (auto problem = output_dir_problem(request.output_dir)) problems.push_back({"environment", "", {}, *problem});
  return problems;
}

}  // namespace mill
