#pragma once
// Files from the project's data/ directory, compiled into the binary (see cmake/embed_data.cmake).
#include <optional>
#include <string_view>
#include <vector>

namespace mill::embedded {

struct EmbeddedFile {
  std::string_view path;  // relative to data/, e.g. "tasks/mmlu.yaml"
  std::string_view content;
};

const std::vector<EmbeddedFile>& all_files();

// The content of data/<path>, if it was embedded.
std::optional<std::string_view> find(std::string_view path);

}  // namespace mill::embedded
