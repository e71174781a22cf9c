// Scoring with hand-computed expectations: argmax over choices and ties, length normalisation, the greedy flag,
// MMLU-Pro answer extraction on realistic chain-of-thought outputs, bootstrap standard errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "mill/eval/engine.hpp"
#include "mill/eval/metrics.hpp"

using namespace mill;

TEST_CASE("Multiple choice: the highest log-likelihood wins") {
  const auto score = score_choices({-3.2, -1.1, -2.0, -5.0}, {2, 2, 2, 2}, {false, true, false, false}, 1);
  CHECK(score.predicted == 1);
  CHECK(score.correct);
  CHECK(score.greedy_correct);
  const auto wrong = score_choices({-3.2, -1.1, -2.0, -5.0}, {2, 2, 2, 2}, {false, true, false, false}, 2);
  CHECK(wrong.predicted == 1);
  CHECK_FALSE(wrong.correct);
  CHECK_FALSE(wrong.greedy_correct);  // the greedy flag belongs to the gold continuation, not the argmax
}

TEST_CASE("Multiple choice ties go to the lowest index, as numpy.argmax does") {
  CHECK(score_choices({-1.0, -1.0, -2.0}, {1, 1, 1}, {}, 0).correct);
  CHECK_FALSE(score_choices({-1.0, -1.0, -2.0}, {1, 1, 1}, {}, 1).correct);
  CHECK(score_choices({-2.0, -1.0, -1.0}, {1, 1, 1}, {}, 1).predicted == 1);
}

TEST_CASE("acc_norm divides by the continuation length before the argmax") {
  // Raw: -4 (len 2) beats -6 (len 6); per character: -2 vs -1, so the long option wins.
  const auto score = score_choices({-4.0, -6.0}, {2, 6}, {false, false}, 1);
  CHECK(score.predicted == 0);
  CHECK_FALSE(score.correct);
  CHECK(score.predicted_norm == 1);
  CHECK(score.correct_norm);
}

TEST_CASE("MMLU-Pro extraction: 'the answer is (X)' first, then 'Answer: X', then the last standalone letter") {
  AnswerExtractor extractor(mmlu_pro_answer_patterns());
  auto extract = [&](const std::string& text) { return extractor.extract(text); };

  const auto cot = extract(
      " To find the molar mass we add the atomic masses: C is 12.01, O is 16.00, so CO2 is 12.01 + 2(16.00) = 44.01 "
      "g/mol. Option D says 44 g/mol. The answer is (D).");
  REQUIRE(cot);
  CHECK(cot->answer == "D");
  CHECK(cot->pattern == 0);

  const auto no_parens = extract("Comparing options A and B, B is larger. So the answer is B because of scale.");
  REQUIRE(no_parens);
  CHECK(no_parens->answer == "B");

  // The first "answer is" wins even when the model changes its mind later, as in the reference.
  const auto first = extract("the answer is (A). Wait, recheck: the answer is (C).");
  REQUIRE(first);
  CHECK(first->answer == "A");

  const auto colon = extract("Let me reason.\nStep 1: options E and F are wrong.\nAnswer: G\n");
  REQUIRE(colon);
  CHECK(colon->answer == "G");
  CHECK(colon->pattern == 1);

  // Last resort: the last standalone capital A-J anywhere (across lines).
  const auto last = extract("Option C looks plausible,\nbut on reflection H fits the data best.");
  REQUIRE(last);
  CHECK(last->answer == "H");
  CHECK(last->pattern == 2);

  // (K) is outside A-J, so the last resort takes the pronoun "I": the reference behaves the same way.
  const auto pronoun = extract("I am not sure. the answer is (K)");
  REQUIRE(pronoun);
  CHECK(pronoun->answer == "I");
  CHECK(pronoun->pattern == 2);
  CHECK_FALSE(extract("not sure; maybe the second one?").has_value());
  CHECK_FALSE(extract("").has_value());
  CHECK_FALSE(extract("Cannot decide between both Options.").has_value());  // letters inside words do not count
}

TEST_CASE("A truncated generation that never states an answer is unparsed") {
  AnswerExtractor extractor(mmlu_pro_answer_patterns());
  CHECK_FALSE(extractor.extract("Let's think step by step. First, the reaction of sodium with water releases hydrogen gas "
                                "and forms sodium hydroxide; then we need to consider whether the")
                  .has_value());
}

TEST_CASE("Bootstrap SE of a mean matches the closed-form binomial SE on a large sample") {
  std::vector<double> values;
  for (int i = 0; i < 5000; ++i) values.push_back(i % 10 < 3 ? 1.0 : 0.0);  // p = 0.3 exactly
  const double p = mean(values);
  CHECK(p == Approx(0.3));
  const double closed_form = binomial_stderr(p, values.size());
  CHECK(closed_form == Approx(std::sqrt(0.3 * 0.7 / 4999.0)));
  const double bootstrap = bootstrap_stderr_of_mean(values);
  CHECK(bootstrap == Approx(closed_form).epsilon(0.08));  // 1000 resamples: the estimate's own error is ~2%
  CHECK(bootstrap_stderr_of_mean(values) == bootstrap);  // fixed seed: reproducible to the bit
  CHECK(bootstrap_stderr_of_mean(values, 1000, 99) != bootstrap);
  CHECK(std::isnan(bootstrap_stderr_of_mean({1.0})));
}

TEST_CASE("aggregate_scores: means, SEs and corpus perplexity from per-sample scores") {
  std::vector<nlohmann::json> entries = {
      {{"scores", {{"acc", 1.0}, {"nll", 2.0}, {"tokens", 1}, {"bytes", 4}}}},
      {{"scores", {{"acc", 0.0}, {"nll", 4.0}, {"tokens", 3}, {"bytes", 4}}}},
      {{"scores", {{"acc", 1.0}, {"nll", 0.0}, {"tokens", 0}, {"bytes", 0}}}},
  };
  const auto metrics = aggregate_scores({"acc", "perplexity", "bits_per_byte"}, entries);
  CHECK(metrics["acc"]["value"].get<double>() == Approx(2.0 / 3.0));
  CHECK(metrics["acc"]["n"] == 3);
  CHECK(metrics["acc"]["stderr"].get<double>() > 0);
  CHECK(metrics["perplexity"]["value"].get<double>() == Approx(std::exp(6.0 / 4.0)));
  CHECK(metrics["bits_per_byte"]["value"].get<double>() == Approx(6.0 / 8.0 / std::log(2.0)));
}
