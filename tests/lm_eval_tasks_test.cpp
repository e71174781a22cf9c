// The lm-evaluation-harness benchmarks (docs/tasks.md): golden requests compared byte for byte with what lm-eval
// builds (tests/data/lm_eval/goldens.json, written by make_goldens.py from lm-eval's task YAML at the commit it
// records), Python's random reproduced, the task-format features they rest on, one scoring case per metric, and
// the demo model running every new task end to end.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "mill/eval/answer_filter.hpp"
#include "mill/eval/engine.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/metrics.hpp"
#include "mill/eval/preprocess.hpp"
#include "mill/eval/prompt.hpp"
#include "mill/base/python_random.hpp"
#include "mill/eval/tasks.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Contains;
using mill::test::TempDir;
using mill::test::write_text;

namespace {
const TaskRegistry& builtins() {
  static const auto registry = TaskRegistry::load();
  return registry;
}
const TaskInfo& builtin(const std::string& name) {
  const auto* task = builtins().find(name);
  REQUIRE(task != nullptr);
  return *task;
}
std::filesystem::path fixtures() { return std::filesystem::path(test::source_dir()) / "tests/data/lm_eval/fixtures"; }
TaskInfo task_from(const std::string& yaml) { return TaskRegistry::from_text(yaml, "test.yaml").tasks().at(0); }
}  // namespace

TEST_CASE("PythonRandom reproduces CPython's random.Random(seed): getrandbits, _randbelow, sample", "[lm_eval]") {
  // Expected values printed by CPython 3 (random.Random(1234) etc.).
  PythonRandom words(1234);
  CHECK(words.getrandbits(32) == 4150886329u);
  CHECK(words.getrandbits(32) == 3342196574u);
  CHECK(words.getrandbits(32) == 1892932127u);
  PythonRandom wide(1234);
  CHECK(wide.getrandbits(64) == 14354624986284130233ull);
  CHECK(wide.getrandbits(40) == 126446983711ull);
  CHECK(wide.getrandbits(1) == 0);
  PythonRandom below(1234);
  for (const auto& [n, expected] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 0}, {2, 0}, {3, 0}, {10, 1}, {1000, 932}, {7473, 6610}}) {
    CHECK(below.randbelow(n) == expected);
  }
  // One generator, in order: the pool algorithm (small populations) and the set algorithm (large ones, k > 5 too).
  PythonRandom sampler(1234);
  CHECK(sampler.sample(10, 3) == std::vector<std::size_t>{7, 1, 0});
  CHECK(sampler.sample(10, 3) == std::vector<std::size_t>{1, 0, 9});
  CHECK(sampler.sample(7473, 5) == std::vector<std::size_t>{806, 6279, 2905, 1939, 142});
  CHECK(sampler.sample(30, 8) == std::vector<std::size_t>{0, 25, 29, 11, 20, 19, 15, 24});
  CHECK(sampler.sample(100, 8) == std::vector<std::size_t>{59, 19, 11, 23, 91, 14, 1, 64});
  CHECK(PythonRandom(0).getrandbits(32) == 3626764237u);
  CHECK(PythonRandom((1ull << 40) + 5).getrandbits(32) == 2166296868u);  // a seed of two 32-bit words
  CHECK_THROWS_WITH(PythonRandom(1).sample(3, 4), Contains("pool of 3"));
}

