// Golden prompts: the exact strings mill sends for MMLU (lm-evaluation-harness default template) and MMLU-Pro
// (TIGER-Lab's chain-of-thought prompt), on the project's own fixtures and on real records from ../shared/data.
#include <catch2/catch.hpp>

#include "mill/eval/engine.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/prompt.hpp"
#include "mill/eval/tasks.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::TempDir;
using mill::test::write_text;

namespace {
const TaskInfo& builtin(const std::string& name) {
  static const auto registry = TaskRegistry::load();
  const auto* task = registry.find(name);
  REQUIRE(task != nullptr);
  return *task;
}
}  // namespace

TEST_CASE("MMLU prompt on fixtures (original headerless layout): description, 2 shots, question, continuations") {
  TempDir data;
  write_text(data / "mmlu/dev/astronomy_dev.csv",
             "What is the Sun?,A planet,A star,A moon,A comet,B\n"
             "\"How many planets, officially?\",7,8,9,10,B\n"
             "Unused third shot,a,b,c,d,A\n");
  write_text(data / "mmlu/test/astronomy_test.csv", "\"  Which planet is largest?\n\",Mars,Venus,Jupiter,Earth,C\n");
  const auto prepared = prepare_task(builtin("mmlu_astronomy"), 2, std::nullopt, data.path());
  REQUIRE(prepared.samples.size() == 1);
  const auto& sample = prepared.samples[0];
  CHECK(sample.context ==
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What is the Sun?\nA. A planet\nB. A star\nC. A moon\nD. A comet\nAnswer: B\n\n"
        "How many planets, officially?\nA. 7\nB. 8\nC. 9\nD. 10\nAnswer: B\n\n"
        "Which planet is largest?\nA. Mars\nB. Venus\nC. Jupiter\nD. Earth\nAnswer:");
  CHECK(sample.continuations == std::vector<std::string>{" A", " B", " C", " D"});
  CHECK(sample.gold == 2);
  CHECK(sample.doc_id == 0);

  const auto zero = prepare_task(builtin("mmlu_astronomy"), 0, std::nullopt, data.path());
  CHECK(zero.samples[0].context ==
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "Which planet is largest?\nA. Mars\nB. Venus\nC. Jupiter\nD. Earth\nAnswer:");
  CHECK_THROWS_WITH(prepare_task(builtin("mmlu_astronomy"), 5, std::nullopt, data.path()),
                    Catch::Contains("--n_shots 5") && Catch::Contains("3 few-shot"));
}

TEST_CASE("MMLU prompt on real records: mmlu_abstract_algebra, 2-shot, first test question") {
  const auto root = mill::test::shared_path("data");
  if (root.empty() || !std::filesystem::exists(root / "mmlu/dev/abstract_algebra_dev.csv")) {
    WARN("../shared/data/mmlu is absent; skipped");
    return;
  }
  const auto prepared = prepare_task(builtin("mmlu_abstract_algebra"), 2, 1, root);
  REQUIRE(prepared.samples.size() == 1);
  CHECK(prepared.samples[0].context ==
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
        "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, "
        "True\nAnswer: B\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. "
        "6\nAnswer:");
  CHECK(prepared.samples[0].gold == 1);
  // The default 5 shots are the whole dev split, in file order (lm-eval's first_n sampler).
  const auto five = prepare_task(builtin("mmlu_abstract_algebra"), 5, 3, root);
  CHECK(five.samples.size() == 3);
  CHECK(builtin("mmlu_abstract_algebra").default_n_shots == 5);
}

TEST_CASE("MMLU-Pro prompt on fixtures: instruction, CoT shot with the A:→Answer: rewrite, N/A options dropped") {
  TempDir data;
  write_text(data / "mmlu_pro/validation.jsonl",
             R"({"question_id":1,"question":"What is 2+2?","options":["3","4","N/A"],"answer":"B","answer_index":1,"cot_content":"A: Let's think step by step. Two plus two is four. The answer is (B).","category":"math"})"
             "\n"
             R"({"question_id":2,"question":"Other category","options":["x","y"],"answer":"A","answer_index":0,"cot_content":"A: Let's think step by step. The answer is (A).","category":"law"})"
             "\n");
  write_text(data / "mmlu_pro/test.jsonl",
             R"({"question_id":7,"question":"What is 3*3?","options":["6","9","12","N/A"],"answer":"B","answer_index":1,"cot_content":"","category":"math"})"
             "\n");
  const auto& task = builtin("mmlu_pro_math");
  CHECK(task.default_n_shots == 0);
  CHECK(task.output_type == OutputType::generative);
  const auto prepared = prepare_task(task, 1, std::nullopt, data.path());
  REQUIRE(prepared.samples.size() == 1);
  CHECK(prepared.samples[0].context ==
        "The following are multiple choice questions (with answers) about math. Think step by step and then finish "
        "your answer with \"the answer is (X)\" where X is the correct letter choice.\n"
        "Question:\nWhat is 2+2?\nOptions:\nA. 3\nB. 4\n"
        "Answer: Let's think step by step. Two plus two is four. The answer is (B).\n\n"
        "Question:\nWhat is 3*3?\nOptions:\nA. 6\nB. 9\nC. 12\n"
        "Answer: Let's think step by step.");
  CHECK(prepared.samples[0].target == "B");
  const auto zero = prepare_task(task, 0, std::nullopt, data.path());
  CHECK(zero.samples[0].context ==
        "The following are multiple choice questions (with answers) about math. Think step by step and then finish "
        "your answer with \"the answer is (X)\" where X is the correct letter choice.\n"
        "Question:\nWhat is 3*3?\nOptions:\nA. 6\nB. 9\nC. 12\nAnswer: Let's think step by step.");
}

