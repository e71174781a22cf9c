// `mill tasks [NAMES]`: list the known tasks with their benchmark, output type, default n_shots and source.
#include <fmt/format.h>
#include <iostream>

#include "commands.hpp"
#include "mill/tasks.hpp"

namespace mill::cli {

namespace {
struct TasksOptions {
  std::string names;
  std::string extra_task_paths;
  bool json = false;
};

void run_tasks(const TasksOptions& options) {
  std::vector<std::filesystem::path> extra_paths;
  for (const auto& path : parse_list_option(options.extra_task_paths)) extra_paths.push_back(path);
  const auto registry = TaskRegistry::load(extra_paths);
  std::vector<const TaskInfo*> tasks;
  if (options.names.empty()) {
    for (const auto& task : registry.tasks()) tasks.push_back(&task);
  } else {
    tasks = registry.expand(parse_list_option(options.names));
  }
  if (options.json) {
    auto out = nlohmann::json::array();
    for (const auto* task : tasks) {
      out.push_back({{"name", task->name}, {"benchmark", task->benchmark}, {"output_type", to_string(task->output_type)},
                     {"default_n_shots", task->default_n_shots}, {"source", task->source},
                     {"fingerprint", task->fingerprint}});
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::size_t name_width = 4, benchmark_width = 9;
  for (const auto* task : tasks) {
    name_width = std::max(name_width, task->name.size());
    benchmark_width = std::max(benchmark_width, task->benchmark.size());
  }
  std::cout << fmt::format("{:<{}}  {:<{}}  {:<11}  {:>7}  {}\n", "name", name_width, "benchmark", benchmark_width,
                           "output_type", "n_shots", "defined in");
  for (const auto* task : tasks) {
    std::cout << fmt::format("{:<{}}  {:<{}}  {:<11}  {:>7}  {}\n", task->name, name_width,
                             task->benchmark.empty() ? "-" : task->benchmark, benchmark_width,
                             to_string(task->output_type), task->default_n_shots, task->source);
  }
  std::cout << fmt::format("{} task(s)\n", tasks.size());
}
}  // namespace

void register_tasks_command(CLI::App& app, const GlobalOptions&) {
  auto options = std::make_shared<TasksOptions>();
  auto* command = app.add_subcommand("tasks", "List the known tasks: built-in ones and those under --extra_task_paths.");
  command->add_option("names", options->names, "Comma-separated task or benchmark names to show (default: all)");
  add_option(*command, "extra_task_paths", options->extra_task_paths, "Comma-separated directories of extra task YAML files");
  add_flag(*command, "json", options->json, "Print JSON instead of a table");
  command->callback([options] { run_tasks(*options); });
}

}  // namespace mill::cli
