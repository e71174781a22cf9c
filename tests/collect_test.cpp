// mill collect: rollup statistics, paired comparison, the missing/stale check, damaged files, exit codes.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fmt/format.h>
#include <fstream>
#include <set>
#include <sstream>

#include "mill/collect/collect.hpp"
#include "mill/collect/collect_output.hpp"
#include "mill/collect/compare.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/job.hpp"
#include "mill/collect/lm_eval_export.hpp"
#include "mill/model/model_list.hpp"
#include "mill/collect/report.hpp"
#include "mill/eval/results.hpp"
#include "mill/collect/rollup.hpp"
#include "mill/base/text.hpp"
#include "mill/base/text_table.hpp"
#include "mill/base/version.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {

struct MetricSpec {
  std::string name;
  double value;
  std::optional<double> stderr_value;
};

// Writes a valid result for `spec` × `task` × `n_shot` whose key is what mill computes now (revision comes from the
// spec's revision= arg, so it does not depend on the machine's Hugging Face cache).
std::filesystem::path write_test_result(const std::filesystem::path& out, const std::string& spec_text,
                                        const TaskRegistry& registry, const std::string& task, int n_shot,
                                        long long n_samples, const std::vector<MetricSpec>& metrics,
                                        bool stale = false, std::optional<int> limit = std::nullopt) {
  const auto spec = ModelSpec::parse(spec_text);
  Job job{spec, registry.find(task), n_shot, limit};
  REQUIRE(job.task);
  auto key = make_job_key(job, resolve_model_revision(spec));
  if (stale) {
    key.inputs["scoring_version"] = -1;  // as if an older scorer had computed it
    key.digest = content_hash(key.inputs.dump());
  }
  nlohmann::json document = {{"schema", kResultSchema}, {"key", key.digest},   {"key_inputs", key.inputs},
                             {"model", spec.to_string()}, {"task", task},      {"n_shot", n_shot},
                             {"n_samples", n_samples},    {"metrics", nlohmann::json::object()}};
  for (const auto& metric : metrics) {
    document["metrics"][metric.name] = {{"value", metric.value},
                                        {"stderr", metric.stderr_value ? nlohmann::json(*metric.stderr_value) : nlohmann::json()}};
  }
  const auto path = result_path(out, job);
  write_result(path, document);
  return path;
}

// A journal whose doc i scores scores[i] on `metric`, written with the result's key.
void write_test_journal(const std::filesystem::path& result, const std::string& metric, const std::vector<double>& scores) {
  const auto document = nlohmann::json::parse(test::read_text(result));
  std::string text;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    text += nlohmann::json({{"doc_id", i}, {"key", document["key"]}, {"scores", {{metric, scores[i]}}}}).dump() + "\n";
  }
  test::write_text(journal_beside(result), text);
}

std::vector<double> ones_then_zeros(std::size_t ones, std::size_t total) {
  std::vector<double> v(total, 0.0);
  for (std::size_t i = 0; i < ones && i < total; ++i) v[i] = 1.0;
  return v;
}