TEST_CASE("lm-eval goldens: the built-in tasks render lm-eval's requests byte for byte", "[lm_eval]") {
  const auto goldens = nlohmann::json::parse(test::read_text(std::filesystem::path(test::source_dir()) / "tests/data/lm_eval/goldens.json"));
  REQUIRE(goldens["lm_eval_commit"].get<std::string>().size() == 40);
  const auto shared = test::shared_path("data");
  std::size_t compared = 0;
  for (const auto& golden : goldens["cases"]) {
    const auto name = golden["task"].get<std::string>();
    const int n_shot = golden["n_shot"].get<int>();
    const auto& expected = golden["requests"];
    INFO(name << " " << n_shot << "-shot on " << golden["data"].get<std::string>());
    std::filesystem::path data_dir = fixtures();
    if (golden["data"] == "shared") {
      if (shared.empty()) {
        WARN("../shared/data is absent; skipped " << name);
        continue;
      }
      data_dir = shared;
    }
    const auto& task = builtin(name);
    const auto prepared = prepare_task(task, n_shot, static_cast<int>(expected.size()), data_dir);
    REQUIRE(prepared.samples.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const auto& sample = prepared.samples[i];
      const auto& want = expected[i];
      INFO("document " << i);
      if (task.output_type == OutputType::generative) {
        CHECK(sample.context == want["context"].get<std::string>());
        CHECK(generation_settings(task).stop == want["stop"].get<std::vector<std::string>>());
        CHECK(sample.target == want["target"].get<std::string>());
      } else {
        CHECK(sample.contexts == want["contexts"].get<std::vector<std::string>>());
        CHECK(sample.continuations == want["continuations"].get<std::vector<std::string>>());
        std::vector<int> golds;
        const auto& gold = want["gold"];
        if (name == "truthfulqa_mc2") {  // lm-eval's MC2 target: the 0/1 label of every answer
          for (std::size_t k = 0; k < gold.size(); ++k) {
            if (gold[k] == 1) golds.push_back(static_cast<int>(k));
          }
        } else {
          golds = gold.get<std::vector<int>>();
        }
        CHECK(sample.golds == golds);
      }
      ++compared;
    }
  }
  CHECK(compared >= (shared.empty() ? 30u : 60u));
}

TEST_CASE("Golden prompts by hand: HellaSwag cleanup, Winogrande partial contexts, ARC numeric labels", "[lm_eval]") {
  // Derived by hand from lm_eval/tasks/hellaswag/utils.py (4e7e0d47): strip, " [title]" -> ". ", [..] removed,
  // double spaces halved, ctx_b.capitalize() (the rest lower-cased).
  const auto hellaswag = prepare_task(builtin("hellaswag"), 0, 3, fixtures());
  CHECK(hellaswag.samples[0].context == "Roof shingle removal: A man is sitting on a roof. He");
  CHECK(hellaswag.samples[0].continuations[3] == " starts pulling up roofing on a roof.");
  CHECK(hellaswag.samples[2].context == "Personal Care and Style: How to get long nails. Eat biotin. Élan then");
  CHECK(hellaswag.samples[2].continuations[0] == "  Biotin helps nails grow Try eggs.");
  CHECK(hellaswag.samples[2].gold == 0);
  // preprocess_winogrande.py: contexts "<sentence up to _><option>", continuation " <rest after _, stripped>".
  const auto winogrande = prepare_task(builtin("winogrande"), 0, 1, fixtures());
  CHECK(winogrande.samples[0].contexts ==
        std::vector<std::string>{"Sarah was a much better surgeon than Maria so Sarah", "Sarah was a much better surgeon than Maria so Maria"});
  CHECK(winogrande.samples[0].continuations == std::vector<std::string>(2, " always got the harder cases."));
  CHECK(winogrande.samples[0].gold == 0);
  // arc_easy.yaml: gold = choices.label.index(answerKey), three options here, labels 1-3.
  const auto arc = prepare_task(builtin("arc_easy"), 0, 2, fixtures());
  CHECK(arc.samples[1].context == "Question: When a sound gets louder and quieter, the sound travels\nAnswer:");
  CHECK(arc.samples[1].continuations == std::vector<std::string>{" slower", " faster", " at the same speed"});
  CHECK(arc.samples[1].gold == 2);
}

