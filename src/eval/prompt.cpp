#include "mill/eval/prompt.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/base/regex.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {

std::string string_field(const nlohmann::json& object, const char* name, const std::string& fallback,
                         const std::string& where, const char* prefix = "prompt.") {
  if (!object.contains(name) || object[name].is_null()) return fallback;
  if (!object[name].is_string()) throw Error(fmt::format("{}: field `{}{}` must be a string", where, prefix, name));
  return object[name].get<std::string>();
}

std::vector<std::string> string_list(const nlohmann::json& object, const char* name, const std::string& where) {
  std::vector<std::string> out;
  if (!object.contains(name) || object[name].is_null()) return out;
  if (!object[name].is_array()) throw Error(fmt::format("{}: field `prompt.{}` must be a list of strings", where, name));
  for (const auto& item : object[name]) {
    if (!item.is_string()) throw Error(fmt::format("{}: field `prompt.{}` must be a list of strings", where, name));
    out.push_back(item.get<std::string>());
  }
  return out;
}

// A 0/1 (or false/true) flag of a multiple-true-targets answer list.
std::optional<bool> flag_of(const nlohmann::json& value) {
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer() && (value.get<long long>() == 0 || value.get<long long>() == 1)) return value.get<long long>() == 1;
  return std::nullopt;
}

}  // namespace

PromptBuilder::PromptBuilder(const TaskInfo& task) : task_(task.name) {
  const auto where = fmt::format("task {} ({})", task.name, task.source);
  const auto prompt = task.definition.value("prompt", nlohmann::json::object());
  if (!prompt.is_object()) throw Error(fmt::format("{}: field `prompt` must be a mapping", where));
  description_ = string_field(prompt, "description", "", where);
  template_ = string_field(prompt, "template", "{question}", where);
  option_template_ = string_field(prompt, "option_template", "{label}. {option}\n", where);
  options_field_ = string_field(prompt, "options_field", "choices", where);
  drop_options_ = string_list(prompt, "drop_options", where);
  labels_ = string_list(prompt, "labels", where);
  if (labels_.empty()) {
    for (char c = 'A'; c <= 'Z'; ++c) labels_.push_back(std::string(1, c));
  }
  query_suffix_ = string_field(prompt, "query_suffix", "", where);
  target_delimiter_ = string_field(prompt, "target_delimiter", " ", where);
  fewshot_delimiter_ = string_field(prompt, "fewshot_delimiter", "\n\n", where);
  fewshot_target_ = string_field(prompt, "fewshot_target", "{answer_label}", where);
  if (prompt.contains("fewshot_replace")) {
    const auto& pairs = prompt["fewshot_replace"];
    bool ok = pairs.is_array();
    for (const auto& pair : ok ? pairs : nlohmann::json::array()) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
        ok = false;
        break;
      }
      fewshot_replace_.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
    }
    if (!ok) throw Error(fmt::format("{}: field `prompt.fewshot_replace` must be a list of [from, to] string pairs", where));
  }
  const auto continuation = string_field(prompt, "continuation", "label", where);
  if (continuation == "label") {
    continuation_ = ContinuationKind::label;
  } else if (continuation == "option") {
    continuation_ = ContinuationKind::option;
  } else if (continuation == "suffix") {
    continuation_ = ContinuationKind::suffix;
  } else if (continuation == "target") {
    continuation_ = ContinuationKind::target;
  } else {
    throw Error(fmt::format("{}: field `prompt.continuation`: {} is not one of label, option, suffix, target", where,
                            quote_value(continuation)));
  }
  suffix_ = string_field(prompt, "suffix", "", where);
  if (continuation_ == ContinuationKind::suffix && suffix_.empty()) {
    throw Error(fmt::format("{}: `prompt.continuation: suffix` needs `prompt.suffix`, the template of the text scored "
                            "after each option-filled context",
                            where));
  }
  if (continuation_ != ContinuationKind::suffix && !suffix_.empty()) {
    throw Error(fmt::format("{}: field `prompt.suffix` applies only with `prompt.continuation: suffix`", where));
  }
  answer_field_ = string_field(task.definition, "answer_field", "answer", where, "");
  answer_labels_field_ = string_field(task.definition, "answer_labels_field", "", where, "");
  text_field_ = string_field(task.definition, "text_field", "text", where, "");
  target_ = string_field(task.definition, "target", "", where, "");
  const auto target_regex = string_field(task.definition, "target_regex", "", where, "");
  if (!target_regex.empty()) {
    if (target_.empty()) throw Error(fmt::format("{}: field `target_regex` needs `target` (the template it reads)", where));
    target_regex_ = std::make_shared<const Regex>(target_regex, where + ": field `target_regex`");
  }
  if (continuation_ == ContinuationKind::target && target_.empty()) {
    throw Error(fmt::format("{}: `prompt.continuation: target` needs `target`, the template of the scored continuation", where));
  }
  has_options_ = task.output_type == OutputType::logprobs ? continuation_ != ContinuationKind::target : target_.empty();
}

