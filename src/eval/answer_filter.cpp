#include "mill/eval/answer_filter.hpp"

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/base/text.hpp"

namespace mill {

namespace {
std::string task_where(const TaskInfo& task) { return fmt::format("task {} ({})", task.name, task.source); }

bool valid_filter_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}
}  // namespace

std::optional<std::string> AnswerFilter::apply(const std::string& text) const {
  const auto matches = regex.findall(text);
  if (matches.empty()) return std::nullopt;
  const long long count = static_cast<long long>(matches.size());
  const long long index = group_select < 0 ? count + group_select : group_select;
  if (index < 0 || index >= count) return std::nullopt;  // Python would raise IndexError: count it as unparsed
  const auto& groups = matches[static_cast<std::size_t>(index)];
  // Several groups: the first that matched something (lm-eval's tuple handling).
  for (const auto& group : groups) {
    if (!group.empty() || groups.size() == 1) return *apply_text_filter("strip", group);
  }
  return std::nullopt;
}

std::vector<AnswerFilter> answer_filters(const TaskInfo& task) {
  std::vector<AnswerFilter> out;
  if (!task.definition.contains("answer_filters")) return out;
  const auto where = task_where(task);
  const auto& list = task.definition["answer_filters"];
  if (!list.is_array() || list.empty()) {
    throw Error(fmt::format("{}: field `answer_filters` must be a non-empty list of {{name, regex, group_select}}", where));
  }
  const std::vector<std::string> keys = {"name", "regex", "group_select"};
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& entry = list[i];
    const auto field = fmt::format("{}: field `answer_filters[{}]", where, i);
    if (!entry.is_object()) throw Error(fmt::format("{}` must be a mapping {{name, regex, group_select}}", field));
    for (const auto& item : entry.items()) {
      if (std::find(keys.begin(), keys.end(), item.key()) == keys.end()) {
        throw Error(fmt::format("{}.{}` is unknown (valid: {})", field, item.key(), join(keys, ", ")));
      }
    }
    const auto name = entry.value("name", nlohmann::json());
    if (!name.is_string() || !valid_filter_name(name.get<std::string>())) {
      throw Error(fmt::format("{}.name` must be a name of letters, digits, '_' or '-' (it names the metric "
                              "exact_match_<name>), not {}",
                              field, name.dump()));
    }
    for (const auto& earlier : out) {
      if (earlier.name == name.get<std::string>()) throw Error(fmt::format("{}.name` {} is used twice", field, name.dump()));
    }
    const auto regex = entry.value("regex", nlohmann::json());
    if (!regex.is_string()) throw Error(fmt::format("{}.regex` must be a regular expression string", field));
    const auto select = entry.value("group_select", nlohmann::json(0));
    if (!select.is_number_integer()) {
      throw Error(fmt::format("{}.group_select` must be an integer: which match, 0 the first, -1 the last", field));
    }
    out.push_back(AnswerFilter{name.get<std::string>(), Regex(regex.get<std::string>(), field + ".regex`"),
                               select.get<int>()});
  }
  return out;
}

AnswerNormalizer::AnswerNormalizer(const TaskInfo& task) {
  if (!task.definition.contains("answer_normalization")) return;
  const auto where = task_where(task);
  const auto& block = task.definition["answer_normalization"];
  if (!block.is_object()) throw Error(fmt::format("{}: field `answer_normalization` must be a mapping", where));
  for (const auto& item : block.items()) {
    if (item.key() != "ignore_regexes" && item.key() != "ignore_case") {
      throw Error(fmt::format("{}: unknown field `answer_normalization.{}` (valid: ignore_regexes, ignore_case)", where,
                              item.key()));
    }
  }
  if (block.contains("ignore_case")) {
    if (!block["ignore_case"].is_boolean()) throw Error(fmt::format("{}: field `answer_normalization.ignore_case` must be true or false", where));
    ignore_case_ = block["ignore_case"].get<bool>();
  }
  if (block.contains("ignore_regexes")) {
    const auto& list = block["ignore_regexes"];
    if (!list.is_array()) throw Error(fmt::format("{}: field `answer_normalization.ignore_regexes` must be a list of regexes", where));
    for (const auto& pattern : list) {
      if (!pattern.is_string()) throw Error(fmt::format("{}: field `answer_normalization.ignore_regexes` must hold strings", where));
      ignore_.emplace_back(pattern.get<std::string>(), where + ": field `answer_normalization.ignore_regexes`");
    }
  }
}

std::string AnswerNormalizer::normalize(const std::string& text) const {
  auto out = text;
  for (const auto& regex : ignore_) out = regex.replace_all(out, "");
  if (ignore_case_) out = *apply_text_filter("lower", out);
  return out;
}

}  // namespace mill
