#include "mill/base/regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"

namespace mill {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  pcre2_match_data* match = nullptr;
  ~Compiled() {
    if (match) pcre2_match_data_free(match);
    if (code) pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern, const std::string& what) : compiled_(std::make_unique<Compiled>()), pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  if (!compiled_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw Error(fmt::format("{}: {} is not a valid regular expression (at offset {}: {})", what, quote_value(pattern),
                            offset, reinterpret_cast<const char*>(message)));
  }
  compiled_->match = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

int Regex::groups() const {
  uint32_t count = 0;
  pcre2_pattern_info(compiled_->code, PCRE2_INFO_CAPTURECOUNT, &count);
  return static_cast<int>(count);
}

namespace {
// Where the next search starts after an empty match at `at`: one UTF-8 character further.
std::size_t after_empty_match(const std::string& text, std::size_t at) {
  std::size_t next = at + 1;
  while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0) == 0x80) ++next;
  return next;
}
}  // namespace

std::vector<std::vector<std::string>> Regex::findall(const std::string& text) const {
  std::vector<std::vector<std::string>> out;
  const int group_count = groups();
  std::size_t at = 0;
  while (at <= text.size()) {
    const int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at, 0,
                               compiled_->match, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(compiled_->match);
    std::vector<std::string> found;
    if (group_count == 0) {
      found.push_back(text.substr(ovector[0], ovector[1] - ovector[0]));
    } else {
      for (int g = 1; g <= group_count; ++g) {
        const bool took_part = g < rc && ovector[2 * g] != PCRE2_UNSET;
        found.push_back(took_part ? text.substr(ovector[2 * g], ovector[2 * g + 1] - ovector[2 * g]) : std::string());
      }
    }
    out.push_back(std::move(found));
    at = ovector[1] > ovector[0] ? ovector[1] : after_empty_match(text, ovector[1]);
  }
  return out;
}

std::optional<std::string> Regex::first(const std::string& text) const {
  const int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0,
                             compiled_->match, nullptr);
  if (rc < 0) return std::nullopt;
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(compiled_->match);
  const int group = (rc >= 2 && ovector[2] != PCRE2_UNSET) ? 1 : 0;
  return text.substr(ovector[2 * group], ovector[2 * group + 1] - ovector[2 * group]);
}

std::string Regex::replace_all(const std::string& text, const std::string& replacement) const {
  std::string out;
  std::size_t copied = 0;
  std::size_t at = 0;
  while (at <= text.size()) {
    const int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), at, 0,
                               compiled_->match, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(compiled_->match);
    out.append(text, copied, ovector[0] - copied);
    out += replacement;
    copied = ovector[1];
    at = ovector[1] > ovector[0] ? ovector[1] : after_empty_match(text, ovector[1]);
    if (ovector[1] == ovector[0] && at <= text.size()) {
      // An empty match keeps the character it stood before (re.sub("x*", "-", "ab") == "-a-b-").
      out.append(text, copied, at - copied);
      copied = at;
    }
  }
  if (copied < text.size()) out.append(text, copied, std::string::npos);
  return out;
}

}  // namespace mill
