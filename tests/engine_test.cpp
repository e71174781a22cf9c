// The engine end to end with the built-in mill-demo model: results, journals, generative and perplexity tasks,
// capability errors, the real binary (`mill eval`), interrupt-and-resume with SIGKILL, SIGUSR1, and worker mode.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "mill/model/demo_backend.hpp"
#include "mill/eval/engine.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/results.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/worker.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::read_text;
using mill::test::run_mill;
using mill::test::TempDir;
using mill::test::write_text;

namespace {

std::vector<nlohmann::json> journal_lines(const std::filesystem::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (!parsed.is_discarded()) lines.push_back(std::move(parsed));  // a line being written is skipped
  }
  return lines;
}

// A fixture directory of extra tasks: a generative multiple-choice task and a perplexity task, inline data.
void write_extra_tasks(const std::filesystem::path& dir) {
  write_text(dir / "gen.yaml", R"(task: fixture_gen
output_type: generative
eval_split: test
prompt:
  template: "Q: {question}\n{options}A:"
  options_field: choices
  target_delimiter: ""
answer_field: answer
generation: {stop: ["\n\n"], max_new_tokens: 24}
answer_extraction:
  patterns: ['answer is \(?([A-D])\)?', '(?s)\b[A-D]\b(?!.*\b[A-D]\b)']
dataset:
  format: inline
  documents:
    test:
      - {question: "one", choices: ["a", "b"], answer: 0}
      - {question: "two", choices: ["a", "b"], answer: 1}
      - {question: "three", choices: ["a", "b", "c"], answer: 2}
)");
  write_text(dir / "ppl.yaml", R"(task: fixture_ppl
output_type: perplexity
eval_split: test
text_field: text
dataset:
  format: inline
  documents:
    test:
      - {text: "The mill wheel turns."}
      - {text: "Flour for the town."}
)");
}

class GenerationOnlyBackend : public ModelBackend {
 public:
  BackendCapabilities capabilities() const override { return {false, false, true}; }
  nlohmann::json provenance() const override { return nlohmann::json::object(); }
  std::vector<LoglikelihoodResult> loglikelihood(const std::vector<LoglikelihoodRequest>&) override { throw std::logic_error("no"); }
  std::vector<RollingResult> loglikelihood_rolling(const std::vector<RollingRequest>&) override { throw std::logic_error("no"); }
  std::vector<GenerationResult> generate(const std::vector<GenerationRequest>& r) override {
    return std::vector<GenerationResult>(r.size());
  }
};

}  // namespace

TEST_CASE("mill-demo is a deterministic LM: greedy flags agree with generation, rolling = empty-context LL") {
  DemoBackend model(ModelSpec::parse("mill-demo[seed=3]"));
  const auto generated = model.generate({{"Question: x\nAnswer:", {}, 12}});
  REQUIRE(generated.size() == 1);
  CHECK(generated[0].hit_token_limit);
  CHECK(generated[0].n_tokens == 12);
  const auto text = generated[0].text;
  const auto greedy = model.loglikelihood({{"Question: x\nAnswer:", text}, {"Question: x\nAnswer:", text + "#"}});
  CHECK(greedy[0].greedy);  // what greedy decoding produced is, by definition, greedy
  CHECK(greedy[0].n_tokens == static_cast<int>(text.size()));
  const auto rolling = model.loglikelihood_rolling({{"abc"}});
  const auto pair = model.loglikelihood({{"", "abc"}});
  CHECK(rolling[0].logprob == Approx(pair[0].logprob));
  CHECK(rolling[0].logprob < 0);
  // A stop sequence ends generation and is not returned.
  if (text.size() > 3) {
    const auto stop = text.substr(2, 2);
    const auto stopped = model.generate({{"Question: x\nAnswer:", {stop}, 12}});
    CHECK(stopped[0].text == text.substr(0, text.find(stop)));
    CHECK_FALSE(stopped[0].hit_token_limit);
  }
  // Same seed, same numbers; other seed, other numbers.
  DemoBackend same(ModelSpec::parse("mill-demo[seed=3]"));
  DemoBackend other(ModelSpec::parse("mill-demo[seed=4]"));
  CHECK(same.loglikelihood({{"a", "b"}})[0].logprob == model.loglikelihood({{"a", "b"}})[0].logprob);
  CHECK(other.loglikelihood({{"a", "b"}})[0].logprob != model.loglikelihood({{"a", "b"}})[0].logprob);
  CHECK_THROWS_WITH(DemoBackend(ModelSpec::parse("mill-demo[temperature=1]")), Catch::Contains("temperature"));
}

