#include "mill/base/yaml_limits.hpp"

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>
#include <vector>

#include "mill/base/error.hpp"

namespace mill {

void check_yaml_size(const YAML::Node& root, std::string_view source, std::size_t max_visits) {
  // Depth-first with an explicit stack: a deep or self-containing tree cannot overflow the call stack, and since
  // a node is counted when it is pushed, the stack never holds more than `max_visits` entries.
  std::vector<YAML::Node> pending;
  std::size_t visits = 0;
  auto reach = [&](const YAML::Node& node) {
    if (++visits > max_visits) {
      throw Error(fmt::format("{}: the YAML has more than {} nodes once its aliases are expanded (anchors and aliases "
                              "that repeat each other, or a node that contains itself); mill refuses it",
                              source, max_visits));
    }
    if (node.IsMap() || node.IsSequence()) pending.push_back(node);
  };
  reach(root);
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (node.IsMap()) {
        reach(it->first);
        reach(it->second);
      } else {
        reach(*it);
      }
    }
  }
}

}  // namespace mill
