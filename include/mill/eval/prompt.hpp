#pragma once
// Prompt construction from a task's `prompt:` fields (docs/tasks.md): description, few-shot blocks, the question
// template with its option lines, choice labels and delimiters. A context is
//   description + (shot + fewshot_delimiter) × n + template(doc) + query_suffix
// where shot = template(example) + target_delimiter + fewshot_target(example).
// What a log-likelihood request continues with depends on `continuation`: the option's label or text after
// target_delimiter (one request per option), the shared `suffix` after each option-filled context (partial
// evaluation, Winogrande), or the task's `target` alone (one request, LAMBADA).
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/eval/tasks.hpp"

namespace mill {

class Regex;

enum class ContinuationKind { label, option, suffix, target };

class PromptBuilder {
 public:
  // Reads and checks the task's prompt fields; a bad field throws mill::Error naming the task and the field.
  explicit PromptBuilder(const TaskInfo& task);

  ContinuationKind continuation() const { return continuation_; }
  // Whether continuations are option texts (then length-normalised accuracy applies).
  bool continuation_is_text() const { return continuation_ == ContinuationKind::option; }
  // Whether the task has options and a correct one (logprobs tasks but `target`, generative tasks without `target`).
  bool has_options() const { return has_options_; }

  // The options of a multiple-choice document (after `drop_options`), and their labels.
  std::vector<std::string> options(const nlohmann::json& doc) const;
  std::string label(std::size_t index) const;
  // 0-based index of the correct option: the `answer_field` holds an index, one of the labels, or (with
  // `answer_labels_field`) one of the document's own labels. With several true options, the first.
  int answer_index(const nlohmann::json& doc) const;
  // Every correct option: one, or those flagged true when `answer_field` holds a list of 0/1 flags (TruthfulQA).
  std::vector<int> answer_indices(const nlohmann::json& doc) const;
  std::string answer_label(const nlohmann::json& doc) const { return label(static_cast<std::size_t>(answer_index(doc))); }

  // template(doc): the question block without the answer; `option`, when given, is what {option} renders.
  std::string render_question(const nlohmann::json& doc, const std::string* option = nullptr) const;
  // One few-shot block (without the trailing delimiter).
  std::string render_shot(const nlohmann::json& doc) const;
  // The full context for `doc` given the few-shot examples (for `suffix` continuations: with the first option).
  std::string context(const std::vector<const nlohmann::json*>& shots, const nlohmann::json& doc) const;
  // One context per log-likelihood request: the context once per continuation, or (suffix) each option's own.
  std::vector<std::string> request_contexts(const std::vector<const nlohmann::json*>& shots, const nlohmann::json& doc) const;
  // Log-likelihood continuations, one per request.
  std::vector<std::string> continuations(const nlohmann::json& doc) const;
  // The expected answer from the task's `target` template (then `target_regex`'s first group, when set).
  std::string target(const nlohmann::json& doc) const;
  bool has_target() const { return !target_.empty(); }
  // The text scored by perplexity tasks (`text_field`).
  std::string text(const nlohmann::json& doc) const;

  // Renders `{field}` (a field path, docs/tasks.md), `{field|strip}` and the other filters, `{options}`,
  // `{answer_label}`, `{answer_option}` and, given `option`, `{option}`; `{{`/`}}` are braces.
  std::string render(const std::string& pattern, const nlohmann::json& doc, const std::string& field_name,
                     const std::string* option = nullptr) const;

 private:
  std::string task_;
  std::string description_;
  std::string template_;
  std::string option_template_;
  std::string options_field_;
  std::vector<std::string> drop_options_;
  std::vector<std::string> labels_;
  std::string query_suffix_;
  std::string target_delimiter_;
  std::string fewshot_delimiter_;
  std::string fewshot_target_;
  std::vector<std::pair<std::string, std::string>> fewshot_replace_;
  std::string answer_field_;
  std::string answer_labels_field_;
  ContinuationKind continuation_ = ContinuationKind::label;
  std::string suffix_;
  std::string target_;
  std::shared_ptr<const Regex> target_regex_;
  std::string text_field_;
  bool has_options_ = true;
};

}  // namespace mill
