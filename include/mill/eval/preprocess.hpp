#pragma once
// Document fields and their per-document preprocessing (docs/tasks.md, "Preprocessing"): field paths such as
// `question.stem` or `choices.text` (a list of objects yields the list of their values), the text filters templates
// may apply (`{ctx_b|capitalize}`), and the `preprocess:` steps a task declares to rebuild fields before prompting
// (HellaSwag's bracket cleanup, Winogrande's split at the blank, LAMBADA's last word).
#include <memory>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mill/eval/tasks.hpp"

namespace mill {

// The value at `path`: the field named exactly so if the document has one, else the dot-separated path, where a
// list of objects along the way yields the list of the rest of the path's values. nullopt when absent.
std::optional<nlohmann::json> field_value(const nlohmann::json& doc, const std::string& path);

// A field's value as text: strings as they are, other values as JSON (numbers, booleans: `1`, `true`).
std::string scalar_text(const nlohmann::json& value);

// The template filters: strip, lstrip, rstrip (Python's str methods, ASCII and Unicode whitespace), lower, upper,
// capitalize (Python's str.capitalize: first character title-cased, the rest lower-cased). nullopt: unknown filter.
std::optional<std::string> apply_text_filter(const std::string& filter, const std::string& text);
extern const std::vector<std::string> kTextFilters;

// Expands `{name}` / `{name|filter|...}` placeholders (`{{` and `}}` are braces): `resolve` gives a name's text and
// throws for a name it does not know; the filters are kTextFilters. The one template walk of prompts and preprocess.
std::string expand_placeholders(const std::string& pattern, const std::string& task, const std::string& what,
                                const std::function<std::string(const std::string&)>& resolve);

// Renders `{path}` / `{path|filter|...}` from the document's fields; `{{` and `}}` are braces. `what` names the
// template in errors ("field `preprocess[0].template`").
std::string render_fields(const std::string& pattern, const nlohmann::json& doc, const std::string& task,
                          const std::string& what);

// The task's `preprocess:` steps, parsed and checked once (regexes compiled); apply() runs them in order on one
// document. A malformed step throws mill::Error naming the task, the step and what would be valid.
class Preprocessor {
 public:
  explicit Preprocessor(const TaskInfo& task);
  ~Preprocessor();
  Preprocessor(Preprocessor&&) noexcept;
  bool empty() const;
  void apply(nlohmann::json& doc) const;

 private:
  struct Step;
  std::string task_;
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace mill