std::vector<std::string> PromptBuilder::options(const nlohmann::json& doc) const {
  const auto list = field_value(doc, options_field_);
  if (!list || !list->is_array()) {
    throw Error(fmt::format("task {}: document has no list field {} (prompt.options_field)", task_,
                            quote_value(options_field_)));
  }
  std::vector<std::string> out;
  for (const auto& option : *list) {
    auto text = scalar_text(option);
    if (std::find(drop_options_.begin(), drop_options_.end(), text) != drop_options_.end()) continue;
    out.push_back(std::move(text));
  }
  // Labels are needed only where they are shown or scored; label() names a missing one.
  if (out.size() > labels_.size() && (continuation_ == ContinuationKind::label || template_.find("{options}") != std::string::npos)) {
    throw Error(fmt::format("task {}: a document has {} options but prompt.labels has only {}", task_, out.size(),
                            labels_.size()));
  }
  return out;
}

std::string PromptBuilder::label(std::size_t index) const {
  if (index >= labels_.size()) throw Error(fmt::format("task {}: no label for option {}", task_, index));
  return labels_[index];
}

std::vector<int> PromptBuilder::answer_indices(const nlohmann::json& doc) const {
  const auto found = field_value(doc, answer_field_);
  if (!found) throw Error(fmt::format("task {}: document has no answer field {}", task_, quote_value(answer_field_)));
  const auto& answer = *found;
  const auto count = options(doc).size();
  if (answer.is_array()) {
    // Multiple true targets: one 0/1 flag per option.
    std::vector<int> indices;
    bool flags = answer.size() == count;
    for (std::size_t i = 0; flags && i < answer.size(); ++i) {
      const auto flag = flag_of(answer[i]);
      if (!flag) flags = false;
      else if (*flag) indices.push_back(static_cast<int>(i));
    }
    if (!flags || indices.empty()) {
      throw Error(fmt::format("task {}: answer field {} holds a list; it must give one 0/1 flag per option ({} options) "
                              "with at least one 1, not {}",
                              task_, quote_value(answer_field_), count, answer.dump()));
    }
    return indices;
  }
  if (!answer_labels_field_.empty()) {
    // The answer is one of the document's own labels (ARC's answerKey among choices.label).
    const auto labels = field_value(doc, answer_labels_field_);
    if (!labels || !labels->is_array()) {
      throw Error(fmt::format("task {}: document has no list field {} (answer_labels_field)", task_,
                              quote_value(answer_labels_field_)));
    }
    const auto text = trim(scalar_text(answer));
    for (std::size_t i = 0; i < labels->size() && i < count; ++i) {
      if (scalar_text((*labels)[i]) == text) return {static_cast<int>(i)};
    }
    throw Error(fmt::format("task {}: answer {} is not one of the document's labels {}", task_, quote_value(text),
                            labels->dump()));
  }
  if (answer.is_number_integer()) {
    const auto index = answer.get<long long>();
    if (index < 0 || static_cast<std::size_t>(index) >= count) {
      throw Error(fmt::format("task {}: answer index {} is outside 0..{}", task_, index, count == 0 ? 0 : count - 1));
    }
    return {static_cast<int>(index)};
  }
  if (answer.is_string()) {
    const auto text = trim(answer.get<std::string>());
    for (std::size_t i = 0; i < count && i < labels_.size(); ++i) {
      if (labels_[i] == text) return {static_cast<int>(i)};
    }
    if (!text.empty() && text.size() < 9 && text.find_first_not_of("0123456789") == std::string::npos) {
      const auto index = std::stoul(text);
      if (index < count) return {static_cast<int>(index)};
    }
  }
  throw Error(fmt::format("task {}: answer {} is neither an option index nor one of the labels {}", task_,
                          answer.dump(), join(std::vector<std::string>(labels_.begin(), labels_.begin() + std::min(count, labels_.size())), ",")));
}