TEST_CASE("run_job on the demo task writes a valid result whose numbers come from the journal") {
  TempDir out;
  const auto registry = TaskRegistry::load();
  const auto spec = ModelSpec::parse("mill-demo");
  Job job{spec, registry.find("demo"), 2, std::nullopt};
  const auto key = make_job_key(job, resolve_model_revision(spec));
  auto backend = make_backend(spec);
  EvalSettings settings;
  settings.output_dir = out.path();
  std::vector<std::size_t> progress;
  settings.on_progress = [&](const EvalProgress& p) { progress.push_back(p.done_samples); };
  const auto outcome = run_job(*backend, job, key, settings);
  REQUIRE(outcome.state == JobState::completed);
  CHECK(result_document_problem(outcome.result).empty());
  CHECK(check_result(outcome.result_path, key).state == ResultState::done);
  CHECK(outcome.result["n_samples"] == 52);
  CHECK(outcome.result["primary_metric"] == "acc");
  CHECK(outcome.result["provenance"]["device"] == "cpu");
  CHECK(outcome.result["provenance"]["batch_size"] == 16);
  CHECK(outcome.result["provenance"]["tokens"]["total"].get<long long>() > 0);
  CHECK(progress.front() == 0);
  CHECK(progress.back() == 52);

  const auto lines = journal_lines(journal_path(out.path(), job));
  REQUIRE(lines.size() == 52);
  double correct = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    CHECK(lines[i]["doc_id"] == static_cast<long long>(i));
    CHECK(lines[i]["key"] == key.digest);
    correct += lines[i]["scores"]["acc"].get<double>();
    // The prediction is the argmax of the journaled log-likelihoods.
    const auto& logprobs = lines[i]["response"]["logprobs"];
    int best = 0;
    for (int k = 1; k < static_cast<int>(logprobs.size()); ++k) {
      if (logprobs[k].get<double>() > logprobs[best].get<double>()) best = k;
    }
    CHECK(lines[i]["prediction"] == best);
    CHECK(lines[i]["scores"]["acc"] == (best == lines[i]["target"].get<int>() ? 1.0 : 0.0));
  }
  CHECK(outcome.result["metrics"]["acc"]["value"].get<double>() == Approx(correct / 52));
  CHECK(outcome.result["metrics"].contains("acc_norm"));
  CHECK(lines[0]["request"]["context"].get<std::string>().rfind("Answer the following questions.\n\nQuestion: What is 1 + 1?\nAnswer: 2\n\n", 0) == 0);
}

TEST_CASE("Generative and perplexity tasks run on mill-demo with their own metrics") {
  TempDir out;
  TempDir tasks;
  write_extra_tasks(tasks.path());
  const auto registry = TaskRegistry::load({tasks.path()});
  const auto spec = ModelSpec::parse("mill-demo");
  auto backend = make_backend(spec);
  EvalSettings settings;
  settings.output_dir = out.path();
  settings.docs_per_batch = 2;

  Job gen{spec, registry.find("fixture_gen"), 0, std::nullopt};
  const auto result = run_job(*backend, gen, make_job_key(gen, "local"), settings).result;
  CHECK(result["output_type"] == "generative");
  const auto lines = journal_lines(journal_path(out.path(), gen));
  REQUIRE(lines.size() == 3);
  double unparsed = 0;
  double limit = 0;
  for (const auto& line : lines) {
    unparsed += line["scores"]["unparsed_rate"].get<double>();
    limit += line["scores"]["hit_token_limit_rate"].get<double>();
    CHECK(line["response"]["text"].is_string());
    CHECK((line["prediction"].is_null() == (line["scores"]["unparsed_rate"] == 1.0)));
  }
  CHECK(result["metrics"]["unparsed_rate"]["value"].get<double>() == Approx(unparsed / 3));
  CHECK(result["metrics"]["hit_token_limit_rate"]["value"].get<double>() == Approx(limit / 3));
  CHECK(result["counts"]["unparsed"] == static_cast<int>(unparsed));

  Job ppl{spec, registry.find("fixture_ppl"), 0, std::nullopt};
  const auto perplexity = run_job(*backend, ppl, make_job_key(ppl, "local"), settings).result;
  DemoBackend model(spec);
  const auto a = model.loglikelihood_rolling({{"The mill wheel turns."}, {"Flour for the town."}});
  const double expected = std::exp(-(a[0].logprob + a[1].logprob) / (a[0].n_tokens + a[1].n_tokens));
  CHECK(perplexity["metrics"]["perplexity"]["value"].get<double>() == Approx(expected));
}