TEST_CASE("Few-shot sampling: random draws per document in order, draw_extra drops the evaluated document", "[lm_eval]") {
  const std::string base =
      "task: t\noutput_type: logprobs\nfewshot_split: test\nfewshot_sampler: random\n"
      "prompt: {template: '{q}', options_field: c, continuation: option, fewshot_target: '{answer_option}'}\n"
      "dataset: {format: inline, documents: {test: [{q: d0, c: [x], answer: 0}, {q: d1, c: [x], answer: 0}, "
      "{q: d2, c: [x], answer: 0}, {q: d3, c: [x], answer: 0}, {q: d4, c: [x], answer: 0}]}}\n";
  // CPython: random.Random(1234).sample(range(5), 2) twice gives [3, 0] then [0, 4]; the evaluated document may be
  // among them (lm-eval's sampler when it is not told the document, e.g. LAMBADA).
  auto shots = [](const TaskInfo& task, int n) {
    std::vector<std::string> out;
    for (const auto& sample : prepare_task(task, n, 2, std::nullopt).samples) out.push_back(sample.context);
    return out;
  };
  CHECK(shots(task_from(base), 2) == std::vector<std::string>{"d3 x\n\nd0 x\n\nd0", "d0 x\n\nd4 x\n\nd1"});
  // With draw_extra, sample(range(5), 3) gives [3, 0, 4] then [0, 4, 2]: document 0 is dropped from its own draw,
  // document 1 keeps the first two.
  CHECK(shots(task_from(base + "fewshot_draw_extra: true\n"), 2) ==
        std::vector<std::string>{"d3 x\n\nd4 x\n\nd0", "d0 x\n\nd4 x\n\nd1"});
  CHECK_THROWS_WITH(check_task_definition(task_from(base + "fewshot_seed: -1\n")), Contains("fewshot_seed") && Contains("non-negative"));
  CHECK_THROWS_WITH(check_task_definition(task_from(base + "fewshot_sampler: shuffled\n")),
                    Contains("fewshot_sampler") && Contains("first_n, random"));
}

TEST_CASE("Preprocessing steps and field paths: one clear line for a malformed step", "[lm_eval]") {
  const auto task = task_from(
      "task: p\noutput_type: logprobs\ndataset: {format: inline, documents: {test: [{a: '  Hello [x] World  ', n: '2', "
      "c: '(A) one (B) two (C) three', nested: {list: [{t: u}, {t: v}]}}]}}\n"
      "preprocess:\n"
      "  - {field: b, from: a}\n  - {field: b, strip: true}\n  - {field: b, regex: ['\\[.*?\\] ', '']}\n"
      "  - {field: k, from: n, map: {'1': 0, '2': 1}}\n  - {field: opts, from: c, findall: '\\([A-Z]\\) (.*?)(?= \\([A-Z]\\) |$)'}\n"
      "  - {field: t, template: '{nested.list.t}|{a|strip|lower}|{a|strip|capitalize}'}\n");
  auto doc = task.definition["dataset"]["documents"]["test"][0];
  Preprocessor(task).apply(doc);
  CHECK(doc["b"] == "Hello World");
  CHECK(doc["k"] == 1);
  CHECK(doc["opts"] == nlohmann::json({"one", "two", "three"}));
  CHECK(doc["t"] == "[\"u\",\"v\"]|hello [x] world|Hello [x] world");
  CHECK(*field_value(doc, "nested.list.t") == nlohmann::json({"u", "v"}));

  auto bad = [](const std::string& step) {
    return task_from("task: p\noutput_type: logprobs\ndataset: {format: inline, documents: {test: [{q: x, choices: [a], answer: 0}]}}\n"
                     "preprocess:\n  - " + step + "\n");
  };
  CHECK_THROWS_WITH(check_task_definition(bad("{field: q, strp: true}")),
                    Contains("task p") && Contains("`preprocess[0].strp`") && Contains("did you mean strip"));
  CHECK_THROWS_WITH(check_task_definition(bad("{field: q, regex: ['(', '']}")),
                    Contains("preprocess[0].regex") && Contains("not a valid regular expression"));
  CHECK_THROWS_WITH(check_task_definition(bad("{field: q, strip: true, replace: [a, b]}")),
                    Contains("2 operations") && Contains("template, list, strip"));
  CHECK_THROWS_WITH(check_task_definition(bad("{strip: true}")), Contains("`preprocess[0].field` is missing"));
  CHECK_THROWS_WITH(prepare_task(bad("{field: q, map: {y: 1}}"), 0, std::nullopt, std::nullopt),
                    Contains("value \"x\"") && Contains("map's keys (y)"));
  CHECK_THROWS_WITH(check_task_definition(task_from("task: p\noutput_type: logprobs\nprompt: {continuation: suffix}\n"
                                                    "dataset: {format: inline, documents: {test: []}}\n")),
                    Contains("needs `prompt.suffix`"));
}

