#pragma once
// Answer filters of generative tasks (docs/tasks.md, `answer_filters`): each filter turns a generation into an
// answer as lm-evaluation-harness's regex + take_first filters do (every match of the regex, the one picked by
// `group_select` — Python indexing, -1 the last —, its first non-empty group, stripped), and each is reported as
// its own metric. `answer_normalization` then states how an answer and the target are compared (regexes removed,
// case ignored), as lm-eval's exact_match options.
#include <optional>
#include <string>
#include <vector>

#include "mill/base/regex.hpp"
#include "mill/eval/tasks.hpp"

namespace mill {

struct AnswerFilter {
  std::string name;  // letters, digits, '_', '-': the metrics are exact_match_<name> and unparsed_rate_<name>
  Regex regex;
  int group_select = 0;
  // The answer from a generation; nullopt when the regex finds nothing (lm-eval's "[invalid]" fallback).
  std::optional<std::string> apply(const std::string& text) const;
};

// The task's `answer_filters`; empty when it has none. A malformed entry throws mill::Error naming it.
std::vector<AnswerFilter> answer_filters(const TaskInfo& task);

// How answers and targets are compared: each of `ignore_regexes` removed everywhere (in order), then, with
// `ignore_case`, lower-cased.
class AnswerNormalizer {
 public:
  explicit AnswerNormalizer(const TaskInfo& task);
  std::string normalize(const std::string& text) const;
  bool same(const std::string& answer, const std::string& target) const { return normalize(answer) == normalize(target); }

 private:
  std::vector<Regex> ignore_;
  bool ignore_case_ = false;
};

}  // namespace mill
