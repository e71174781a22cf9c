#pragma once
// Bounds on a loaded YAML document before anything walks it. Anchors and aliases let a few lines name a tree of
// billions of nodes (a "billion laughs"), or a node that contains itself; yaml-cpp shares aliased nodes, so
// loading stays cheap, but any walk of the tree (validation, conversion to JSON) would not. Every YAML file a
// user hands to mill (clusters.yaml, task files) is checked here right after loading.
#include <cstddef>
#include <string_view>

namespace YAML {
class Node;
}

namespace mill {

// More than real configuration files need (the bundled task files have a few hundred nodes), few enough that
// reaching the limit takes a fraction of a second.
inline constexpr std::size_t kMaxYamlNodeVisits = 1'000'000;

// Walks `root` as a reader would, counting every node each time it is reached (a node behind an alias counts
// once per alias), and throws mill::Error naming `source` once the count passes `max_visits`. The work is
// bounded by `max_visits`, also for a node that contains itself.
void check_yaml_size(const YAML::Node& root, std::string_view source, std::size_t max_visits = kMaxYamlNodeVisits);

}  // namespace mill
