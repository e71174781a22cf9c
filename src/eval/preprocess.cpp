#include "mill/eval/preprocess.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <tuple>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/regex.hpp"
#include "mill/base/text.hpp"

namespace mill {

std::optional<nlohmann::json> field_value(const nlohmann::json& doc, const std::string& path) {
  if (doc.is_object()) {
    if (const auto it = doc.find(path); it != doc.end()) return *it;
  }
  const auto dot = path.find('.');
  if (dot == std::string::npos) return std::nullopt;
  const auto head = path.substr(0, dot);
  const auto rest = path.substr(dot + 1);
  if (!doc.is_object() || !doc.contains(head)) return std::nullopt;
  const auto& value = doc[head];
  if (value.is_object()) return field_value(value, rest);
  if (value.is_array()) {
    // choices.text over [{text, label}, ...] is the list of texts.
    auto out = nlohmann::json::array();
    for (const auto& item : value) {
      auto found = field_value(item, rest);
      if (!found) return std::nullopt;
      out.push_back(std::move(*found));
    }
    return out;
  }
  return std::nullopt;
}

std::string scalar_text(const nlohmann::json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

namespace {

// Python's str.isspace() code points.
bool is_python_space(utf8proc_int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::vector<std::pair<utf8proc_int32_t, std::size_t>> code_points(const std::string& text) {
  std::vector<std::pair<utf8proc_int32_t, std::size_t>> out;  // code point, byte offset
  std::size_t at = 0;
  while (at < text.size()) {
    utf8proc_int32_t c = 0;
    auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + at),
                              static_cast<utf8proc_ssize_t>(text.size() - at), &c);
    if (n <= 0) {  // not UTF-8: keep the byte as it is
      c = -1;
      n = 1;
    }
    out.emplace_back(c, at);
    at += static_cast<std::size_t>(n);
  }
  return out;
}

std::string strip_sides(const std::string& text, bool left, bool right) {
  const auto points = code_points(text);
  std::size_t first = 0;
  std::size_t last = points.size();
  if (left) {
    while (first < last && is_python_space(points[first].first)) ++first;
  }
  if (right) {
    while (last > first && is_python_space(points[last - 1].first)) --last;
  }
  if (first == last) return {};
  const auto begin = points[first].second;
  const auto end = last < points.size() ? points[last].second : text.size();
  return text.substr(begin, end - begin);
}

std::string map_case(const std::string& text, bool title_first, utf8proc_int32_t (*rest)(utf8proc_int32_t)) {
  std::string out;
  bool first = true;
  for (const auto& [c, at] : code_points(text)) {
    if (c < 0) {
      out += text[at];
      first = false;
      continue;
    }
    const auto mapped = first && title_first ? utf8proc_totitle(c) : rest(c);
    first = false;
    utf8proc_uint8_t buffer[4];
    const auto n = utf8proc_encode_char(mapped, buffer);
    out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace

const std::vector<std::string> kTextFilters = {"strip", "lstrip", "rstrip", "lower", "upper", "capitalize"};

std::optional<std::string> apply_text_filter(const std::string& filter, const std::string& text) {
  if (filter == "strip") return strip_sides(text, true, true);
  if (filter == "lstrip") return strip_sides(text, true, false);
  if (filter == "rstrip") return strip_sides(text, false, true);
  if (filter == "lower") return map_case(text, false, &utf8proc_tolower);
  if (filter == "upper") return map_case(text, false, &utf8proc_toupper);
  if (filter == "capitalize") return map_case(text, true, &utf8proc_tolower);
  return std::nullopt;
}

std::string expand_placeholders(const std::string& pattern, const std::string& task, const std::string& what,
                                const std::function<std::string(const std::string&)>& resolve) {
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
    if (close == std::string::npos) throw Error(fmt::format("task {}: {} has an unclosed '{{'", task, what));
    const auto parts = split_list(pattern.substr(i + 1, close - i - 1), '|');
    if (parts.empty()) throw Error(fmt::format("task {}: {} has an empty {{}}", task, what));
    auto text = resolve(parts[0]);
    for (std::size_t f = 1; f < parts.size(); ++f) {
      auto filtered = apply_text_filter(parts[f], text);
      if (!filtered) {
        throw Error(fmt::format("task {}: {}: filter {} is unknown (valid: {})", task, what, quote_value(parts[f]),
                                join(kTextFilters, ", ")));
      }
      text = std::move(*filtered);
    }
    out += text;
    i = close + 1;
  }
  return out;
}

std::string render_fields(const std::string& pattern, const nlohmann::json& doc, const std::string& task,
                          const std::string& what) {
  return expand_placeholders(pattern, task, what, [&](const std::string& name) {
    const auto value = field_value(doc, name);
    if (!value) {
      throw Error(fmt::format("task {}: {} uses {{{}}} but the document has no field {}", task, what, name,
                              quote_value(name)));
    }
    return scalar_text(*value);
  });
}

// One `preprocess:` entry: the fields it writes, where it reads, and the one operation it performs.
struct Preprocessor::Step {
  enum class Op { copy, template_text, list, strip, replace, regex, map, findall };
  std::string where;  // "preprocess[3]"
  std::vector<std::string> fields;
  std::string from;  // source path; empty: the field itself
  Op op = Op::copy;
  std::string text;                 // template; replace's `from` text
  std::string replacement;          // replace / regex
  std::vector<std::string> items;   // list templates
  std::optional<Regex> regex;       // regex / findall
  nlohmann::json mapping;           // map
};

namespace {
const std::vector<std::string> kStepKeys = {"field", "from", "template", "list", "strip", "replace", "regex", "map", "findall"};
const std::vector<std::string> kStepOps = {"template", "list", "strip", "replace", "regex", "map", "findall"};

std::pair<std::string, std::string> string_pair(const nlohmann::json& value, const std::string& what) {
  if (!value.is_array() || value.size() != 2 || !value[0].is_string() || !value[1].is_string()) {
    throw Error(fmt::format("{} must be a pair of strings [from, to]", what));
  }
  return {value[0].get<std::string>(), value[1].get<std::string>()};
}
}  // namespace

Preprocessor::Preprocessor(const TaskInfo& task) : task_(task.name) {
  if (!task.definition.contains("preprocess")) return;
  const auto where = fmt::format("task {} ({})", task.name, task.source);
  const auto& list = task.definition["preprocess"];
  if (!list.is_array()) throw Error(fmt::format("{}: field `preprocess` must be a list of steps", where));
  for (std::size_t s = 0; s < list.size(); ++s) {
    const auto& entry = list[s];
    auto step = std::make_unique<Step>();
    step->where = fmt::format("preprocess[{}]", s);
    const auto field = [&](const std::string& key) { return fmt::format("{}: field `{}.{}`", where, step->where, key); };
    if (!entry.is_object()) throw Error(fmt::format("{}: field `{}` must be a mapping such as {{field: query, template: \"...\"}}", where, step->where));
    for (const auto& item : entry.items()) {
      if (std::find(kStepKeys.begin(), kStepKeys.end(), item.key()) == kStepKeys.end()) {
        const auto close = closest_names(item.key(), kStepKeys);
        throw Error(fmt::format("{}: unknown field `{}.{}` (valid: {}){}", where, step->where, item.key(), join(kStepKeys, ", "),
                                close.empty() ? std::string() : "; did you mean " + join(close, ", ") + "?"));
      }
    }
    const auto& target = entry.value("field", nlohmann::json());
    if (target.is_string()) {
      step->fields.push_back(target.get<std::string>());
    } else if (target.is_array() && !target.empty()) {
      for (const auto& name : target) {
        if (!name.is_string()) throw Error(fmt::format("{} must be a field name or a list of names", field("field")));
        step->fields.push_back(name.get<std::string>());
      }
    } else {
      throw Error(fmt::format("{} is missing: the field (or list of fields) the step writes", field("field")));
    }
    std::vector<std::string> ops;
    for (const auto& op : kStepOps) {
      if (entry.contains(op)) ops.push_back(op);
    }
    if (ops.size() > 1) {
      throw Error(fmt::format("{}: field `{}` has {} operations ({}); a step does one of {}", where, step->where, ops.size(),
                              join(ops, ", "), join(kStepOps, ", ")));
    }
    if (entry.contains("from")) {
      if (!entry["from"].is_string()) throw Error(fmt::format("{} must be a field name", field("from")));
      step->from = entry["from"].get<std::string>();
      if (step->fields.size() != 1) throw Error(fmt::format("{} needs exactly one `field` to write", field("from")));
    }
    const std::string op = ops.empty() ? std::string() : ops[0];
    if (op.empty()) {
      if (step->from.empty()) {
        throw Error(fmt::format("{}: field `{}` does nothing: give `from` (copy a field) or one of {}", where, step->where,
                                join(kStepOps, ", ")));
      }
      step->op = Step::Op::copy;
    } else if (op == "template" || op == "list") {
      if (!step->from.empty()) throw Error(fmt::format("{}: `from` does not apply to `{}` (templates name their fields)", field("from"), op));
      if (op == "template") {
        if (!entry[op].is_string()) throw Error(fmt::format("{} must be a template string such as \"{{ctx_a}} {{ctx_b}}\"", field(op)));
        step->op = Step::Op::template_text;
        step->text = entry[op].get<std::string>();
      } else {
        if (!entry[op].is_array()) throw Error(fmt::format("{} must be a list of template strings", field(op)));
        for (const auto& item : entry[op]) {
          if (!item.is_string()) throw Error(fmt::format("{} must be a list of template strings", field(op)));
          step->items.push_back(item.get<std::string>());
        }
        step->op = Step::Op::list;
      }
    } else if (op == "strip") {
      if (entry[op] != true) throw Error(fmt::format("{} must be true", field(op)));
      step->op = Step::Op::strip;
    } else if (op == "replace") {
      std::tie(step->text, step->replacement) = string_pair(entry[op], field(op));
      if (step->text.empty()) throw Error(fmt::format("{}: the text to replace is empty", field(op)));
      step->op = Step::Op::replace;
    } else if (op == "regex") {
      auto [pattern, replacement] = string_pair(entry[op], field(op) + " ([pattern, replacement])");
      step->regex.emplace(pattern, field(op));
      step->replacement = replacement;
      step->op = Step::Op::regex;
    } else if (op == "findall") {
      if (!entry[op].is_string()) throw Error(fmt::format("{} must be a regex string", field(op)));
      step->regex.emplace(entry[op].get<std::string>(), field(op));
      if (step->regex->groups() > 1) throw Error(fmt::format("{}: the pattern may have at most one group", field(op)));
      step->op = Step::Op::findall;
    } else if (op == "map") {
      if (!entry[op].is_object() || entry[op].empty()) {
        throw Error(fmt::format("{} must map values (as text) to new values, e.g. {{\"1\": 0, \"2\": 1}}", field(op)));
      }
      step->mapping = entry[op];
      step->op = Step::Op::map;
    }
    steps_.push_back(std::move(step));
  }
}

Preprocessor::~Preprocessor() = default;
Preprocessor::Preprocessor(Preprocessor&&) noexcept = default;
bool Preprocessor::empty() const { return steps_.empty(); }

void Preprocessor::apply(nlohmann::json& doc) const {
  for (const auto& step_ptr : steps_) {
    const auto& step = *step_ptr;
    const auto what = fmt::format("field `{}`", step.where);
    for (const auto& field : step.fields) {
      if (step.op == Step::Op::template_text) {
        doc[field] = render_fields(step.text, doc, task_, what + ".template");
        continue;
      }
      if (step.op == Step::Op::list) {
        auto out = nlohmann::json::array();
        for (const auto& item : step.items) out.push_back(render_fields(item, doc, task_, what + ".list"));
        doc[field] = std::move(out);
        continue;
      }
      const auto& source = step.from.empty() ? field : step.from;
      auto value = field_value(doc, source);
      if (!value) throw Error(fmt::format("task {}: {} reads field {}, which the document lacks", task_, what, quote_value(source)));
      if (step.op == Step::Op::copy) {
        doc[field] = std::move(*value);
        continue;
      }
      if (step.op == Step::Op::map) {
        const auto key = scalar_text(*value);
        if (!step.mapping.contains(key)) {
          std::vector<std::string> keys;
          for (const auto& item : step.mapping.items()) keys.push_back(item.key());
          throw Error(fmt::format("task {}: {}: value {} of field {} is not one of the map's keys ({})", task_, what,
                                  quote_value(key), quote_value(source), join(keys, ", ")));
        }
        doc[field] = step.mapping[key];
        continue;
      }
      auto transform = [&](const std::string& text) -> nlohmann::json {
        switch (step.op) {
          case Step::Op::strip: return *apply_text_filter("strip", text);
          case Step::Op::replace: {
            std::string out = text;
            for (std::size_t at = 0; (at = out.find(step.text, at)) != std::string::npos; at += step.replacement.size()) {
              out.replace(at, step.text.size(), step.replacement);
            }
            return out;
          }
          case Step::Op::regex: return step.regex->replace_all(text, step.replacement);
          case Step::Op::findall: {
            auto out = nlohmann::json::array();
            for (auto& match : step.regex->findall(text)) out.push_back(std::move(match[0]));
            return out;
          }
          default: return text;
        }
      };
      auto text_of = [&](const nlohmann::json& item) {
        if (!item.is_string()) {
          throw Error(fmt::format("task {}: {} needs text but field {} holds {}", task_, what, quote_value(source),
                                  item.dump()));
        }
        return item.get<std::string>();
      };
      if (value->is_array() && step.op != Step::Op::findall) {
        auto out = nlohmann::json::array();
        for (const auto& item : *value) out.push_back(transform(text_of(item)));
        doc[field] = std::move(out);
      } else {
        doc[field] = transform(text_of(*value));
      }
    }
  }
}

}  // namespace mill
