#include "mill/base/embedded.hpp"

namespace mill::embedded {

std::optional<std::string_view> find(std::string_view path) {
  for (const auto& file : all_files()) {
    if (file.path == path) return file.content;
  }
  return std::nullopt;
}

}  // namespace mill::embedded