const AggregateRow* find_row(const std::vector<AggregateRow>& rows, const std::string& task, const std::string& metric,
                             const std::string& aggregation) {
  for (const auto& row : rows) {
    if (row.task == task && row.metric == metric && row.aggregation == aggregation) return &row;
  }
  return nullptr;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// The first line of `text` that starts with `start` and contains `part`.
std::string line_with(const std::string& text, const std::string& start, const std::string& part = "") {
  for (const auto& line : lines_of(text)) {
    if (line.rfind(start, 0) == 0 && line.find(part) != std::string::npos) return line;
  }
  return {};
}

// The display column where `needle` starts on `line` (npos when absent).
std::size_t column_of(const std::string& line, const std::string& needle) {
  const auto at = line.find(needle);
  return at == std::string::npos ? std::string::npos : display_width(line.substr(0, at));
}

// Runs mill with its stdout on a pseudo-terminal `columns` wide (and $COLUMNS unset), as a user at a terminal
// would; returns what it printed there.
std::string run_mill_on_terminal(const std::vector<std::string>& args, unsigned short columns) {
  struct winsize size {};
  size.ws_col = columns;
  size.ws_row = 50;
  int terminal = -1, device = -1;
  REQUIRE(::openpty(&terminal, &device, nullptr, nullptr, &size) == 0);
  std::vector<std::string> argv = {test::mill_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> pointers;
  for (auto& arg : argv) pointers.push_back(arg.data());
  pointers.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, STDIN_FILENO);
    ::dup2(device, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    ::close(terminal);
    ::unsetenv("COLUMNS");
    ::execv(pointers[0], pointers.data());
    ::_exit(127);
  }
  ::close(device);
  std::string out;
  char buffer[4096];
  while (true) {
    const auto got = ::read(terminal, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EIO once the child has closed the terminal
    out.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(terminal);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  return out;
}

}  // namespace

TEST_CASE("micro and macro rollups and their standard errors match hand computation", "[collect]") {
  // Subject A: 100 questions, 90% ± 3; subject B: 300 questions, 50% ± 2.
  const std::vector<StratumEstimate> subjects = {{0.9, 0.03, 100}, {0.5, 0.02, 300}};
  const auto micro = micro_average(subjects);
  const auto macro = macro_average(subjects);
  // micro = (0.9·100 + 0.5·300) / 400; SE = sqrt(0.25²·0.03² + 0.75²·0.02²)
  CHECK(micro.value == Approx(0.6));
  REQUIRE(micro.standard_error);
  CHECK(*micro.standard_error == Approx(std::sqrt(0.0625 * 0.0009 + 0.5625 * 0.0004)));
  CHECK(*micro.standard_error == Approx(0.0167705).epsilon(1e-5));
  CHECK(micro.n == 400);
  // macro = (0.9 + 0.5) / 2; SE = sqrt(0.03² + 0.02²) / 2
  CHECK(macro.value == Approx(0.7));
  REQUIRE(macro.standard_error);
  CHECK(*macro.standard_error == Approx(0.0180278).epsilon(1e-5));
  CHECK(macro.n_tasks == 2);

  // A subject without a standard error makes the rollup's unknown rather than silently too small.
  CHECK_FALSE(micro_average({{0.9, 0.03, 100}, {0.5, std::nullopt, 300}}).standard_error);
  CHECK(binomial_stderr(0.5, 101) == Approx(0.05));
}

TEST_CASE("the stratified bootstrap agrees with the closed form on large samples", "[collect]") {
  // Three subjects of different sizes and accuracies, as 0/1 scores.
  const std::vector<std::pair<std::size_t, double>> shape = {{2000, 0.3}, {5000, 0.6}, {1000, 0.85}};
  std::vector<std::vector<double>> scores;
  std::vector<StratumEstimate> closed;
  for (const auto& [n, p] : shape) {
    const auto ones = static_cast<std::size_t>(std::lround(p * static_cast<double>(n)));
    scores.push_back(ones_then_zeros(ones, n));
    // The bootstrap's plug-in variance is p(1-p)/n.
    closed.push_back({p, std::sqrt(p * (1 - p) / static_cast<double>(n)), static_cast<long long>(n)});
  }
  const auto boot = stratified_bootstrap(scores, 2000);
  const auto micro = micro_average(closed);
  const auto macro = macro_average(closed);
  CHECK(boot.micro_stderr == Approx(*micro.standard_error).epsilon(0.06));
  CHECK(boot.macro_stderr == Approx(*macro.standard_error).epsilon(0.06));
  // Pooling ignores the strata: the naive SE of the pooled mean is larger than the stratified one here.
  const double pooled = micro.value;
  CHECK(std::sqrt(pooled * (1 - pooled) / 8000.0) > *micro.standard_error);
  // Fixed seed: the same draws every time.
  CHECK(stratified_bootstrap(scores, 200).micro_replicates == stratified_bootstrap(scores, 200).micro_replicates);
}

TEST_CASE("McNemar's exact test matches the binomial tail by hand", "[collect]") {
  CHECK(mcnemar_test(0, 6).p_value == Approx(2.0 / 64));
  CHECK(mcnemar_test(1, 5).p_value == Approx(2.0 * 7 / 64));
  CHECK(mcnemar_test(3, 3).p_value == Approx(1.0));
  CHECK(mcnemar_test(0, 0).p_value == Approx(1.0));
  // Large counts stay finite: 520 vs 480 is not significant, 600 vs 400 is.
  CHECK(mcnemar_test(520, 480).p_value > 0.05);
  CHECK(mcnemar_test(600, 400).p_value < 1e-6);
}

TEST_CASE("paired comparison finds a known difference and calls a null one not significant", "[collect]") {
  // Task 1: B right on docs 0..99; A right on the same plus docs 100..139 → A − B = +0.2, 40 discordant, all for A.
  PairedScores better{"t1", ones_then_zeros(140, 200), ones_then_zeros(100, 200)};
  const auto d1 = compare_paired(better);
  CHECK(d1.difference == Approx(0.2));
  REQUIRE(d1.mcnemar);
  CHECK(d1.mcnemar->a_only == 40);
  CHECK(d1.mcnemar->b_only == 0);
  CHECK(d1.significant);
  CHECK(d1.ci_low > 0);
  CHECK(d1.stderr_bootstrap == Approx(std::sqrt(0.2 * 0.8 / 200)).epsilon(0.1));

  // Task 2: the same accuracy (50%) reached on different documents: 3 discordant each way → not significant.
  auto a2 = ones_then_zeros(100, 200);
  auto b2 = ones_then_zeros(100, 200);
  for (int i : {0, 1, 2}) a2[static_cast<std::size_t>(i)] = 0, a2[static_cast<std::size_t>(150 + i)] = 1;
  PairedScores same{"t2", a2, b2};
  const auto d2 = compare_paired(same);
  CHECK(d2.difference == Approx(0.0));
  CHECK(d2.mcnemar->a_only == 3);
  CHECK(d2.mcnemar->b_only == 3);
  CHECK_FALSE(d2.significant);
  CHECK(significance_text(d2).rfind("not significant", 0) == 0);

  // The benchmark: micro pools the 400 pairs (+40 of 400 = +0.1), macro averages the two tasks (+0.2 + 0) / 2.
  const auto rollup = compare_benchmark({better, same});
  REQUIRE(rollup.size() == 2);
  CHECK(rollup[0].aggregation == "micro_sample_weighted");
  CHECK(rollup[0].difference == Approx(0.1));
  CHECK(rollup[0].mcnemar->a_only == 43);
  CHECK(rollup[0].mcnemar->b_only == 3);
  CHECK(rollup[0].significant);
  CHECK(rollup[1].aggregation == "macro_subject_mean");
  CHECK(rollup[1].difference == Approx(0.1));
  CHECK(rollup[1].significant);

  // Continuous scores use the bootstrap: a constant shift of +0.01 on noisy scores is found, zero shift is not.
  std::vector<double> base(500), shifted(500);
  SeededRng rng(7);
  for (std::size_t i = 0; i < base.size(); ++i) {
    base[i] = static_cast<double>(rng.below(1000)) / 1000.0;
    shifted[i] = base[i] + 0.01;
  }
  const auto continuous = compare_paired({"t3", shifted, base});
  CHECK_FALSE(continuous.mcnemar);
  CHECK(continuous.difference == Approx(0.01));
  CHECK(continuous.significant);
  CHECK_FALSE(compare_paired({"t4", base, base}).significant);
}

TEST_CASE("collect aggregates result files into task and rollup rows", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/model[revision=r1]";
  write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  write_test_result(out.path(), model, registry, "mmlu_astronomy", 5, 300, {{"acc", 0.5, 0.02}});
  const auto scan = scan_results(out.path(), registry, 2);
  REQUIRE(scan.results.size() == 2);
  CHECK(scan.skipped.empty());
  const auto rows = aggregate_results(scan.results, {}, registry);
  REQUIRE(rows.size() == 6);  // two tasks; micro and macro for mmlu and for their category group mmlu_stem
  const auto* stem = find_row(rows, "mmlu_stem", "acc", kAggregationMicro);
  REQUIRE(stem);
  CHECK(stem->value == Approx((0.9 * 100 + 0.5 * 300) / 400));
  CHECK(stem->n_tasks_expected == 19);
  const auto* anatomy = find_row(rows, "mmlu_anatomy", "acc", kAggregationTask);
  REQUIRE(anatomy);
  CHECK(anatomy->value == Approx(0.9));
  CHECK(anatomy->n_samples == 100);
  CHECK(anatomy->key.size() == 32);
  CHECK(anatomy->benchmark == "mmlu");
  const auto* micro = find_row(rows, "mmlu", "acc", kAggregationMicro);
  const auto* macro = find_row(rows, "mmlu", "acc", kAggregationMacro);
  REQUIRE(micro);
  REQUIRE(macro);
  CHECK(micro->value == Approx(0.6));
  CHECK(*micro->standard_error == Approx(0.0167705).epsilon(1e-5));
  CHECK(macro->value == Approx(0.7));
  CHECK(*macro->standard_error == Approx(0.0180278).epsilon(1e-5));
  CHECK(micro->n_tasks == 2);
  CHECK(micro->n_tasks_expected == 57);  // partial: 2 of MMLU's 57 subjects
  CHECK(micro->n_samples == 400);

  const auto csv = aggregate_csv(rows);
  CHECK_THAT(csv, Contains("model,task,benchmark,n_shot,limit,metric,aggregation,value,stderr"));
  CHECK_THAT(csv, !Contains("\"org/model[revision=r1]\""));  // no comma: not quoted
  CHECK_THAT(csv, Contains(",mmlu,mmlu,5,,acc,micro_sample_weighted,0.6,"));
  CHECK_THAT(csv, Contains(",mmlu,mmlu,5,,acc,macro_subject_mean,0.7,"));

  // A spec with a comma is quoted in the CSV.
  std::vector<AggregateRow> odd = {rows.front()};
  odd.front().model = "org/m[a=1,b=\"x\"]";
  CHECK_THAT(aggregate_csv(odd), Contains("\"org/m[a=1,b=\"\"x\"\"]\","));

  // --metric narrows the rows; filters by task and n_shot work.
  CollectFilter only_anatomy;
  only_anatomy.tasks = {"mmlu_anatomy"};
  CHECK(aggregate_results(scan.results, only_anatomy, registry).size() == 5);  // the task, mmlu and mmlu_stem rollups
  CollectFilter other_shots;
  other_shots.n_shots = {0};
  CHECK(aggregate_results(scan.results, other_shots, registry).empty());
}

TEST_CASE("generative rates are reported as metrics with their own rollups", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  write_test_result(out.path(), "org/gen[revision=r]", registry, "mmlu_pro_law", 0, 200,
                    {{"exact_match", 0.4, 0.035}, {"unparsed_rate", 0.05, 0.015}, {"hit_token_limit_rate", 0.02, 0.01}});
  const auto scan = scan_results(out.path(), registry);
  const auto rows = aggregate_results(scan.results, {}, registry);
  CHECK(find_row(rows, "mmlu_pro_law", "unparsed_rate", kAggregationTask));
  CHECK(find_row(rows, "mmlu_pro", "hit_token_limit_rate", kAggregationMicro));
  const auto* primary = find_row(rows, "mmlu_pro_law", "exact_match", kAggregationTask);
  REQUIRE(primary);
  CHECK(primary->primary);
  CHECK(primary->output_type == "generative");
  ReportInput input{out.path(), &rows, &scan, nullptr, nullptr, "now"};
  const auto md = render_report_markdown(input);
  CHECK_THAT(md, Contains("unparsed answers and answers cut off"));
  CHECK_THAT(md, Contains("| unparsed_rate | 5.0 |"));
}

TEST_CASE("damaged result files are skipped with a warning naming them and never counted", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/model[revision=r1]";
  const auto good = write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  const auto truncated = write_test_result(out.path(), model, registry, "mmlu_astronomy", 5, 300, {{"acc", 0.1, 0.02}});
  const auto text = test::read_text(truncated);
  test::write_text(truncated, text.substr(0, text.size() / 2));
  const auto empty = good.parent_path().parent_path() / "mmlu_virology" / "5shot.json";
  test::write_text(empty, "");
  const auto wrong_schema = good.parent_path().parent_path() / "mmlu_nutrition" / "5shot.json";
  test::write_text(wrong_schema, R"({"schema": "something/else", "metrics": {"acc": {"value": 1}}})");
  const auto wrong_types = good.parent_path().parent_path() / "mmlu_marketing" / "5shot.json";
  auto bad = nlohmann::json::parse(test::read_text(good));
  bad["metrics"]["acc"]["stderr"] = "high";  // wrong type where a number belongs: the stderr is not trusted
  bad["key_inputs"]["limit"] = "ten";
  bad["task"] = "mmlu_marketing";
  test::write_text(wrong_types, bad.dump());
  // A leftover temporary file from a crashed writer and a journal are not results at all.
  test::write_text(good.string() + ".tmp.123.abcd", "{");
  test::write_text(journal_beside(good), "{\"doc_id\": 0}\n");

  const auto scan = scan_results(out.path(), registry);
  CHECK(scan.results.size() == 2);  // good and wrong_types (which still has a numeric value)
  REQUIRE(scan.skipped.size() == 3);
  std::set<std::string> skipped;
  for (const auto& s : scan.skipped) skipped.insert(s.path.string());
  CHECK(skipped.count(truncated.string()));
  CHECK(skipped.count(empty.string()));
  CHECK(skipped.count(wrong_schema.string()));

  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check"});
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.err, Contains(truncated.string()));
  CHECK_THAT(run.err, Contains("skipping"));
  CHECK_THAT(run.err, Contains(empty.string()));
  const auto csv = test::read_text(out / "aggregate.csv");
  CHECK_THAT(csv, Contains("mmlu_anatomy"));
  CHECK_THAT(csv, !Contains("mmlu_astronomy"));
  CHECK_THAT(csv, !Contains("mmlu_virology"));
  // The rollup counts only the two valid subjects.
  CHECK_THAT(csv, Contains(",mmlu,mmlu,5,,acc,micro_sample_weighted,0.9,"));

  // With --check (the default) the damaged ones are reported as corrupt and the exit status says so.
  const auto checked = test::run_mill({"--output_dir", out.path().string(), "collect"});
  CHECK(checked.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(checked.out, Contains("corrupt (3)"));
}

TEST_CASE("collect --check lists missing and stale separately and prints the exact resubmit command", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/model[revision=r1]";
  write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  write_test_result(out.path(), model, registry, "mmlu_astronomy", 5, 100, {{"acc", 0.5, 0.05}}, /*stale=*/true);

  auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--models", model, "--tasks",
                             "mmlu_anatomy,mmlu_astronomy,mmlu_virology", "--n_shots", "5"});
  CHECK(run.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(run.out, Contains("3 expected, 1 done, 1 missing, 1 stale, 0 corrupt"));
  CHECK_THAT(run.out, Contains("missing (1):\n  org/model[revision=r1]  mmlu_virology  5-shot\n"));
  CHECK_THAT(run.out, Contains("mmlu_astronomy  5-shot  (computed with a different scoring_version)"));
  const auto expected_command = fmt::format("mill --output_dir {} schedule 'org/model[revision=r1]' "
                                            "mmlu_astronomy,mmlu_virology --n_shots 5",
                                            shell_word(out.path().string()));
  CHECK_THAT(run.out, Contains(expected_command));
  CHECK_THAT(run.err, Contains("1 missing, 1 stale"));

  // The stale result is still aggregated (a copied tree without the model cache would otherwise lose every
  // number) but marked, with the reason.
  const auto scan = scan_results(out.path(), registry);
  const auto stale = find_stale_results(scan, registry);
  REQUIRE(stale.size() == 1);
  CHECK_THAT(stale.begin()->first, Contains("mmlu_astronomy"));
  CHECK_THAT(stale.begin()->second, Contains("scoring_version"));
  const auto rows = aggregate_results(scan.results, {}, registry, &stale);
  CHECK(find_row(rows, "mmlu_astronomy", "acc", kAggregationTask)->stale == 1);
  CHECK(find_row(rows, "mmlu_anatomy", "acc", kAggregationTask)->stale == 0);
  CHECK(find_row(rows, "mmlu", "acc", kAggregationMicro)->stale == 1);
  CHECK_THAT(test::read_text(out / "report.md"), Contains("(stale)"));

  // Everything present and current: exit 0.
  run = test::run_mill({"--output_dir", out.path().string(), "collect", "--models", model, "--tasks", "mmlu_anatomy",
                        "--n_shots", "5"});
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("1 expected, 1 done, 0 missing, 0 stale"));

  // --no-check never fails for gaps.
  run = test::run_mill({"--output_dir", out.path().string(), "--log_level", "off", "collect", "--no_check"});
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.out, !Contains("check:"));
}

