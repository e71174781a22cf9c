#include "mill/model/model_list.hpp"

#include "mill/base/text.hpp"

namespace mill {

namespace {
bool escapable(char c) { return c == ',' || c == '"' || c == '\\'; }
}  // namespace

std::vector<std::string> split_model_list(std::string_view text) {
  std::vector<std::string> items;
  std::string current;
  int depth = 0;  // inside [...]
  bool in_quotes = false;
  const auto finish = [&] {
    if (auto item = trim(current); !item.empty()) items.push_back(std::move(item));
    current.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      if (in_quotes) {
        // An escape inside a quoted argument value: ModelSpec::parse reads it, so it is kept as written.
        current += c;
        current += text[++i];
        continue;
      }
      if (depth == 0 && escapable(text[i + 1])) {
        current += text[++i];
        continue;
      }
    }
    if (c == '"') in_quotes = !in_quotes;
    if (!in_quotes && c == '[') ++depth;
    if (!in_quotes && c == ']' && depth > 0) --depth;
    if (c == ',' && depth == 0 && !in_quotes) {
      finish();
      continue;
    }
    current += c;
  }
  finish();
  return items;
}

std::string model_list_item(std::string_view spec) {
  const auto open = spec.find('[');
  const auto name = spec.substr(0, open);
  std::string out;
  for (char c : name) {
    if (escapable(c)) out += '\\';
    out += c;
  }
  if (open != std::string_view::npos) out += spec.substr(open);
  return out;
}

}  // namespace mill
