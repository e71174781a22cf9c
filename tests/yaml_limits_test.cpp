// The node-visit budget every YAML file a user gives mill is checked against (clusters.yaml, task files).
#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <functional>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/yaml_limits.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
// Nine leaves, then `levels` levels of nine aliases each to the level below: 9^(levels + 1) leaves once expanded.
std::string alias_bomb(int levels) {
  std::string text = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int level = 1; level <= levels; ++level) {
    text += fmt::format("l{0}: &l{0} [", level);
    for (int i = 0; i < 9; ++i) text += fmt::format("{}*l{}", i ? ", " : "", level - 1);
    text += "]\n";
  }
  return text;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("the YAML budget counts a node once per alias that reaches it, keys included") {
  // root map (1) + key `a` (1) + list (1) + 3 items (3) + key `b` (1) + list of 2 aliases (1) + 2 × (list + 3 items)
  const auto root = YAML::Load("a: &x [1, 2, 3]\nb: [*x, *x]\n");
  CHECK_NOTHROW(check_yaml_size(root, "f.yaml", 16));
  const auto message = error_of([&] { check_yaml_size(root, "f.yaml", 15); });
  CHECK_THAT(message, Contains("f.yaml: the YAML has more than 15 nodes once its aliases are expanded"));
  CHECK_NOTHROW(check_yaml_size(YAML::Load("just text"), "f.yaml", 1));
  CHECK_NOTHROW(check_yaml_size(YAML::Load(""), "f.yaml", 1));
}

TEST_CASE("an alias bomb or a self-containing node is refused after a bounded walk") {
  for (const auto& text : {alias_bomb(9), std::string("a: &a [x, *a, *a]\n"), std::string("a: &a {k: *a, j: *a}\n")}) {
    INFO(text.substr(0, 60));
    const auto started = std::chrono::steady_clock::now();
    const auto message = error_of([&] { check_yaml_size(YAML::Load(text), "bomb.yaml"); });
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
    CHECK_THAT(message, Contains("bomb.yaml: the YAML has more than 1000000 nodes"));
  }
  // Under the limit passes: 9^6 = 531,441 leaves below l5, plus the lists and the smaller levels (about 670,000).
  CHECK_NOTHROW(check_yaml_size(YAML::Load(alias_bomb(5)), "f.yaml"));
}

TEST_CASE("a task file with an alias bomb or a self-containing alias is refused in one line") {
  const std::string task = "task: bomb\noutput_type: logprobs\n";
  for (const auto& text : {alias_bomb(9) + task, "metadata: &m {again: *m}\n" + task}) {
    const auto message = error_of([&] { TaskRegistry::from_text(text, "/tasks/bomb.yaml"); });
    CHECK_THAT(message, Contains("/tasks/bomb.yaml: the YAML has more than 1000000 nodes"));
    CHECK(message.find('\n') == std::string::npos);
  }
}