TEST_CASE("Task definitions: a misspelt field or a bad regex is named with the task and its file") {
  TempDir tasks;
  write_text(tasks / "typo.yaml", "task: typo\noutput_type: logprobs\npromt: {template: \"{q}\"}\n"
                                   "dataset: {format: inline, documents: {test: [{q: x, choices: [a], answer: 0}]}}\n");
  write_text(tasks / "regex.yaml", "task: badregex\noutput_type: generative\nanswer_extraction: {patterns: ['(unclosed']}\n"
                                   "dataset: {format: inline, documents: {test: [{q: x, choices: [a], answer: 0}]}}\n");
  const auto registry = TaskRegistry::load({tasks.path()});
  CHECK_THROWS_WITH(check_task_definition(*registry.find("typo")),
                    Catch::Contains("task typo") && Catch::Contains("typo.yaml") && Catch::Contains("`promt`") &&
                        Catch::Contains("did you mean prompt"));
  CHECK_THROWS_WITH(check_task_definition(*registry.find("badregex")), Catch::Contains("(unclosed"));
  const auto builtin = TaskRegistry::load();
  for (const auto& task : builtin.tasks()) CHECK_NOTHROW(check_task_definition(task));

  TempDir out;
  const auto run = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "typo,demo", "--limit", "3",
                             "--extra_task_paths", tasks.path().string()});
  CHECK(run.exit_code == 4);
  CHECK_THAT(run.err, Catch::Contains("did you mean prompt"));
  CHECK_THAT(run.out, Catch::Contains("demo\t0-shot\tdone"));
}

TEST_CASE("A backend that cannot serve the task's request kind fails before any work") {
  TempDir out;
  const auto registry = TaskRegistry::load();
  GenerationOnlyBackend backend;
  Job job{ModelSpec::parse("api[model=x]"), registry.find("demo"), 0, std::nullopt};
  EvalSettings settings;
  settings.output_dir = out.path();
  CHECK_THROWS_WITH(run_job(backend, job, make_job_key(job, "x"), settings),
                    Catch::Contains("cannot run task demo") && Catch::Contains("log-likelihood") &&
                        Catch::Contains("supports only generation"));
  CHECK_FALSE(std::filesystem::exists(journal_path(out.path(), job)));
}

TEST_CASE("mill eval mill-demo demo through the real binary") {
  TempDir out;
  const auto run = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "demo", "--n_shots", "0,1"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  // One result line per job on stdout.
  CHECK(std::count(run.out.begin(), run.out.end(), '\n') == 2);
  CHECK_THAT(run.out, Catch::Contains("demo\t0-shot\tdone\tacc="));
  CHECK_THAT(run.err, Catch::Contains("52/52 samples"));
  const auto result = nlohmann::json::parse(read_text(out / "results/mill-demo/demo/1shot.json"));
  CHECK(result_document_problem(result).empty());
  CHECK(result["n_shot"] == 1);
  // Rerunning finds the valid result and does not recompute it.
  const auto again = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "demo", "--n_shots", "1"});
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Catch::Contains("done (already)"));

  const auto unknown = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "dmeo"});
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("did you mean demo"));
  const auto no_data = run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "mmlu_anatomy", "--limit", "2"},
                                {{"MILL_DATA_DIR", (out.path() / "nowhere").string()}});
  CHECK(no_data.exit_code == 4);
  CHECK_THAT(no_data.err, Catch::Contains("nowhere/mmlu/test/anatomy_test.csv"));
}