TEST_CASE("acc vs acc_norm: length in characters of the option, without the delimiter, decides one document", "[lm_eval]") {
  // Options " é" (1 character, 2 bytes) and " ab": log-likelihoods -1.5 and -2.5. acc picks 0; acc_norm divides by
  // 1 and 2 characters: -1.5 vs -1.25, picks 1 (by bytes, 2 and 2, it would pick 0; with the space, 2 and 3, 0).
  const auto score = score_choices({-1.5, -2.5}, {1, 2}, {false, false}, 1);
  CHECK(score.predicted == 0);
  CHECK(score.predicted_norm == 1);
  CHECK_FALSE(score.correct);
  CHECK(score.correct_norm);
  // Through the engine: the demo backend's log-likelihoods on a one-document task; lengths come from the options.
  const auto task = task_from("task: n\noutput_type: logprobs\nprompt: {template: '{q}', continuation: option}\n"
                              "dataset: {format: inline, documents: {test: [{q: 'Pick:', choices: ['é', 'ab'], answer: 1}]}}\n");
  CHECK(task_metrics(task) == std::vector<std::string>{"acc", "acc_norm", "greedy_acc"});
}

TEST_CASE("MC2: normalised probability mass of the true answers on a 2-true/2-false toy", "[lm_eval]") {
  // log-likelihoods ln 0.4, ln 0.1 (true) and ln 0.3, ln 0.2 (false): mass 0.5 / 1.0 = 0.5; argmax (0) is true.
  const auto score = score_choices({std::log(0.4), std::log(0.1), std::log(0.3), std::log(0.2)}, {1, 1, 1, 1}, {}, {0, 1});
  CHECK(score.true_mass == Approx(0.5));
  CHECK(score.correct);
  // Unnormalised: ln 0.02, ln 0.01 true, ln 0.03, ln 0.04 false -> 0.03 / 0.10.
  const auto small = score_choices({std::log(0.02), std::log(0.01), std::log(0.03), std::log(0.04)}, {1, 1, 1, 1}, {}, {0, 1});
  CHECK(small.true_mass == Approx(0.3));
  CHECK_FALSE(small.correct);
  CHECK(task_metrics(builtin("truthfulqa_mc2")) == std::vector<std::string>{"mc2"});
}

TEST_CASE("GSM8K strict-match vs flexible-extract on five outputs", "[lm_eval]") {
  const auto& task = builtin("gsm8k");
  const auto filters = answer_filters(task);
  REQUIRE(filters.size() == 2);
  const AnswerNormalizer normalizer(task);
  const std::string target = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 1,800";
  struct Case {
    std::string output;
    std::optional<std::string> strict, flexible;
    bool strict_ok, flexible_ok;
  };
  const std::vector<Case> cases = {
      {"She makes 9 * 200 = 1800 dollars.\n#### 1800", "1800", "1800", true, true},
      {"So the answer is $1,800.", std::nullopt, "$1,800.", false, true},
      {"#### 1,800.\n\nQuestion: 2 + 2", "1,800.", "2", true, false},  // flexible takes the last number
      {"It is 1800 or maybe 17", std::nullopt, "17", false, false},
      {"no idea", std::nullopt, std::nullopt, false, false},
  };
  for (const auto& c : cases) {
    INFO(c.output);
    const auto strict = filters[0].apply(c.output);
    const auto flexible = filters[1].apply(c.output);
    CHECK(strict == c.strict);
    CHECK(flexible == c.flexible);
    CHECK((strict && normalizer.same(*strict, target)) == c.strict_ok);
    CHECK((flexible && normalizer.same(*flexible, target)) == c.flexible_ok);
  }
  CHECK(normalizer.normalize(target) == "1800");
  CHECK(task_metrics(task).front() == "exact_match_strict-match");
}