int PromptBuilder::answer_index(const nlohmann::json& doc) const { return answer_indices(doc).front(); }

std::string PromptBuilder::render(const std::string& pattern, const nlohmann::json& doc, const std::string& field_name,
                                  const std::string* option) const {
  const auto what = fmt::format("field `{}`", field_name);
  return expand_placeholders(pattern, task_, what, [&](const std::string& name) {
    if (name == "options") {
      std::string value;
      const auto list = options(doc);
      for (std::size_t k = 0; k < list.size(); ++k) {
        for (std::size_t j = 0; j < option_template_.size();) {
          if (option_template_.compare(j, 7, "{label}") == 0) {
            value += labels_[k];
            j += 7;
          } else if (option_template_.compare(j, 8, "{option}") == 0) {
            value += list[k];
            j += 8;
          } else {
            value += option_template_[j++];
          }
        }
      }
      return value;
    }
    if (name == "answer_label") return answer_label(doc);
    if (name == "answer_option") return options(doc)[static_cast<std::size_t>(answer_index(doc))];
    if (name == "option" && !doc.contains("option")) {
      if (!option) {
        throw Error(fmt::format("task {}: {} uses {{option}}, which only templates of `prompt.continuation: suffix` "
                                "tasks may use (the option being scored)",
                                task_, what));
      }
      return *option;
    }
    if (auto found = field_value(doc, name)) return scalar_text(*found);
    throw Error(fmt::format("task {}: {} uses {{{}}} but the document has no field {}", task_, what, name,
                            quote_value(name)));
  });
}

std::string PromptBuilder::render_question(const nlohmann::json& doc, const std::string* option) const {
  return render(template_, doc, "prompt.template", option);
}

std::string PromptBuilder::render_shot(const nlohmann::json& doc) const {
  auto target = render(fewshot_target_, doc, "prompt.fewshot_target");
  for (const auto& [from, to] : fewshot_replace_) {
    for (std::size_t at = 0; (at = target.find(from, at)) != std::string::npos; at += to.size()) {
      target.replace(at, from.size(), to);
    }
  }
  // A shot of a partial-evaluation task shows its correct option filled in (lm-eval's multiple-input shots).
  std::optional<std::string> gold;
  if (continuation_ == ContinuationKind::suffix) gold = options(doc).at(static_cast<std::size_t>(answer_index(doc)));
  return render_question(doc, gold ? &*gold : nullptr) + target_delimiter_ + target;
}

std::vector<std::string> PromptBuilder::request_contexts(const std::vector<const nlohmann::json*>& shots,
                                                         const nlohmann::json& doc) const {
  std::string prefix = description_;
  for (const auto* shot : shots) prefix += render_shot(*shot) + fewshot_delimiter_;
  std::vector<std::string> out;
  if (continuation_ == ContinuationKind::suffix) {
    for (const auto& option : options(doc)) out.push_back(prefix + render_question(doc, &option) + query_suffix_);
    return out;
  }
  out.push_back(prefix + render_question(doc) + query_suffix_);
  return out;
}

std::string PromptBuilder::context(const std::vector<const nlohmann::json*>& shots, const nlohmann::json& doc) const {
  return request_contexts(shots, doc).front();
}

std::vector<std::string> PromptBuilder::continuations(const nlohmann::json& doc) const {
  if (continuation_ == ContinuationKind::target) return {target(doc)};
  const auto list = options(doc);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    switch (continuation_) {
      case ContinuationKind::label: out.push_back(target_delimiter_ + labels_[i]); break;
      case ContinuationKind::option: out.push_back(target_delimiter_ + list[i]); break;
      default: out.push_back(target_delimiter_ + render(suffix_, doc, "prompt.suffix")); break;
    }
  }
  return out;
}

std::string PromptBuilder::target(const nlohmann::json& doc) const {
  auto text = render(target_, doc, "target");
  if (!target_regex_) return text;
  auto found = target_regex_->first(text);
  if (!found) {
    throw Error(fmt::format("task {}: `target_regex` {} does not match the target {}", task_,
                            quote_value(target_regex_->pattern()), quote_value(text)));
  }
  return *found;
}

std::string PromptBuilder::text(const nlohmann::json& doc) const {
  const auto found = field_value(doc, text_field_);
  if (!found) throw Error(fmt::format("task {}: document has no field {} (text_field)", task_, quote_value(text_field_)));
  return scalar_text(*found);
}

}  // namespace mill