TEST_CASE("Interrupt and resume: SIGKILL a running mill eval, rerun, identical numbers, no duplicates") {
  TempDir killed;
  TempDir clean;
  const std::string model = "mill-demo[delay_ms=60]";
  const auto model_dir = "results/" + path_component(ModelSpec::parse(model).identity());
  const auto journal = killed / (model_dir + "/demo/0shot.journal.jsonl");

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    const std::string out_dir = killed.path().string();
    ::execl(test::mill_binary(), test::mill_binary(), "--output_dir", out_dir.c_str(), "eval", model.c_str(), "demo", "--docs_per_batch",
            "2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill it once the journal holds some samples but not all.
  std::size_t seen = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (std::filesystem::exists(journal)) seen = journal_lines(journal).size();
    if (seen >= 10) break;
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(seen >= 10);
  const auto before = journal_lines(journal).size();
  REQUIRE(before < 52);
  CHECK_FALSE(std::filesystem::exists(killed / (model_dir + "/demo/0shot.json")));

  const auto resumed = run_mill({"--output_dir", killed.path().string(), "--log_level", "info", "eval", model, "demo"});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("resuming"));
  const auto lines = journal_lines(journal);
  std::set<long long> ids;
  for (const auto& line : lines) ids.insert(line["doc_id"].get<long long>());
  CHECK(lines.size() == 52);
  CHECK(ids.size() == 52);

  const auto fresh = run_mill({"--output_dir", clean.path().string(), "eval", model, "demo"});
  REQUIRE(fresh.exit_code == 0);
  const auto a = nlohmann::json::parse(read_text(killed / (model_dir + "/demo/0shot.json")));
  const auto b = nlohmann::json::parse(read_text(clean / (model_dir + "/demo/0shot.json")));
  CHECK(a["metrics"] == b["metrics"]);
  CHECK(a["key"] == b["key"]);
  CHECK(a["counts"]["resumed"].get<long long>() >= 10);
  CHECK(a["provenance"]["tokens"]["total"] == b["provenance"]["tokens"]["total"]);
  CHECK(a["n_samples"] == b["n_samples"]);
  // Per document: the resumed journal holds exactly the undisturbed run's entries (request, response, scores).
  std::map<long long, nlohmann::json> resumed_docs, clean_docs;
  for (const auto& line : lines) resumed_docs[line["doc_id"].get<long long>()] = line;
  for (const auto& line : journal_lines(clean / (model_dir + "/demo/0shot.journal.jsonl"))) {
    clean_docs[line["doc_id"].get<long long>()] = line;
  }
  CHECK(clean_docs.size() == 52);
  CHECK(resumed_docs == clean_docs);
}

TEST_CASE("Worker mode: manifest element, heartbeats, status, skipping done jobs, key drift, SIGUSR1") {
  TempDir out;
  const auto sweep = out / "sweeps/s1";
  const nlohmann::json manifest = {
      {"schema", "mill.manifest/1"},
      {"settings", {{"extra_task_paths", nlohmann::json::array()}, {"data_dir", nullptr}}},
      {"elements",
       {{{"model", "mill-demo"},
         {"jobs", {{{"task", "demo"}, {"n_shot", 0}, {"limit", 8}, {"key", "stale-key"}},
                   {{"task", "demo"}, {"n_shot", 1}, {"limit", 8}, {"key", ""}}}}},
        {{"model", "mill-demo[delay_ms=200]"}, {"jobs", {{{"task", "demo"}, {"n_shot", 0}, {"key", ""}}}}},
        {{"model", "mill-demo"},
         {"jobs", {{{"task", "no_such_task"}, {"n_shot", 0}, {"key", ""}},
                   {{"task", "demo"}, {"n_shot", 0}, {"limit", 4}, {"key", ""}}}}}}}};
  write_text(sweep / "manifest.json", manifest.dump(2));

  const auto run = run_mill({"--output_dir", out.path().string(), "eval", "--manifest", (sweep / "manifest.json").string(),
                             "--element", "0"});
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.err, Catch::Contains("job key changed since planning"));
  const auto status = nlohmann::json::parse(read_text(sweep / "status/element-0.json"));
  CHECK(status["state"] == "completed");
  CHECK(status["exit_code"] == 0);
  CHECK(status["jobs"].size() == 2);
  CHECK(status["jobs"][0]["state"] == "done");
  const auto heartbeat = nlohmann::json::parse(read_text(sweep / "heartbeats/element-0.json"));
  CHECK(heartbeat["state"] == "running");
  CHECK(heartbeat["jobs_total"] == 2);
  CHECK(heartbeat["total_samples"] == 8);
  CHECK(std::filesystem::exists(out / "results/mill-demo/demo/1shot-limit8.json"));

  // Run again: both jobs are already done and skipped.
  const auto again = run_mill({"--output_dir", out.path().string(), "eval", "--manifest",
                               (sweep / "manifest.json").string(), "--element", "0"});
  CHECK(again.exit_code == 0);
  CHECK(nlohmann::json::parse(read_text(sweep / "status/element-0.json"))["jobs"][1]["state"] == "skipped");

  // SIGUSR1 during element 1: finish the batch, flush, write status, exit 75; a rerun completes it.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    const std::string out_dir = out.path().string();
    const std::string manifest_path = (sweep / "manifest.json").string();
    ::execl(test::mill_binary(), test::mill_binary(), "--output_dir", out_dir.c_str(), "eval", "--manifest", manifest_path.c_str(),
            "--element", "1", "--docs_per_batch", "4", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto journal =
      out / ("results/" + path_component(ModelSpec::parse("mill-demo[delay_ms=200]").identity()) + "/demo/0shot.journal.jsonl");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         (!std::filesystem::exists(journal) || journal_lines(journal).empty())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGUSR1);
  int wait_status = 0;
  ::waitpid(pid, &wait_status, 0);
  REQUIRE(WIFEXITED(wait_status));
  CHECK(WEXITSTATUS(wait_status) == 75);
  const auto stopped = nlohmann::json::parse(read_text(sweep / "status/element-1.json"));
  CHECK(stopped["state"] == "preempted");
  CHECK(stopped["exit_code"] == 75);
  const auto partial = journal_lines(journal).size();
  CHECK(partial > 0);
  CHECK(partial < 52);
  CHECK(partial % 4 == 0);  // whole batches only

  // A job that cannot run fails alone: the element's other jobs still run; exit 4.
  const auto mixed = run_mill({"--output_dir", out.path().string(), "eval", "--manifest",
                               (sweep / "manifest.json").string(), "--element", "2"});
  CHECK(mixed.exit_code == 4);
  CHECK_THAT(mixed.err, Catch::Contains("no_such_task"));
  const auto mixed_status = nlohmann::json::parse(read_text(sweep / "status/element-2.json"));
  CHECK(mixed_status["state"] == "failed");
  CHECK(mixed_status["exit_code"] == 4);
  CHECK(mixed_status["jobs"][0]["state"] == "failed");
  CHECK(mixed_status["jobs"][1]["state"] == "done");
  CHECK(std::filesystem::exists(out / "results/mill-demo/demo/0shot-limit4.json"));

  const auto bad = run_mill({"--output_dir", out.path().string(), "eval", "--manifest", (sweep / "manifest.json").string(),
                             "--element", "7"});
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.err, Catch::Contains("--element 7"));
}

