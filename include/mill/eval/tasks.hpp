#pragma once
// The task registry: task definitions are YAML data (data/tasks/ compiled in, plus --extra_task_paths).
// A file defines one task (`task: NAME`) or a benchmark group (`group: NAME` with `defaults` and a `tasks`
// list whose entries may set `vars` substituted as ${var}). The schema is in docs/tasks.md.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mill {

enum class OutputType { logprobs, generative, perplexity };
std::string to_string(OutputType type);

struct TaskInfo {
  std::string name;
  std::string benchmark;  // the group it belongs to, or empty
  std::vector<std::string> groups;  // further groups it belongs to (`groups:`, e.g. mmlu_stem), each expandable by name
  bool in_group(const std::string& name) const;  // its benchmark or one of its groups
  OutputType output_type = OutputType::logprobs;
  int default_n_shots = 0;
  std::string source;           // "builtin:tasks/mmlu.yaml" or the file path it came from
  nlohmann::json definition;    // the resolved definition: includes and defaults merged, ${vars} substituted
  std::string fingerprint;      // content hash of the definition minus `metadata`: part of the job key
};

class TaskRegistry {
 public:
  // Loads the built-in tasks and every *.yaml/*.yml file under each extra path (a file or a directory).
  // Any problem throws mill::Error naming the file, the task and the field.
  static TaskRegistry load(const std::vector<std::filesystem::path>& extra_paths = {});

  // Only the tasks of one YAML text (no built-ins, no duplicate checks); for tests and fuzzing.
  static TaskRegistry from_text(std::string_view yaml, const std::string& source);

  const std::vector<TaskInfo>& tasks() const { return tasks_; }
  const TaskInfo* find(std::string_view name) const;
  // Benchmark names, then the further group names (`groups:`), in definition order.
  std::vector<std::string> benchmarks() const;

  // Expands task and benchmark names (in order, without duplicates). An unknown name throws mill::Error
  // suggesting the closest known names.
  std::vector<const TaskInfo*> expand(const std::vector<std::string>& names) const;

 private:
  void add_file(std::string_view text, const std::string& source);
  std::vector<TaskInfo> tasks_;
};

// What a task definition must hold for the engine (docs/tasks.md), checked without its data: the fields and their
// values, the metrics it reports, its generation settings and answer patterns. The engine reads these through
// the same functions, and `mill schedule` runs check_task_definition at plan time.
// An unknown field (a typo such as `promt`) or a bad value throws mill::Error naming the task, its file and the
// field, with the closest valid names.
void check_task_definition(const TaskInfo& task);

// The metrics a task reports, the primary (the default for collect) first.
std::vector<std::string> task_metrics(const TaskInfo& task);

// Greedy generation settings of a generative task (`generation:`).
struct GenerationSettings {
  std::vector<std::string> stop;
  int max_new_tokens = 256;
};
GenerationSettings generation_settings(const TaskInfo& task);

// The ordered answer-extraction regexes of a generative task (`answer_extraction.patterns`).
std::vector<std::string> extraction_patterns(const TaskInfo& task);

}  // namespace mill
