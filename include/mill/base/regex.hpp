#pragma once
// One compiled regular expression (PCRE2, UTF-8, Unicode \b \w \d as Python's `re` on str) with the three uses task
// definitions need: the first match, every match (Python's re.findall) and replacing every match (re.sub).
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mill {

class Regex {
 public:
  // A bad pattern throws mill::Error naming `what` (e.g. "field `preprocess[2].regex`"), the pattern and the offset.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  const std::string& pattern() const { return pattern_; }
  // Number of capture groups.
  int groups() const;

  // Python's re.findall: for every non-overlapping match, left to right, its groups ('' for a group that did not
  // take part) or, for a pattern without groups, the whole match as the only element.
  std::vector<std::vector<std::string>> findall(const std::string& text) const;
  // The first match's first group (the whole match without groups); nullopt when nothing matches.
  std::optional<std::string> first(const std::string& text) const;
  // Python's re.sub(pattern, replacement, text) with a literal replacement (no backreferences).
  std::string replace_all(const std::string& text, const std::string& replacement) const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
  std::string pattern_;
};

}  // namespace mill