TEST_CASE("MMLU-Pro prompt on real records: mmlu_pro_other, 1-shot from validation") {
  const auto root = mill::test::shared_path("data");
  if (root.empty() || !std::filesystem::exists(root / "mmlu_pro/validation.jsonl")) {
    WARN("../shared/data/mmlu_pro is absent; skipped");
    return;
  }
  const auto prepared = prepare_task(builtin("mmlu_pro_other"), 1, 1, root);
  REQUIRE(prepared.samples.size() == 1);
  CHECK(prepared.samples[0].context ==
        "The following are multiple choice questions (with answers) about other. Think step by step and then finish "
        "your answer with \"the answer is (X)\" where X is the correct letter choice.\n"
        "Question:\nAs of 2017, how many of the world\xE2\x80\x99s 1-year-old children today have been vaccinated "
        "against some disease? *\nOptions:\nA. 30%\nB. 60%\nC. 10%\nD. 90%\nE. 80%\nF. 40%\nG. 100%\nH. 50%\n"
        "Answer: Let's think step by step. We refer to Wikipedia articles on global facts for help. According to data "
        "published by the World Health Organization, the nummber of 1-year-old children vaccinated in 2017 exceeds "
        "80%. The answer is (E).\n\n"
        "Question:\nWhat was the significance of the Gulf of Tonkin resolution?\nOptions:\n"
        "A. It triggered a global protest against US involvement in Vietnam\n"
        "B. It resulted in a significant reduction of US troops in Vietnam\n"
        "C. It allowed the US to intensify its involvement in Vietnam\n"
        "D. It illustrated the influence of public opinion on US foreign policy\n"
        "E. It marked the beginning of diplomatic negotiations with Vietnam\n"
        "F. It enhanced Congressional control over the Vietnam War\n"
        "G. It curtailed US involvement in Vietnam\n"
        "H. It established the neutrality of the United States in the Vietnam War\n"
        "I. It isolated the US from its allies during the Vietnam War\n"
        "J. It led to the immediate end of the Vietnam War\n"
        "Answer: Let's think step by step.");
  CHECK(prepared.samples[0].target == "C");
}

TEST_CASE("MMLU-Pro question 3983: mill trusts `answer` (C), not `answer_index` (1)") {
  const auto root = mill::test::shared_path("data");
  if (root.empty() || !std::filesystem::exists(root / "mmlu_pro/test.jsonl")) {
    WARN("../shared/data/mmlu_pro is absent; skipped");
    return;
  }
  const auto prepared = prepare_task(builtin("mmlu_pro_chemistry"), 0, std::nullopt, root);
  bool found = false;
  for (const auto& sample : prepared.samples) {
    if (sample.doc["question_id"] == 3983) {
      found = true;
      CHECK(sample.doc["answer_index"] == 1);
      CHECK(sample.target == "C");
    }
  }
  CHECK(found);
}

TEST_CASE("Prompt templates: strip filter, brace escapes, unknown fields are named") {
  TaskInfo task;
  task.name = "t";
  task.source = "test";
  task.definition = {{"task", "t"},
                     {"prompt", {{"template", "{{{q|strip}}} {options}"}, {"option_template", "({label}) {option};"},
                                 {"labels", {"x", "y"}}}}};
  PromptBuilder prompt(task);
  const nlohmann::json doc = {{"q", "  hi \n"}, {"choices", {"a", "b"}}, {"answer", "y"}};
  CHECK(prompt.render_question(doc) == "{hi} (x) a;(y) b;");
  CHECK(prompt.answer_index(doc) == 1);
  CHECK_THROWS_WITH(prompt.render("{missing}", doc, "template"), Catch::Contains("missing"));
  CHECK_THROWS_WITH(prompt.answer_index({{"choices", {"a"}}, {"answer", 3}}), Catch::Contains("outside"));
}
