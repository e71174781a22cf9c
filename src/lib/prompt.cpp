#include "mill/prompt.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "mill/error.hpp"
#include "mill/text.hpp"

namespace mill {

namespace {

std::string string_field(const nlohmann::json& object, const char* name, const std::string& fallback,
                         const std::string& where) {
  if (!object.contains(name) || object[name].is_null()) return fallback;
  if (!object[name].is_string()) throw Error(fmt::format("{}: field `prompt.{}` must be a string", where, name));
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

// Python's str.strip(): leading and trailing whitespace.
std::string strip(const std::string& text) {
  const char* space = " \t\n\r\f\v";
  const auto first = text.find_first_not_of(space);
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

std::string scalar(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
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
  continuation_ = string_field(prompt, "continuation", "label", where);
  if (continuation_ != "label" && continuation_ != "option") {
    throw Error(fmt::format("{}: field `prompt.continuation`: {} is not one of label, option", where,
                            quote_value(continuation_)));
  }
  answer_field_ = task.definition.value("answer_field", std::string("answer"));
  text_field_ = task.definition.value("text_field", std::string("text"));
}

std::vector<std::string> PromptBuilder::options(const nlohmann::json& doc) const {
  if (!doc.contains(options_field_) || !doc[options_field_].is_array()) {
    throw Error(fmt::format("task {}: document has no list field {} (prompt.options_field)", task_,
                            quote_value(options_field_)));
  }
  std::vector<std::string> out;
  for (const auto& option : doc[options_field_]) {
    auto text = scalar(option);
    if (std::find(drop_options_.begin(), drop_options_.end(), text) != drop_options_.end()) continue;
    out.push_back(std::move(text));
  }
  if (out.size() > labels_.size()) {
    throw Error(fmt::format("task {}: a document has {} options but prompt.labels has only {}", task_, out.size(),
                            labels_.size()));
  }
  return out;
}

std::string PromptBuilder::label(std::size_t index) const {
  if (index >= labels_.size()) throw Error(fmt::format("task {}: no label for option {}", task_, index));
  return labels_[index];
}

int PromptBuilder::answer_index(const nlohmann::json& doc) const {
  if (!doc.contains(answer_field_)) {
    throw Error(fmt::format("task {}: document has no answer field {}", task_, quote_value(answer_field_)));
  }
  const auto& answer = doc[answer_field_];
  const auto count = options(doc).size();
  if (answer.is_number_integer()) {
    const auto index = answer.get<long long>();
    if (index < 0 || static_cast<std::size_t>(index) >= count) {
      throw Error(fmt::format("task {}: answer index {} is outside 0..{}", task_, index, count - 1));
    }
    return static_cast<int>(index);
  }
  if (answer.is_string()) {
    const auto text = trim(answer.get<std::string>());
    for (std::size_t i = 0; i < count; ++i) {
      if (labels_[i] == text) return static_cast<int>(i);
    }
    if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
      const auto index = std::stoul(text);
      if (index < count) return static_cast<int>(index);
    }
  }
  throw Error(fmt::format("task {}: answer {} is neither an option index nor one of the labels {}", task_,
                          answer.dump(), join(std::vector<std::string>(labels_.begin(), labels_.begin() + count), ",")));
}

std::string PromptBuilder::render(const std::string& pattern, const nlohmann::json& doc, const std::string& field_name) const {
  std::string out;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 2, "{{") == 0 || pattern.compare(i, 2, "}}") == 0) {
      out += pattern[i];
      i += 2;
      continue;
    }
    if (pattern[i] != '{') {
      out += pattern[i++];
      continue;
    }
    const auto close = pattern.find('}', i);
    if (close == std::string::npos) {
      throw Error(fmt::format("task {}: field `prompt.{}` has an unclosed '{{'", task_, field_name));
    }
    auto name = pattern.substr(i + 1, close - i - 1);
    bool strip_it = false;
    if (const auto bar = name.find('|'); bar != std::string::npos) {
      const auto filter = name.substr(bar + 1);
      if (filter != "strip") {
        throw Error(fmt::format("task {}: field `prompt.{}`: filter {} is unknown (only strip)", task_, field_name,
                                quote_value(filter)));
      }
      strip_it = true;
      name = name.substr(0, bar);
    }
    std::string value;
    if (name == "options") {
      const auto list = options(doc);
      for (std::size_t k = 0; k < list.size(); ++k) {
        std::string line;
        for (std::size_t j = 0; j < option_template_.size();) {
          if (option_template_.compare(j, 7, "{label}") == 0) {
            line += labels_[k];
            j += 7;
          } else if (option_template_.compare(j, 8, "{option}") == 0) {
            line += list[k];
            j += 8;
          } else {
            line += option_template_[j++];
          }
        }
        value += line;
      }
    } else if (name == "answer_label") {
      value = answer_label(doc);
    } else if (name == "answer_option") {
      value = options(doc)[static_cast<std::size_t>(answer_index(doc))];
    } else if (doc.contains(name)) {
      value = scalar(doc[name]);
    } else {
      throw Error(fmt::format("task {}: field `prompt.{}` uses {{{}}} but the document has no field {}", task_,
                              field_name, name, quote_value(name)));
    }
    out += strip_it ? strip(value) : value;
    i = close + 1;
  }
  return out;
}

std::string PromptBuilder::render_question(const nlohmann::json& doc) const { return render(template_, doc, "template"); }

std::string PromptBuilder::render_shot(const nlohmann::json& doc) const {
  auto target = render(fewshot_target_, doc, "fewshot_target");
  for (const auto& [from, to] : fewshot_replace_) {
    for (std::size_t at = 0; (at = target.find(from, at)) != std::string::npos; at += to.size()) {
      target.replace(at, from.size(), to);
    }
  }
  return render_question(doc) + target_delimiter_ + target;
}

std::string PromptBuilder::context(const std::vector<const nlohmann::json*>& shots, const nlohmann::json& doc) const {
  std::string out = description_;
  for (const auto* shot : shots) out += render_shot(*shot) + fewshot_delimiter_;
  return out + render_question(doc) + query_suffix_;
}

std::vector<std::string> PromptBuilder::continuations(const nlohmann::json& doc) const {
  const auto list = options(doc);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    out.push_back(target_delimiter_ + (continuation_ == "option" ? list[i] : labels_[i]));
  }
  return out;
}

std::string PromptBuilder::text(const nlohmann::json& doc) const {
  if (!doc.contains(text_field_)) {
    throw Error(fmt::format("task {}: document has no field {} (text_field)", task_, quote_value(text_field_)));
  }
  return scalar(doc[text_field_]);
}

}  // namespace mill