TEST_CASE("without --models/--tasks the expected set is what the sweeps planned plus what exists", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/model[revision=r1]";
  write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  write_test_result(out.path(), model, registry, "mmlu_astronomy", 0, 100, {{"acc", 0.5, 0.05}}, /*stale=*/true);
  // The sweep planned anatomy and virology at 5 shots with an execution-only argument (kept when resubmitting).
  const nlohmann::json manifest = {
      {"schema", "mill.manifest/1"},
      {"elements",
       {{{"model", "org/model[revision=r1,batch_size=8]"},
         {"jobs", {{{"task", "mmlu_anatomy"}, {"n_shot", 5}, {"limit", nullptr}},
                   {{"task", "mmlu_virology"}, {"n_shot", 5}, {"limit", nullptr}}}}}}}};
  test::write_text(out / "sweeps" / "20240101-000000" / "manifest.json", manifest.dump());

  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect"});
  CHECK(run.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(run.out, Contains("3 expected, 1 done, 1 missing, 1 stale"));
  CHECK_THAT(run.out, Contains("org/model[revision=r1,batch_size=8]  mmlu_virology  5-shot"));
  CHECK_THAT(run.out, Contains("schedule 'org/model[revision=r1,batch_size=8]' mmlu_virology --n_shots 5"));
  CHECK_THAT(run.out, Contains("schedule 'org/model[revision=r1]' mmlu_astronomy --n_shots 0"));

  // Narrowed by --n_shots: only the 0-shot stale one is left.
  const auto narrowed = test::run_mill({"--output_dir", out.path().string(), "collect", "--n-shots", "0"});
  CHECK(narrowed.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(narrowed.out, Contains("1 expected, 0 done, 0 missing, 1 stale"));
}

TEST_CASE("resubmit commands are exact products, name whole benchmarks, and survive the shell", "[collect]") {
  const auto registry = TaskRegistry::load();
  std::vector<CheckEntry> entries;
  // Model A misses all of MMLU at 0 and 5 shots; model B (a hostile name) misses one task at 5 shots.
  for (const auto& task : registry.tasks()) {
    if (task.benchmark != "mmlu") continue;
    for (int n : {0, 5}) entries.push_back({"org/a", task.name, n, std::nullopt, ResultState::missing, "", {}});
  }
  const std::string hostile = "org/b[stop=\"x,y\",note=it's $(touch pwned)]";
  entries.push_back({hostile, "mmlu_pro_law", 5, std::nullopt, ResultState::stale, "", {}});
  std::vector<const CheckEntry*> pending;
  for (const auto& e : entries) pending.push_back(&e);
  ScheduleSettings settings;
  settings.output_dir = "/data/my results";
  const auto commands = resubmit_commands(pending, settings, registry);
  REQUIRE(commands.size() == 2);
  CHECK(commands[0].line == "mill --output_dir '/data/my results' schedule org/a mmlu --n_shots 0,5");
  // Run the command line through a real shell with `mill` replaced by printf: every word arrives intact.
  test::TempDir cwd;
  const auto echoed =
      test::run_program({"/bin/sh", "-c", "mill() { printf '%s\\n' \"$@\"; }; " + commands[1].line}, {}, cwd.path());
  CHECK(echoed.exit_code == 0);
  CHECK(echoed.out == "--output_dir\n/data/my results\nschedule\n" + hostile + "\nmmlu_pro_law\n--n_shots\n5\n");
  CHECK_FALSE(std::filesystem::exists(cwd / "pwned"));
  CHECK(split_model_list("a[x=1,y=2], b ,c[s=\"p,q\"]") == std::vector<std::string>{"a[x=1,y=2]", "b", "c[s=\"p,q\"]"});
}

TEST_CASE("collect --compare reads the journals and says when a difference is not significant", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string a = "org/a[revision=r]", b = "org/b[revision=r]";
  // anatomy: A +40 documents (significant); astronomy: same accuracy on different documents (not significant).
  write_test_journal(write_test_result(out.path(), a, registry, "mmlu_anatomy", 5, 200, {{"acc", 0.7, 0.03}}), "acc",
                     ones_then_zeros(140, 200));
  write_test_journal(write_test_result(out.path(), b, registry, "mmlu_anatomy", 5, 200, {{"acc", 0.5, 0.03}}), "acc",
                     ones_then_zeros(100, 200));
  auto a2 = ones_then_zeros(100, 200);
  for (std::size_t i : {0, 1, 2}) a2[i] = 0, a2[150 + i] = 1;
  write_test_journal(write_test_result(out.path(), a, registry, "mmlu_astronomy", 5, 200, {{"acc", 0.5, 0.03}}), "acc",
                     a2);
  write_test_journal(write_test_result(out.path(), b, registry, "mmlu_astronomy", 5, 200, {{"acc", 0.5, 0.03}}), "acc",
                     ones_then_zeros(100, 200));

  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check", "--compare", a, b});
  REQUIRE(run.exit_code == 0);
  const auto line_of = [&](const std::string& start, const std::string& aggregation) {
    std::istringstream lines(run.out);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(start, 0) == 0 && line.find(aggregation) != std::string::npos) return line;
    }
    return std::string();
  };
  CHECK_THAT(line_of("mmlu_anatomy", "task"), Contains("+20.0") && Contains("significant (p=") &&
                                                  !Contains("not significant") && Contains("McNemar"));
  CHECK_THAT(line_of("mmlu_astronomy", "task"), Contains("+0.0") && Contains("not significant"));
  CHECK_THAT(line_of("mmlu ", "micro_sample_weighted"), Contains("+10.0") && Contains("400"));
  CHECK_THAT(line_of("mmlu ", "macro_subject_mean"), Contains("+10.0"));
  CHECK_THAT(test::read_text(out / "report.md"), Contains("## Comparison") && Contains("not significant"));

  // Unknown model: a clear usage error.
  const auto unknown = test::run_mill({"--output_dir", out.path().string(), "collect", "--compare", a, "org/c"});
  CHECK(unknown.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(unknown.err, Contains("org/c"));
}

TEST_CASE("collect writes a report and a heatmap, and refuses bad input with one line", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  write_test_result(out.path(), "org/a[revision=r]", registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  write_test_result(out.path(), "org/<b>&c[revision=r]", registry, "mmlu_anatomy", 5, 100, {{"acc", 0.4, 0.05}});
  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check"});
  REQUIRE(run.exit_code == 0);
  const auto md = test::read_text(out / "report.md");
  CHECK_THAT(md, Contains("micro (sample-weighted)") && Contains("macro (subject mean)") && Contains("heatmap.svg"));
  CHECK_THAT(md, Contains("90.0 ± 3.0"));
  const auto svg = test::read_text(out / "heatmap.svg");
  CHECK(svg.rfind(std::string(kHeatmapMark) + "\n<svg ", 0) == 0);
  CHECK(md.rfind(std::string(kReportMark) + "\n# mill results\n", 0) == 0);
  CHECK_THAT(svg, Contains("mmlu_anatomy") && Contains("org/&lt;b&gt;&amp;c") && Contains("</svg>"));
  CHECK_THAT(svg, !Contains("<b>"));

  const auto bad_metric = test::run_mill({"--output_dir", out.path().string(), "collect", "--metric", "bleu"});
  CHECK(bad_metric.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(bad_metric.err, Contains("bleu") && Contains("acc"));

  test::TempDir empty;
  const auto nothing = test::run_mill({"--output_dir", (empty / "none").string(), "collect"});
  CHECK(nothing.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(nothing.err, Contains("no results under"));

  const auto bad_task = test::run_mill({"--output_dir", out.path().string(), "collect", "--tasks", "mmlu_anatomyy"});
  CHECK(bad_task.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(bad_task.err, Contains("mmlu_anatomy"));
}

TEST_CASE("collect reads what mill eval writes: values, check and a paired comparison of two demo models",
          "[collect]") {
  test::TempDir out;
  for (const char* model : {"mill-demo[seed=3]", "mill-demo[seed=4]"}) {
    const auto eval = test::run_mill({"--output_dir", out.path().string(), "eval", model, "demo", "--n_shots", "0"});
    REQUIRE(eval.exit_code == 0);
  }
  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--models",
                                   "mill-demo[seed=3],mill-demo[seed=4]", "--tasks", "demo", "--n_shots", "0",
                                   "--compare", "mill-demo[seed=3]", "mill-demo[seed=4]"});
  CHECK(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("2 expected, 2 done, 0 missing, 0 stale, 0 corrupt"));
  const auto registry = TaskRegistry::load();
  const auto scan = scan_results(out.path(), registry);
  REQUIRE(scan.results.size() == 2);
  CHECK(find_stale_results(scan, registry).empty());
  const auto rows = aggregate_results(scan.results, {}, registry);
  for (const auto& result : scan.results) {
    const auto document = nlohmann::json::parse(test::read_text(result.path));
    const auto* row = find_row(rows, "demo", "acc", kAggregationTask);
    REQUIRE(row);
    bool matched = false;
    for (const auto& r : rows) {
      if (r.model == result.model && r.metric == "acc") {
        matched = true;
        CHECK(r.value == Approx(document["metrics"]["acc"]["value"].get<double>()));
        CHECK(r.n_samples == document["n_samples"].get<long long>());
        CHECK(r.stderr_method == "bootstrap");
      }
    }
    CHECK(matched);
  }
  // Every document pairs up: the comparison's pair count is the task's sample count.
  const auto n = nlohmann::json::parse(test::read_text(scan.results.front().path))["n_samples"].get<long long>();
  CHECK_THAT(run.out, Contains(fmt::format(" {} ", n)) && Contains("significant (p="));
}

TEST_CASE("a model list item reads back as the same spec, commas, quotes and brackets included", "[collect]") {
  const std::vector<std::string> specs = {
      "org/plain",
      "/ckpt/step,100",                                  // a comma in a local checkpoint's path
      "/ckpt/back\\slash,\"quoted\"[dtype=float16]",     // backslash and quotes in the name, arguments after it
      "mill-demo[stop=\"x,y]\",note=\"a \\\"b\\\" [c]\"]",  // commas, brackets and quotes inside quoted values
      "org/b[stop=\"x,y\",note=it's $(touch pwned)]"};
  std::vector<std::string> items;
  for (const auto& spec : specs) {
    CHECK(split_model_list(model_list_item(spec)) == std::vector<std::string>{spec});
    items.push_back(model_list_item(spec));
  }
  CHECK(split_model_list(join(items, ",")) == specs);
  CHECK(model_list_item("/ckpt/step,100") == "/ckpt/step\\,100");
  // Lists typed as before keep their meaning.
  CHECK(split_model_list("a[x=1,y=2], b ,c[s=\"p,q\"]") == std::vector<std::string>{"a[x=1,y=2]", "b", "c[s=\"p,q\"]"});
}

namespace {

// A sweep manifest as `mill schedule` writes it, with the settings it was planned with.
void write_sweep_manifest(const std::filesystem::path& out, const std::string& id, const nlohmann::json& elements,
                          const nlohmann::json& schedule_settings) {
  const nlohmann::json manifest = {{"schema", "mill.manifest/1"},
                                   {"settings", {{"extra_task_paths", schedule_settings["extra_task_paths"]},
                                                 {"data_dir", schedule_settings["data_dir"]},
                                                 {"schedule", schedule_settings}}},
                                   {"elements", elements}};
  test::write_text(out / "sweeps" / id / "manifest.json", manifest.dump(2));
}

// Runs a printed resubmit line through /bin/sh with `mill` standing for the built binary, plus `extra` words.
test::RunResult run_printed_line(const std::string& line, const std::string& extra) {
  return test::run_program({"/bin/sh", "-c", std::string("mill() { '") + test::mill_binary() + "' \"$@\"; }; " + line + " " + extra});
}

}  // namespace

TEST_CASE("the resubmit line carries every setting of the sweep, and run verbatim plans exactly the missing jobs",
          "[collect]") {
  test::TempDir root;
  const auto out = root / "results 'q' $(touch canary)";
  const auto data = root / "data dir";
  const auto venv = root / "venv $x";
  const auto tasks = root / "tasks";
  test::write_text(venv / "bin" / "activate", "");
  // A task read from a file under the data dir (found only through --data_dir), in an extra task path.
  for (const char* split : {"test", "train"}) {
    test::write_text(data / "tiny" / (std::string(split) + ".jsonl"),
                     "{\"question\": \"1+1?\", \"choices\": [\"2\", \"3\"], \"answer\": 0}\n"
                     "{\"question\": \"2+2?\", \"choices\": [\"5\", \"4\"], \"answer\": 1}\n");
  }
  auto demo = test::read_text(std::filesystem::path(test::source_dir()) / "data" / "tasks" / "demo.yaml");
  demo = demo.substr(0, demo.find("dataset:")) + "dataset:\n  format: jsonl\n  path: tiny/{split}.jsonl\n";
  const auto at = demo.find("\ntask: demo\n");
  REQUIRE(at != std::string::npos);
  demo.replace(at, 12, "\ntask: tiny\n");
  test::write_text(tasks / "tiny.yaml", demo);

  // Two models whose specs need the list escaping: a checkpoint path with a comma and quotes, and a quoted value
  // with a comma and brackets (the checkpoints are not read: the sweep was planned with --skip_model_check).
  const std::string comma_path = (root / "ckpt,step \"100\"").string() + "[dtype=float16]";
  const std::string bracket_value = "org/m[revision=\"r,1]\"]";
  const nlohmann::json settings = {{"output_dir", out.string()},
                                   {"cache_dir", (root / "cache").string()},
                                   {"data_dir", data.string()},
                                   {"venv_path", venv.string()},
                                   {"extra_task_paths", {tasks.string()}},
                                   {"cluster", "local"},
                                   {"local", false},
                                   {"minutes_per_eval", 2.5},
                                   {"evals_per_element", 3},
                                   {"max_requeues", 1},
                                   {"skip_model_check", true}};
  nlohmann::json elements = nlohmann::json::array();
  for (const auto& model : {comma_path, bracket_value}) {
    elements.push_back({{"model", model},
                        {"jobs", {{{"task", "tiny"}, {"n_shot", 0}, {"limit", 1}}, {{"task", "demo"}, {"n_shot", 0}, {"limit", 1}}}}});
  }
  write_sweep_manifest(out, "20260101T000000Z-aaaaaa", elements, settings);
  // An older sweep of the same jobs with other settings: the newest sweep's are the ones repeated.
  auto older = settings;
  older["minutes_per_eval"] = 99;
  write_sweep_manifest(out, "20250101T000000Z-bbbbbb", elements, older);

  const auto check = test::run_mill({"--output_dir", out.string(), "collect", "--extra_task_paths", tasks.string()});
  INFO(check.out << check.err);
  REQUIRE(check.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(check.out, Contains("4 expected, 0 done, 4 missing"));
  const auto begin = check.out.find("resubmit exactly these with:\n");
  REQUIRE(begin != std::string::npos);
  std::vector<std::string> lines;
  std::istringstream printed(check.out.substr(begin));
  std::string line;
  std::getline(printed, line);
  while (std::getline(printed, line) && line.rfind("  mill ", 0) == 0) lines.push_back(line.substr(2));
  REQUIRE(lines.size() == 1);  // both models, both tasks: one exact product

  std::set<std::string> planned;
  for (const auto& command : lines) {
    CHECK_THAT(command, Contains("--data_dir") && Contains("--cache_dir") && Contains("--venv_path") &&
                            Contains("--extra_task_paths") && Contains("--minutes_per_eval 2.5") &&
                            Contains("--evals_per_element 3") && Contains("--cluster local") && Contains("--limit 1") &&
                            Contains("--max_requeues 1") && Contains("--skip_model_check"));
    // The line as printed, run by a shell: it plans exactly the missing jobs with the sweep's settings.
    const auto run = run_printed_line(command, "--dry_run --json");
    INFO(command << "\n" << run.err);
    REQUIRE(run.exit_code == 0);
    const auto plan = nlohmann::json::parse(run.out);
    CHECK(plan["settings"] == settings);
    CHECK(plan["profile"]["name"] == "local");
    CHECK(plan["counts"]["pending"] == 4);
    CHECK_THAT(plan["script"].get<std::string>(), Contains("venv $x/bin/activate"));
    CHECK_THAT(plan["time_limit"]["explanation"].get<std::string>(), Contains("--minutes_per_eval 2.5"));  // kept
    for (const auto& job : plan["jobs"]) planned.insert(job["model"].get<std::string>() + " " + job["task"].get<std::string>());
  }
  CHECK(planned == std::set<std::string>{comma_path + " tiny", comma_path + " demo", bracket_value + " tiny",
                                         bracket_value + " demo"});

  // --json gives the same commands as argv lists: run without a shell, they plan the same jobs.
  const auto json = test::run_mill({"--output_dir", out.string(), "collect", "--extra_task_paths", tasks.string(), "--json"});
  REQUIRE(json.exit_code == static_cast<int>(ExitCode::missing_results));
  const auto report = nlohmann::json::parse(json.out);
  REQUIRE(report["check"]["resubmit"].size() == 1);
  CHECK(report["check"]["missing"].size() == 4);
  std::set<std::string> planned_from_json;
  for (const auto& command : report["check"]["resubmit"]) {
    CHECK(std::find(lines.begin(), lines.end(), command["line"].get<std::string>()) != lines.end());
    auto argv = command["argv"].get<std::vector<std::string>>();
    argv.front() = test::mill_binary();
    argv.insert(argv.end(), {"--dry_run", "--json"});
    const auto run = test::run_program(argv);
    REQUIRE(run.exit_code == 0);
    const auto plan = nlohmann::json::parse(run.out);
    for (const auto& job : plan["jobs"]) {
      planned_from_json.insert(job["model"].get<std::string>() + " " + job["task"].get<std::string>());
    }
  }
  CHECK(planned_from_json == planned);
  CHECK_FALSE(std::filesystem::exists(root / "canary"));
}

TEST_CASE("long model lists go to a file that schedule reads with --models_file", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir root;
  const auto out = root / "out";
  // 3000 specs of about 30 bytes: one comma-separated word would pass the 32 KiB line budget.
  std::vector<CheckEntry> entries;
  for (int i = 0; i < 3000; ++i) {
    entries.push_back({fmt::format("mill-demo[seed={},batch_size=2]", i), "demo", 0, std::nullopt,
                       ResultState::missing, "", {}, nullptr});
  }
  std::vector<const CheckEntry*> pending;
  for (const auto& e : entries) pending.push_back(&e);
  ScheduleSettings settings;
  settings.output_dir = out;
  const auto commands = resubmit_commands(pending, settings, registry, out / "resubmit");
  REQUIRE(commands.size() == 1);
  const auto& argv = commands[0].argv;
  const auto file = std::find(argv.begin(), argv.end(), "--models_file");
  REQUIRE(file != argv.end());
  CHECK(commands[0].line.size() < 1000);
  const auto listed = test::read_text(*(file + 1));
  CHECK(std::count(listed.begin(), listed.end(), '\n') == 3000);

  // The line, run as printed, plans all 3000 models; a wrong count of words is one clear line.
  const auto run = run_printed_line(commands[0].line, "--dry_run --json --cluster local");
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(nlohmann::json::parse(run.out)["counts"]["pending"] == 3000);
  const auto extra = test::run_mill({"--output_dir", out.string(), "schedule", "--models_file", *(file + 1), "mill-demo",
                                     "demo", "--dry_run", "--cluster", "local"});
  CHECK(extra.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(extra.err, Contains("only TASKS") && Contains("--models_file"));
  const auto tasks_file = root / "tasks.txt";
  test::write_text(tasks_file, "# the demo task\n\ndemo\n");
  const auto both = test::run_mill({"--output_dir", out.string(), "schedule", "--models_file", *(file + 1), "--tasks_file",
                                    tasks_file.string(), "--dry_run", "--json", "--cluster", "local"});
  REQUIRE(both.exit_code == 0);
  CHECK(nlohmann::json::parse(both.out)["counts"]["pending"] == 3000);
  const auto none = test::run_mill({"--output_dir", out.string(), "schedule", "--models_file", (root / "nope").string(),
                                    "demo", "--dry_run", "--cluster", "local"});
  CHECK(none.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(none.err, Contains("--models_file: cannot read"));
}

TEST_CASE("collect lists a result of a newer scorer as stale with that reason and prints no line to rerun it",
          "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/model[revision=r1]";
  const auto path = write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  auto document = nlohmann::json::parse(test::read_text(path));
  document["key_inputs"]["scoring_version"] = kScoringVersion + 1;
  document["key"] = content_hash(document["key_inputs"].dump());
  test::write_text(path, document.dump());
  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect"});
  INFO(run.out << run.err);
  CHECK(run.exit_code == static_cast<int>(ExitCode::missing_results));
  CHECK_THAT(run.out, Contains("1 stale") && Contains("computed by a newer mill") && !Contains("resubmit exactly"));
}

TEST_CASE("a filtered collect prints the selection and leaves aggregate.csv, report.md and heatmap.svg as they "
          "were, and --out writes the selection",
          "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string a = "org/a[revision=r]", b = "org/b[revision=r]";
  for (const auto& model : {a, b}) {
    write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
    write_test_result(out.path(), model, registry, "mmlu_formal_logic", 5, 100, {{"acc", 0.4, 0.05}});
    write_test_result(out.path(), model, registry, "gsm8k", 5, 200,
                      {{"exact_match_strict-match", 0.25, 0.01}, {"exact_match_flexible-extract", 0.3, 0.01}});
  }
  const auto dir = out.path().string();
  REQUIRE(test::run_mill({"--output_dir", dir, "collect"}).exit_code == 0);
  // As if that collect had run long ago: a rerun that changes nothing keeps the report, its time included.
  auto report = test::read_text(out / "report.md");
  const auto generated = report_generated_at(report);
  REQUIRE(generated.size() == 20);
  report.replace(report.find(generated), generated.size(), "2001-02-03T04:05:06Z");
  test::write_text(out / "report.md", report);
  CHECK(report_generated_at(report) == "2001-02-03T04:05:06Z");
  const auto files = [&] {
    return std::vector<std::string>{test::read_text(out / "aggregate.csv"), test::read_text(out / "report.md"),
                                    test::read_text(out / "heatmap.svg")};
  };
  const auto everything = files();
  const auto all_rows = lines_of(everything[0]).size() - 1;
  const std::vector<std::vector<std::string>> selections = {
      {"--tasks", "mmlu_anatomy"}, {"--metric", "exact_match_strict-match"}, {"--models", a}, {"--n_shots", "5", "--tasks", "gsm8k"}};
  for (const auto& selection : selections) {
    std::vector<std::string> args = {"--output_dir", dir, "collect"};
    args.insert(args.end(), selection.begin(), selection.end());
    const auto run = test::run_mill(args);
    INFO(selection.front() << "\n" << run.out << run.err);
    REQUIRE(run.exit_code == 0);
    CHECK(files() == everything);  // byte for byte, the report's time included
    CHECK_THAT(run.out, Contains(fmt::format(": {} rows in {}", all_rows, (out / "aggregate.csv").string())));
    CHECK_THAT(line_with(run.out, "selected by "), Contains(selection.front()));
  }
  // The selection's own files, where asked.
  const auto chosen = out / "gsm8k only";
  const auto selected = test::run_mill({"--output_dir", dir, "collect", "--tasks", "gsm8k", "--out", chosen.string()});
  REQUIRE(selected.exit_code == 0);
  CHECK(files() == everything);
  const auto selection_csv = lines_of(test::read_text(chosen / "aggregate.csv"));
  REQUIRE(selection_csv.size() == 5);  // header, 2 models × 2 metrics
  for (std::size_t i = 1; i < selection_csv.size(); ++i) CHECK_THAT(selection_csv[i], Contains(",gsm8k,,5,"));
  CHECK_THAT(test::read_text(chosen / "report.md"), Contains("gsm8k") && !Contains("mmlu_anatomy"));
  CHECK_THAT(test::read_text(chosen / "heatmap.svg"), Contains("gsm8k") && !Contains("mmlu_anatomy"));
  CHECK_THAT(selected.out, Contains((chosen / "aggregate.csv").string()));
  // --out may not name the output directory itself.
  const auto same = test::run_mill({"--output_dir", dir, "collect", "--tasks", "gsm8k", "--out", dir + "/."});
  CHECK(same.exit_code == static_cast<int>(ExitCode::usage));
  CHECK(files() == everything);

  // A result that arrives later is in the output directory's files after the next collect, filtered or not.
  write_test_result(out.path(), a, registry, "mmlu_astronomy", 5, 300, {{"acc", 0.5, 0.02}});
  REQUIRE(test::run_mill({"--output_dir", dir, "collect", "--tasks", "gsm8k"}).exit_code == 0);
  CHECK_THAT(test::read_text(out / "aggregate.csv"), Contains(",mmlu_astronomy,mmlu,5,"));
}

TEST_CASE("collect never overwrites an aggregate.csv, report.md or heatmap.svg it did not write", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  write_test_result(out.path(), "org/a[revision=r]", registry, "mmlu_anatomy", 5, 100, {{"acc", 0.9, 0.03}});
  const auto dir = out.path().string();
  const std::string theirs = "name,score\nsomething,1\n";
  test::write_text(out / "aggregate.csv", theirs);
  const auto refused = test::run_mill({"--output_dir", dir, "collect"});
  CHECK(refused.exit_code == static_cast<int>(ExitCode::usage));
  CHECK(lines_of(refused.err).size() == 1);
  CHECK_THAT(refused.err, Contains((out / "aggregate.csv").string()) && Contains("not overwriting") && Contains("--out"));
  CHECK(test::read_text(out / "aggregate.csv") == theirs);
  CHECK_FALSE(std::filesystem::exists(out / "report.md"));  // checked before anything is written
  CHECK_FALSE(std::filesystem::exists(out / "heatmap.svg"));

  // The remedy works, and still leaves their file alone.
  const auto elsewhere = test::run_mill({"--output_dir", dir, "collect", "--out", (out / "mill").string()});
  CHECK(elsewhere.exit_code == 0);
  CHECK(test::read_text(out / "aggregate.csv") == theirs);
  CHECK(test::read_text(out / "mill" / "aggregate.csv").rfind(std::string(kAggregateCsvHeader) + "\n", 0) == 0);

  // Likewise a report or a heatmap of someone else's, and a link.
  std::filesystem::remove(out / "aggregate.csv");
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"report.md", "# Our results\n"}, {"heatmap.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>\n"}}) {
    test::write_text(out / name, text);
    const auto run = test::run_mill({"--output_dir", dir, "collect"});
    CHECK(run.exit_code == static_cast<int>(ExitCode::usage));
    CHECK_THAT(run.err, Contains((out / name).string()));
    CHECK(test::read_text(out / name) == text);
    CHECK_FALSE(std::filesystem::exists(out / "aggregate.csv"));
    std::filesystem::remove(out / name);
  }
  test::write_text(out / "target.csv", theirs);
  std::filesystem::create_symlink(out / "target.csv", out / "aggregate.csv");
  const auto link = test::run_mill({"--output_dir", dir, "collect"});
  CHECK(link.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(link.err, Contains("symbolic link"));
  CHECK(std::filesystem::is_symlink(out / "aggregate.csv"));
  CHECK(test::read_text(out / "target.csv") == theirs);
  std::filesystem::remove(out / "aggregate.csv");

  // Files an earlier mill wrote (no mark yet, an older CSV header) are mill's and are replaced.
  test::write_text(out / "aggregate.csv",
                   "model,task,benchmark,n_shot,limit,metric,aggregation,value,stderr,stderr_method,n_samples,n_tasks,"
                   "n_tasks_expected,output_type,primary,key\n");
  test::write_text(out / "report.md", "# mill results\n\nCollected by mill 0.1 from `x` at 2024-01-01T00:00:00Z.\n");
  test::write_text(out / "heatmap.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\">\n<text x=\"12\" y=\"22\">mill "
                                        "results: primary metric per task (%)</text>\n</svg>\n");
  REQUIRE(test::run_mill({"--output_dir", dir, "collect"}).exit_code == 0);
  CHECK(test::read_text(out / "aggregate.csv").rfind(std::string(kAggregateCsvHeader) + "\n", 0) == 0);
  CHECK(test::read_text(out / "report.md").rfind(kReportMark, 0) == 0);
  CHECK(test::read_text(out / "heatmap.svg").rfind(kHeatmapMark, 0) == 0);
}

TEST_CASE("scores of tasks outside any benchmark are printed: gsm8k and a task of one's own", "[collect]") {
  test::TempDir out;
  const auto tasks = out / "tasks";
  auto demo = test::read_text(std::filesystem::path(test::source_dir()) / "data" / "tasks" / "demo.yaml");
  const auto at = demo.find("\ntask: demo\n");
  REQUIRE(at != std::string::npos);
  demo.replace(at, 12, "\ntask: my_task\n");
  test::write_text(tasks / "my_task.yaml", demo);
  const auto registry = TaskRegistry::load({tasks});
  write_test_result(out.path(), "org/a[revision=r]", registry, "gsm8k", 5, 1319, {{"exact_match_strict-match", 0.42, 0.01}});
  write_test_result(out.path(), "org/a[revision=r]", registry, "my_task", 0, 50, {{"acc", 0.66, 0.07}});
  const auto run = test::run_mill(
      {"--output_dir", out.path().string(), "collect", "--no-check", "--extra_task_paths", tasks.string()});
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(line_with(run.out, "org/a[revision=r]", " gsm8k "),
             Contains("5-shot") && Contains("exact_match_strict-match") && Contains("42.0 ± 1.0") && Contains("1319"));
  CHECK_THAT(line_with(run.out, "org/a[revision=r]", " my_task "), Contains("0-shot") && Contains("66.0 ± 7.0"));
}

TEST_CASE("MMLU's four category groups are rows of their own, after mmlu, with sample-weighted and subject-mean "
          "values",
          "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/m[revision=r]";
  // Two STEM, two humanities, one social-science and two other subjects (lm-eval's subject → category map).
  const std::vector<std::tuple<std::string, long long, double, double>> subjects = {
      {"mmlu_anatomy", 100, 0.9, 0.03},      {"mmlu_astronomy", 300, 0.5, 0.02},   {"mmlu_formal_logic", 120, 0.4, 0.045},
      {"mmlu_philosophy", 80, 0.7, 0.05},    {"mmlu_econometrics", 110, 0.3, 0.044}, {"mmlu_nutrition", 200, 0.6, 0.035},
      {"mmlu_marketing", 50, 0.8, 0.057}};
  for (const auto& [task, n, value, se] : subjects) write_test_result(out.path(), model, registry, task, 5, n, {{"acc", value, se}});
  const auto scan = scan_results(out.path(), registry, 1);
  const auto rows = aggregate_results(scan.results, {}, registry);
  struct Expected {
    std::string group;
    double micro, macro, micro_se;
    int subjects, defined;
  };
  const std::vector<Expected> expected = {
      {"mmlu_stem", (90 + 150) / 400.0, 0.7, std::sqrt(0.0625 * 0.0009 + 0.5625 * 0.0004), 2, 19},
      {"mmlu_humanities", (48 + 56) / 200.0, 0.55, std::sqrt(0.36 * 0.002025 + 0.16 * 0.0025), 2, 13},
      {"mmlu_social_sciences", 0.3, 0.3, 0.044, 1, 12},
      {"mmlu_other", (120 + 40) / 250.0, 0.7, std::sqrt(0.64 * 0.001225 + 0.04 * 0.003249), 2, 13},
      {"mmlu", 537 / 960.0, 4.2 / 7, 0, 7, 57},
  };
  for (const auto& group : expected) {
    INFO(group.group);
    const auto* micro = find_row(rows, group.group, "acc", kAggregationMicro);
    const auto* macro = find_row(rows, group.group, "acc", kAggregationMacro);
    REQUIRE(micro);
    REQUIRE(macro);
    CHECK(micro->benchmark == "mmlu");
    CHECK(micro->value == Approx(group.micro));
    CHECK(macro->value == Approx(group.macro));
    if (group.micro_se > 0) CHECK(*micro->standard_error == Approx(group.micro_se));
    CHECK(micro->n_tasks == group.subjects);
    CHECK(micro->n_tasks_expected == group.defined);
  }
  CHECK_THAT(aggregate_csv(rows), Contains(",mmlu_humanities,mmlu,5,,acc,micro_sample_weighted,0.52,"));

  // Printed after mmlu's own line, in a fixed order, with both averages.
  const auto run = test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check"});
  REQUIRE(run.exit_code == 0);
  const auto lines = lines_of(run.out);
  const auto index_of = [&](const std::string& group) {
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].find("  " + group + " ") != std::string::npos) return i;
    }
    return lines.size();
  };
  CHECK(index_of("mmlu") < index_of("mmlu_humanities"));
  CHECK(index_of("mmlu_humanities") < index_of("mmlu_other"));
  CHECK(index_of("mmlu_other") < index_of("mmlu_social_sciences"));
  CHECK(index_of("mmlu_social_sciences") < index_of("mmlu_stem"));
  REQUIRE(index_of("mmlu_stem") < lines.size());
  CHECK_THAT(lines[index_of("mmlu_humanities")], Contains("52.0 ± 3.4") && Contains("55.0 ± 3.4") && Contains("2/13"));
  CHECK_THAT(test::read_text(out / "report.md"), Contains("| mmlu_social_sciences | acc | 30.0 ± 4.4 | 30.0 ± 4.4 | 1 of 12"));
}

namespace {

// Whether `actual` has every field `sample` has, with the same JSON type (recursively; the first element of an
// array stands for all). A float in the sample accepts any number; null accepts anything; under `versions` (str,
// float or None in lm-eval) null is accepted for a number, and a standard error may be lm-eval's "N/A".
void check_same_shape(const nlohmann::json& sample, const nlohmann::json& actual, const std::string& where) {
  INFO(where);
  if (sample.is_null()) return;
  if (where.find("_stderr,") != std::string::npos && actual == "N/A") return;
  if (actual.is_null() && (where.rfind("/versions/", 0) == 0 || where.find("/metadata/version") != std::string::npos)) {
    return;
  }
  if (sample.is_number_float()) {
    CHECK(actual.is_number());
    return;
  }
  CHECK(std::string(actual.type_name()) == sample.type_name());
  if (sample.is_object() && actual.is_object()) {
    for (const auto& [key, value] : sample.items()) {
      INFO(where + "/" + key);
      CHECK(actual.contains(key));
      if (actual.contains(key)) check_same_shape(value, actual[key], where + "/" + key);
    }
  }
  if (sample.is_array() && actual.is_array() && !sample.empty() && !actual.empty()) {
    check_same_shape(sample.front(), actual.front(), where + "/0");
  }
}

}  // namespace

TEST_CASE("collect --export lm_eval writes one results file per model and n-shot in lm-evaluation-harness's shape",
          "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string model = "org/a[revision=r]";
  const auto anatomy = write_test_result(out.path(), model, registry, "mmlu_anatomy", 5, 100, {{"acc", 0.6, 0.04}});
  write_test_result(out.path(), model, registry, "mmlu_astronomy", 5, 152, {{"acc", 0.5, 0.03}});
  write_test_result(out.path(), model, registry, "gsm8k", 5, 200,
                    {{"exact_match_strict-match", 0.25, 0.012}, {"exact_match_flexible-extract", 0.3, std::nullopt}});
  write_test_result(out.path(), model, registry, "mmlu_anatomy", 0, 100, {{"acc", 0.55, 0.05}});
  // What the engine records beside the scores: the split's size, where and when it ran.
  auto document = nlohmann::json::parse(test::read_text(anatomy));
  document["data"] = {{"eval", {{"split", "test"}, {"documents", 135}}}};
  document["provenance"] = {{"started_at", "2024-02-29T12:00:00Z"}, {"dtype", "float16"}, {"device", "cuda:0"},
                            {"batch_size", 8}, {"wall_seconds", 12.5}, {"bootstrap", {{"resamples", 1000}, {"seed", 1234}}}};
  write_result(anatomy, document);

  const auto exports = out / "lm_eval";
  const auto run = test::run_mill(
      {"--output_dir", out.path().string(), "collect", "--no-check", "--export", "lm_eval", exports.string()});
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.out, Contains("exported 2 lm-eval results file(s)"));
  const auto model_dir = exports / path_component(ModelSpec::parse(model).identity());
  REQUIRE(std::filesystem::exists(model_dir / "results_0shot.json"));
  const auto exported = nlohmann::json::parse(test::read_text(model_dir / "results_5shot.json"));
  const auto sample = nlohmann::json::parse(
      test::read_text(std::filesystem::path(test::source_dir()) / "tests" / "data" / "lm_eval" / "results_sample.json"));
  check_same_shape(sample, exported, "");

  const auto& results = exported["results"];
  CHECK(results["mmlu_anatomy"]["alias"] == "mmlu_anatomy");
  CHECK(results["mmlu_anatomy"]["acc,none"].get<double>() == Approx(0.6));
  CHECK(results["mmlu_anatomy"]["acc_stderr,none"].get<double>() == Approx(0.04));
  CHECK(results["gsm8k"]["exact_match,strict-match"].get<double>() == Approx(0.25));
  CHECK(results["gsm8k"]["exact_match_stderr,flexible-extract"] == "N/A");  // no standard error: lm-eval's spelling
  CHECK(exported["groups"]["mmlu_stem"]["acc,none"].get<double>() == Approx((60 + 76) / 252.0));  // sample-weighted
  CHECK(results["mmlu"]["acc,none"] == exported["groups"]["mmlu"]["acc,none"]);
  CHECK(exported["group_subtasks"]["mmlu"] == nlohmann::json::array({"mmlu_stem"}));
  CHECK(exported["group_subtasks"]["mmlu_stem"] == nlohmann::json::array({"mmlu_anatomy", "mmlu_astronomy"}));
  CHECK_FALSE(exported["group_subtasks"].contains("gsm8k"));
  CHECK(exported["n-samples"]["mmlu_anatomy"] == nlohmann::json({{"original", 135}, {"effective", 100}}));
  CHECK(exported["n-samples"]["gsm8k"] == nlohmann::json({{"original", 200}, {"effective", 200}}));
  CHECK(exported["n-shot"]["mmlu_stem"] == 5);
  CHECK(exported["versions"]["gsm8k"].get<double>() == Approx(3.0));
  CHECK(exported["higher_is_better"]["gsm8k"]["exact_match"] == true);
  CHECK(exported["configs"]["gsm8k"]["output_type"] == "generate_until");
  CHECK(exported["configs"]["gsm8k"]["num_fewshot"] == 5);
  CHECK(exported["configs"]["gsm8k"]["metric_list"].size() == 1);
  CHECK(exported["configs"]["mmlu_anatomy"]["output_type"] == "multiple_choice");
  CHECK(exported["config"]["model_args"] == "pretrained=org/a,revision=r");
  CHECK(exported["config"]["model_dtype"] == "float16");
  CHECK(exported["config"]["limit"].is_null());
  CHECK(exported["date"].get<double>() == Approx(1709208000.0));
  CHECK(exported["model_name"] == ModelSpec::parse(model).identity());
  CHECK(exported["exported_by"].get<std::string>().rfind("mill ", 0) == 0);
  CHECK(lm_eval_metric_and_filter("exact_match_flexible-extract", registry.find("gsm8k")) ==
        std::pair<std::string, std::string>{"exact_match", "flexible-extract"});

  // Rerunning replaces mill's own export; a file of someone else's where an export goes is left alone.
  REQUIRE(test::run_mill({"--output_dir", out.path().string(), "collect", "--no-check", "--export", "lm_eval",
                          exports.string()})
              .exit_code == 0);
  test::write_text(model_dir / "results_0shot.json", "{\"results\": {}}\n");
  const auto refused = test::run_mill(
      {"--output_dir", out.path().string(), "collect", "--no-check", "--export", "lm_eval", exports.string()});
  CHECK(refused.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(refused.err, Contains("results_0shot.json"));
  CHECK(test::read_text(model_dir / "results_0shot.json") == "{\"results\": {}}\n");
  const auto unknown = test::run_mill({"--output_dir", out.path().string(), "collect", "--export", "csv", "x"});
  CHECK(unknown.exit_code == static_cast<int>(ExitCode::usage));
  CHECK_THAT(unknown.err, Contains("lm_eval"));
}

TEST_CASE("collect --compare keeps its columns aligned when a limit shows, and fits a narrow terminal", "[collect]") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  const std::string a = "org/a[revision=r]", b = "org/b[revision=r]";
  write_test_journal(write_test_result(out.path(), a, registry, "mmlu_anatomy", 5, 10, {{"acc", 0.8, 0.1}}, false, 10),
                     "acc", ones_then_zeros(8, 10));
  write_test_journal(write_test_result(out.path(), b, registry, "mmlu_anatomy", 5, 10, {{"acc", 0.5, 0.1}}, false, 10),
                     "acc", ones_then_zeros(5, 10));
  write_test_journal(write_test_result(out.path(), a, registry, "mmlu_high_school_government_and_politics", 5, 200,
                                       {{"acc", 0.7, 0.03}}),
                     "acc", ones_then_zeros(140, 200));
  write_test_journal(write_test_result(out.path(), b, registry, "mmlu_high_school_government_and_politics", 5, 200,
                                       {{"acc", 0.5, 0.03}}),
                     "acc", ones_then_zeros(100, 200));
  const std::vector<std::string> args = {"--output_dir", out.path().string(), "collect", "--no-check", "--compare", a, b};
  const auto check_aligned = [](const std::string& output, const std::string& verdict_header) {
    const auto lines = lines_of(output);
    const auto header = std::find_if(lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("task ", 0) == 0; });
    REQUIRE(header != lines.end());
    const auto verdict = column_of(*header, verdict_header);
    const auto interval = column_of(*header, "95% interval");
    int rows = 0;
    for (auto line = header + 1; line != lines.end() && !line->empty(); ++line) {
      INFO(*line);
      const auto not_significant = column_of(*line, "not significant");
      const auto cell = not_significant != std::string::npos ? not_significant
                        : line->find("n.s.") != std::string::npos ? column_of(*line, "n.s.")
                        : line->find("sig.") != std::string::npos ? column_of(*line, "sig.")
                                                                  : column_of(*line, "significant");
      CHECK(cell == verdict);
      CHECK(column_of(*line, "[") == interval);
      ++rows;
    }
    CHECK(rows == 6);  // two tasks, and mmlu's micro and macro at limit 10 and without a limit
  };
  const auto piped = test::run_mill(args);
  REQUIRE(piped.exit_code == 0);
  CHECK_THAT(piped.out, Contains("5-shot/limit 10") && Contains("mmlu_high_school_government_and_politics"));
  check_aligned(piped.out, "verdict");

  // On a 72-column terminal every table line fits: names are cut in the middle, columns get their short forms.
  const auto narrow = run_mill_on_terminal(args, 72);
  check_aligned(narrow, "verdict");
  bool in_table = false;
  for (const auto& line : lines_of(narrow)) {
    if (line.rfind("task ", 0) == 0 || line.rfind("model ", 0) == 0) in_table = true;
    if (line.empty()) in_table = false;
    INFO(line);
    if (in_table) CHECK(display_width(line) <= 72);
  }
  CHECK_THAT(narrow, Contains("…") && Contains("5/L10"));
}
