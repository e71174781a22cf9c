#include <catch2/catch.hpp>

#include "mill/base/error.hpp"
#include "mill/eval/tasks.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
std::string error_of(const std::vector<std::filesystem::path>& paths) {
  try {
    TaskRegistry::load(paths);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("built-in benchmarks expand to their tasks") {
  const auto registry = TaskRegistry::load();
  const auto mmlu = registry.expand({"mmlu"});
  CHECK(mmlu.size() == 57);
  for (const auto* task : mmlu) {
    CHECK(task->benchmark == "mmlu");
    CHECK(task->output_type == OutputType::logprobs);
    CHECK(task->default_n_shots == 5);
    CHECK(task->source == "builtin:tasks/mmlu.yaml");
  }
  const auto pro = registry.expand({"mmlu_pro"});
  CHECK(pro.size() == 14);
  CHECK(pro.front()->output_type == OutputType::generative);
  CHECK(pro.front()->default_n_shots == 0);
  // Duplicates collapse; a single task name works too.
  CHECK(registry.expand({"mmlu", "mmlu_anatomy", "mmlu"}).size() == 57);
  CHECK(registry.expand({"mmlu_anatomy"}).size() == 1);
  // Vars are substituted per task.
  const auto* anatomy = registry.find("mmlu_anatomy");
  REQUIRE(anatomy);
  CHECK(anatomy->definition["dataset"]["path"] == "mmlu/{split}/anatomy_{split}.csv");
  CHECK(anatomy->fingerprint != registry.find("mmlu_virology")->fingerprint);
}

TEST_CASE("unknown task names suggest the closest known ones") {
  const auto registry = TaskRegistry::load();
  try {
    registry.expand({"mmlu_anatomyy"});
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("unknown task or benchmark \"mmlu_anatomyy\"") && Contains("mmlu_anatomy"));
  }
  try {
    registry.expand({"mmlu-pro"});
    FAIL("accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("did you mean") && Contains("mmlu_pro"));
  }
}

TEST_CASE("extra task paths add groups, includes and single tasks") {
  test::TempDir dir;
  test::write_text(dir / "_base.yaml", "output_type: generative\ndefault_n_shots: 3\ngeneration: {max_new_tokens: 64}\n");
  test::write_text(dir / "mine.yaml",
                   "group: mybench\ndefaults:\n  include: _base.yaml\n  prompt: 'about ${topic}'\n"
                   "tasks:\n  - {task: mine_a, vars: {topic: apples}}\n  - {task: mine_b, vars: {topic: pears}, default_n_shots: 1}\n");
  test::write_text(dir / "sub" / "single.yml", "task: lonely\noutput_type: perplexity\nmetadata: {note: x}\n");
  const auto registry = TaskRegistry::load({dir.path()});
  const auto mine = registry.expand({"mybench"});
  REQUIRE(mine.size() == 2);
  CHECK(mine[0]->definition["prompt"] == "about apples");
  CHECK(mine[0]->definition["generation"]["max_new_tokens"] == 64);
  CHECK(mine[0]->default_n_shots == 3);
  CHECK(mine[1]->default_n_shots == 1);
  CHECK(mine[0]->source == (dir / "mine.yaml").string());
  const auto* lonely = registry.find("lonely");
  REQUIRE(lonely);
  CHECK(lonely->output_type == OutputType::perplexity);
  CHECK(lonely->benchmark.empty());
  CHECK(registry.expand({"mmlu"}).size() == 57);  // built-ins still there
}

TEST_CASE("the fingerprint follows the definition but not its metadata") {
  test::TempDir a, b, c;
  test::write_text(a / "t.yaml", "task: t\noutput_type: logprobs\nprompt: x\nmetadata: {note: one}\n");
  test::write_text(b / "t.yaml", "task: t\noutput_type: logprobs\nprompt: x\nmetadata: {note: two}\n");
  test::write_text(c / "t.yaml", "task: t\noutput_type: logprobs\nprompt: y\n");
  const auto fa = TaskRegistry::load({a.path()}).find("t")->fingerprint;
  CHECK(fa == TaskRegistry::load({b.path()}).find("t")->fingerprint);
  CHECK(fa != TaskRegistry::load({c.path()}).find("t")->fingerprint);
}

TEST_CASE("bad task files are one-line errors naming the file, task and field") {
  test::TempDir dir;
  test::write_text(dir / "bad.yaml", "task: broken\noutput_type: multiple_guess\n");
  auto message = error_of({dir.path()});
  CHECK_THAT(message, Contains("bad.yaml") && Contains("broken") && Contains("output_type") && Contains("logprobs"));

  test::TempDir shots;
  test::write_text(shots / "s.yaml", "task: s\noutput_type: logprobs\ndefault_n_shots: -1\n");
  CHECK_THAT(error_of({shots.path()}), Contains("default_n_shots"));

  test::TempDir syntax;
  test::write_text(syntax / "y.yaml", "task: [unclosed\n");
  CHECK_THAT(error_of({syntax.path()}), Contains("y.yaml") && Contains("invalid YAML at line"));

  test::TempDir vars;
  test::write_text(vars / "v.yaml", "task: v\noutput_type: logprobs\nprompt: '${nope}'\n");
  CHECK_THAT(error_of({vars.path()}), Contains("unknown variable ${nope}"));

  test::TempDir dup;
  test::write_text(dup / "d.yaml", "task: mmlu_anatomy\noutput_type: logprobs\n");
  CHECK_THAT(error_of({dup.path()}), Contains("defined twice") && Contains("builtin:tasks/mmlu.yaml"));

  test::TempDir clash;
  test::write_text(clash / "c.yaml", "task: mmlu\noutput_type: logprobs\n");
  CHECK_THAT(error_of({clash.path()}), Contains("also a benchmark name"));

  CHECK_THAT(error_of({"/nonexistent/tasks"}), Contains("--extra_task_paths") && Contains("/nonexistent/tasks"));

  // Values of the wrong type are errors naming the file, never crashes (found by fuzz/fuzz_task_yaml).
  test::TempDir types;
  test::write_text(types / "t.yaml", "task: t\noutput_type: logprobs\nbenchmark: [a, b]\n");
  CHECK_THAT(error_of({types.path()}), Contains("t.yaml") && Contains("benchmark"));
  test::write_text(types / "t.yaml", "task: t\noutput_type: logprobs\nvars: [a]\n");
  CHECK_THAT(error_of({types.path()}), Contains("t.yaml") && Contains("vars"));
  test::write_text(types / "t.yaml", "group: g\ndefaults: [1]\ntasks: [{task: a}]\n");
  CHECK_THAT(error_of({types.path()}), Contains("t.yaml"));

  test::TempDir cycle;
  test::write_text(cycle / "a.yaml", "include: b.yaml\ntask: a\noutput_type: logprobs\n");
  test::write_text(cycle / "b.yaml", "include: a.yaml\n");
  CHECK_THAT(error_of({cycle / "a.yaml"}), Contains("include"));
}