TEST_CASE("Data edited between a kill and the rerun: the journal is kept aside and the job restarts cleanly") {
  TempDir root;
  const auto data = root / "data";
  const auto tasks = root / "tasks";
  write_text(tasks / "filetask.yaml", R"(task: filetask
output_type: logprobs
eval_split: test
prompt:
  template: "Question: {question}\nAnswer:"
  options_field: choices
  target_delimiter: " "
  continuation: option
answer_field: answer
metrics: [acc]
dataset:
  format: jsonl
  path: filetask/{split}.jsonl
  revision: v1
)");
  // 40 questions; the edit changes every answer, so mixing old and new samples would show in the numbers.
  const auto documents = [](int answer) {
    std::string text;
    for (int i = 0; i < 40; ++i) {
      text += fmt::format("{{\"question\": \"What is {} + {}?\", \"choices\": [\"{}\", \"{}\"], \"answer\": {}}}\n", i, i,
                          2 * i, 2 * i + 1, answer);
    }
    return text;
  };
  const auto data_file = data / "filetask" / "test.jsonl";
  write_text(data_file, documents(0));
  const std::string model = "mill-demo[delay_ms=60]";
  const auto out = root / "out";
  const auto result = out / ("results/" + path_component(ModelSpec::parse(model).identity()) + "/filetask/0shot.json");
  const auto journal = out / ("results/" + path_component(ModelSpec::parse(model).identity()) +
                              "/filetask/0shot.journal.jsonl");

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    ::execl(test::mill_binary(), test::mill_binary(), "--output_dir", out.c_str(), "eval", model.c_str(), "filetask", "--data_dir",
            data.c_str(), "--extra_task_paths", tasks.c_str(), "--docs_per_batch", "2", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::size_t seen = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && seen < 6) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (std::filesystem::exists(journal)) seen = journal_lines(journal).size();
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(seen >= 6);
  REQUIRE_FALSE(std::filesystem::exists(result));
  const auto killed_journal = read_text(journal);

  write_text(data_file, documents(1));  // edited in place: same path, same task definition, same job key
  const std::vector<std::string> rerun = {"--output_dir", out.string(), "eval", model, "filetask", "--data_dir",
                                          data.string(), "--extra_task_paths", tasks.string()};
  const auto resumed = run_mill(rerun);
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Catch::Contains("other data") && Catch::Contains("starting afresh"));
  CHECK(read_text(journal.string() + ".stale") == killed_journal);  // the old journal, kept aside

  TempDir clean;
  auto fresh_args = rerun;
  fresh_args[1] = clean.path().string();
  REQUIRE(run_mill(fresh_args).exit_code == 0);
  const auto a = nlohmann::json::parse(read_text(result));
  const auto b = nlohmann::json::parse(read_text(clean.path() / std::filesystem::relative(result, out)));
  CHECK(a["metrics"] == b["metrics"]);
  CHECK(a["counts"]["resumed"] == 0);
  CHECK(a["data"]["eval"]["fingerprint"] == b["data"]["eval"]["fingerprint"]);
  CHECK(journal_lines(journal).size() == 40);
}
