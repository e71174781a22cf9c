#pragma once
// Prompt construction from a task's `prompt:` fields (docs/tasks.md): description, few-shot blocks, the question
// template with its option lines, choice labels and delimiters. A context is
//   description + (shot + fewshot_delimiter) × n + template(doc) + query_suffix
// where shot = template(example) + target_delimiter + fewshot_target(example).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mill/tasks.hpp"

namespace mill {

class PromptBuilder {
 public:
  // Reads and checks the task's prompt fields; a bad field throws mill::Error naming the task and the field.
  explicit PromptBuilder(const TaskInfo& task);

  // The options of a multiple-choice document (after `drop_options`), and their labels.
  std::vector<std::string> options(const nlohmann::json& doc) const;
  std::string label(std::size_t index) const;
  // 0-based index of the correct option: the `answer_field` holds an index or a label.
  int answer_index(const nlohmann::json& doc) const;
  std::string answer_label(const nlohmann::json& doc) const { return label(static_cast<std::size_t>(answer_index(doc))); }

  // template(doc): the question block without the answer.
  std::string render_question(const nlohmann::json& doc) const;
  // One few-shot block (without the trailing delimiter).
  std::string render_shot(const nlohmann::json& doc) const;
  // The full context for `doc` given the few-shot examples.
  std::string context(const std::vector<const nlohmann::json*>& shots, const nlohmann::json& doc) const;
  // Log-likelihood continuations, one per option: target_delimiter + label (or + option text).
  std::vector<std::string> continuations(const nlohmann::json& doc) const;
  // Whether continuations are option texts (then length-normalised accuracy applies).
  bool continuation_is_text() const { return continuation_ == "option"; }
  // The text scored by perplexity tasks (`text_field`).
  std::string text(const nlohmann::json& doc) const;

  // Renders `{field}`, `{field|strip}`, `{options}`, `{answer_label}`, `{answer_option}`; `{{`/`}}` are braces.
  std::string render(const std::string& pattern, const nlohmann::json& doc, const std::string& field_name) const;

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
  std::string continuation_;
  std::string text_field_;
};

}  // namespace mill