TEST_CASE("LAMBADA: perplexity is exp(-mean log-likelihood) over documents, acc is greedy", "[lm_eval]") {
  const std::vector<nlohmann::json> entries = {{{"scores", {{"nll", 2.0}, {"greedy_acc", 1.0}}}},
                                               {{"scores", {{"nll", 4.0}, {"greedy_acc", 0.0}}}}};
  const auto metrics = aggregate_scores({"perplexity", "greedy_acc"}, entries);
  CHECK(metrics["perplexity"]["value"].get<double>() == Approx(std::exp(3.0)));
  CHECK(metrics["greedy_acc"]["value"].get<double>() == Approx(0.5));
  CHECK(task_metrics(builtin("lambada_openai")) == std::vector<std::string>{"perplexity", "greedy_acc"});
}

TEST_CASE("MMLU category groups expand like benchmarks and are listed by mill tasks", "[lm_eval]") {
  std::size_t total = 0;
  for (const auto* group : {"mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other"}) {
    total += builtins().expand({group}).size();
  }
  CHECK(builtins().expand({"mmlu_stem"}).size() == 19);
  CHECK(total == 57);
  CHECK(builtin("mmlu_anatomy").groups == std::vector<std::string>{"mmlu_stem"});
  const auto run = test::run_mill({"tasks", "mmlu_stem,gsm8k,piqa", "--data_dir", fixtures().string()});
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("mmlu,mmlu_stem") && Contains("exact_match_strict-match") && Contains("21 task(s)"));
  // Documents are counted where the data is: the fixture piqa/valid.jsonl has 2.
  CHECK_THAT(run.out, Contains("piqa") && Contains("  2  acc,acc_norm"));
}

TEST_CASE("The demo model runs every new task end to end and collect shows them", "[lm_eval]") {
  TempDir out;
  const auto shared = test::shared_path("data");
  const std::string fixture_tasks = "hellaswag,arc_easy,arc_challenge,winogrande,sciq";
  auto run = test::run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", fixture_tasks, "--limit", "5",
                             "--data_dir", fixtures().string()});
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("winogrande\t0-shot\tdone\tacc="));
  std::vector<std::string> expected = {"hellaswag", "arc_easy", "arc_challenge", "winogrande", "sciq"};
  if (shared.empty()) {
    WARN("../shared/data is absent: only the fixture tasks ran");
  } else {
    run = test::run_mill({"--output_dir", out.path().string(), "eval", "mill-demo",
                          "piqa,boolq,openbookqa,truthfulqa_mc1,truthfulqa_mc2,lambada_openai,gsm8k,gsm8k_cot", "--limit",
                          "5", "--data_dir", shared.string()});
    INFO(run.err);
    CHECK(run.exit_code == 0);
    CHECK_THAT(run.out, Contains("gsm8k\t5-shot\tdone\texact_match_strict-match=") &&
                            Contains("lambada_openai\t0-shot\tdone\tperplexity=") &&
                            Contains("truthfulqa_mc2\t0-shot\tdone\tmc2="));
    for (const auto* name : {"piqa", "boolq", "openbookqa", "truthfulqa_mc1", "truthfulqa_mc2", "lambada_openai", "gsm8k", "gsm8k_cot"}) {
      expected.push_back(name);
    }
  }
  run = test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check"});
  CHECK(run.exit_code == 0);
  const auto csv = test::read_text(out / "aggregate.csv");
  for (const auto& name : expected) CHECK_THAT(csv, Contains("mill-demo," + name + ","));
  CHECK_THAT(csv, Contains(",ai2_arc,ai2_arc,"));
}
