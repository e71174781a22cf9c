#pragma once
// What a task definition must hold for the engine (docs/tasks.md), checked without its data: the fields and their
// values, the metrics it reports, its generation settings and answer patterns. The engine reads these through
// the same functions, and `mill schedule` runs check_task_definition at plan time.
#include <string>
#include <vector>

#include "mill/eval/tasks.hpp"

namespace mill {

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
