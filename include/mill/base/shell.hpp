#pragma once
// Words for a POSIX shell: what mill writes into job scripts and prints as commands to copy.
#include <string>
#include <string_view>

namespace mill {

// Always single-quoted (job scripts: every value alike, whatever it holds).
std::string shell_quote(std::string_view value);

// Quoted only when needed, so printed commands stay readable: `mill eval 'mill-demo[x=1]' demo`.
std::string shell_word(std::string_view word);

}  // namespace mill
