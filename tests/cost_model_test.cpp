#include <catch2/catch.hpp>

#include <cmath>
#include <fmt/format.h>
#include <sstream>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "mill/sweep/cost_model.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {

const SpeedClass kA100{"runtime", "a100", "bfloat16"};
constexpr double kJobSeconds = 1.5;          // data preparation and result of every job
constexpr double kInputCoefficient = 2e-6;    // seconds per (billion parameters × input byte)
constexpr double kOutputCoefficient = 5e-5;   // seconds per (billion parameters × generated token)

double true_seconds(double parameters, const JobWork& work) {
  return kJobSeconds +
         parameters / 1e9 * (kInputCoefficient * work.input_bytes + kOutputCoefficient * work.output_tokens);
}

// A deterministic multiplicative noise in [1 - spread, 1 + spread].
struct Noise {
  std::uint64_t state = 12345;
  double operator()(double spread) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return 1 + spread * (2 * static_cast<double>(state >> 11) / 9007199254740992.0 - 1);
  }
};

// Jobs of two model sizes over log-likelihood and generative tasks of varied sizes.
std::vector<CostObservation> synthetic_history(int count, double spread) {
  Noise noise;
  std::vector<CostObservation> history;
  for (int i = 0; i < count; ++i) {
    CostObservation o;
    o.speed = kA100;
    o.task = fmt::format("task{}", i % 7);
    o.parameters = i % 3 == 0 ? 1e9 : 8e9;
    const bool generative = i % 7 >= 5;
    o.work = {100.0 + i, 2e5 + 1e4 * (i % 11), generative ? 2e4 + 3e3 * (i % 5) : 0};
    o.seconds = true_seconds(o.parameters, o.work) * noise(spread);
    history.push_back(o);
  }
  return history;
}

ResultFile result_document(const std::string& task, const nlohmann::json& provenance) {
  ResultFile result;
  result.task = task;
  result.provenance = provenance;
  return result;
}

}  // namespace

TEST_CASE("cost model: the fit recovers known throughputs from noiseless history", "[cost_model]") {
  const CostModel model(synthetic_history(40, 0));
  CHECK(model.observations() == 40);
  const JobWork generative{200, 3e5, 4e4};
  const JobWork loglikelihood{500, 1e6, 0};
  for (double parameters : {8e9, 1e9, 3e9, 70e9}) {
    for (const auto& work : {generative, loglikelihood}) {
      const auto prediction = model.predict(kA100, "new_task", parameters, work);
      INFO(parameters << " " << prediction.source);
      CHECK(prediction.from_history);
      CHECK(prediction.seconds == Approx(true_seconds(parameters, work)).epsilon(0.01));
    }
  }
  CHECK_THAT(model.predict(kA100, "new_task", 8e9, generative).source,
             Contains("history: 26 result(s) of runtime on a100 in bfloat16 at this model size"));
  CHECK_THAT(model.predict(kA100, "new_task", 3e9, generative).source,
             Contains("history: 40 result(s) of runtime on a100 in bfloat16, scaled by parameters"));
  // Noiseless: every leave-one-out prediction is exact, so the margin is the minimum.
  CHECK(model.margin() == kMinimumMargin);
  CHECK_THAT(model.margin_source(), Contains("raised to the minimum"));
}

TEST_CASE("cost model: classes without history use the documented default throughputs", "[cost_model]") {
  const CostModel model(synthetic_history(10, 0));
  // An 8B model in bfloat16 on one H100: runtime prefill 15,000 tokens/s (4 bytes each), decode 1,000 tokens/s,
  // and 1 s per job.
  const JobWork work{10, 60000, 1000};
  const auto h100 = model.predict({"runtime", "h100", "bfloat16"}, "t", 8e9, work);
  CHECK_FALSE(h100.from_history);
  CHECK(h100.source == "default throughput of runtime on h100 in bfloat16");
  CHECK(h100.seconds == Approx(1 + 2.0));
  CHECK(model.predict({"runtime", "h100", "bfloat16"}, "t", 16e9, work).seconds == Approx(1 + 4.0));
  CHECK(model.predict({"runtime", "a100", "float16"}, "t", 8e9, work).seconds == Approx(1 + 4.0));  // A100: half
  CHECK(model.predict({"runtime", "h100", "float32"}, "t", 8e9, work).seconds == Approx(1 + 4.0));
  CHECK(model.predict({"runtime", "h100", "bfloat16"}, "t", 0, work).seconds == Approx(1 + 2.0));  // unknown: 8B
  CHECK(model.predict({"vllm", "h100", ""}, "t", 8e9, {10, 100000, 4000}).seconds == Approx(1 + 2.0));
  CHECK(model.predict({"runtime", "cpu", "bfloat16"}, "t", 8e9, {1, 200, 3}).seconds == Approx(1 + 2.0));
  CHECK(model.predict({"api", "remote", ""}, "t", 0, {1, 80000, 1000}).seconds == Approx(1 + 2.0));
  CHECK(model.predict({"demo", "cpu", "float64"}, "t", 0, {1, 1e7, 1e6}).seconds == Approx(2.0));
  // An unknown GPU type is assumed slower than an A100, so its limits err long.
  CHECK(model.predict({"runtime", "gpu", "bfloat16"}, "t", 8e9, work).seconds > 1 + 4.0);

  // Loading: history of the same class and size, else the default scaled as history compares with it.
  auto history = synthetic_history(6, 0);
  for (auto& o : history) o.load_seconds = o.parameters == 8e9 ? 30 : 12;
  const CostModel loads(history);
  CHECK(loads.load_seconds(kA100, 8e9) == Approx(30));
  CHECK(loads.load_seconds(kA100, 32e9) == Approx(64 * 30.0 / 16));  // 32B: 64 GB; history took 30 s for 16 GB
  CHECK(loads.load_seconds({"runtime", "h100", "bfloat16"}, 32e9) == Approx(64));   // default: 1 GB/s
  CHECK(loads.load_seconds({"runtime", "h100", "bfloat16"}, 1e9) == Approx(10));    // at least 10 s on a GPU
  CHECK(loads.load_seconds({"vllm", "h100", ""}, 8e9) == Approx(16 + 60));          // plus the server start-up
  CHECK(loads.load_seconds({"demo", "cpu", "float64"}, 0) == 0);
  CHECK(loads.load_seconds({"api", "remote", ""}, 0) == 0);
}

TEST_CASE("cost model: a task's own history corrects its predictions", "[cost_model]") {
  auto history = synthetic_history(30, 0);
  for (int i = 0; i < 3; ++i) {  // chain-of-thought that takes 1.5× what its work says
    CostObservation o;
    o.speed = kA100;
    o.task = "mmlu_pro_law";
    o.parameters = 8e9;
    o.work = {100, 4e5 + 1e5 * i, 3e4};
    o.seconds = 1.5 * true_seconds(o.parameters, o.work);
    history.push_back(o);
  }
  history[0].task = "once";  // one observation is no correction
  const CostModel model(history);
  const JobWork work{100, 5e5, 3e4};
  const auto law = model.predict(kA100, "mmlu_pro_law", 8e9, work);
  CHECK(law.seconds == Approx(1.5 * true_seconds(8e9, work)).epsilon(0.02));
  CHECK_THAT(law.source, Contains("for mmlu_pro_law (3 result(s))"));
  // The other tasks keep (nearly) their own throughput: the slow task's rows are corrected before the refit.
  const JobWork loglikelihood{100, 5e5, 0};
  CHECK(model.predict(kA100, "task1", 8e9, loglikelihood).seconds ==
        Approx(true_seconds(8e9, loglikelihood)).epsilon(0.05));
  CHECK(model.predict(kA100, "task5", 8e9, work).seconds == Approx(true_seconds(8e9, work)).epsilon(0.05));
  CHECK(model.predict(kA100, "new_task", 8e9, work).seconds < 1.1 * true_seconds(8e9, work));
  CHECK(model.predict(kA100, "once", 8e9, work).source.find(" for once") == std::string::npos);
  CHECK(model.output_tokens_per_document("mmlu_pro_law").value_or(-1) == Approx(300));
  CHECK(model.output_tokens_per_document("task0").value_or(-1) == 0);
  CHECK_FALSE(model.output_tokens_per_document("never_ran").has_value());
}

TEST_CASE("cost model: the margin covers the prediction error of history", "[cost_model]") {
  const CostModel wide(synthetic_history(80, 0.3));
  INFO(wide.margin_source());
  // Uniform ±30% noise: the 90th percentile of actual/predicted is about 1.24.
  CHECK(wide.margin() > 1.17);
  CHECK(wide.margin() < 1.35);
  CHECK_THAT(wide.margin_source(), Contains("90th percentile of actual/predicted over 80 result(s)"));
  const CostModel narrow(synthetic_history(80, 0.1));
  CHECK(narrow.margin() == kMinimumMargin);
  const CostModel little(synthetic_history(4, 0.3));
  CHECK(little.margin() == kDefaultMargin);
  CHECK_THAT(little.margin_source(), Contains("default margin"));
  CHECK(CostModel().margin() == kDefaultMargin);
  // Unusable observations (no seconds, no work) are dropped.
  auto history = synthetic_history(3, 0);
  history[0].seconds = 0;
  history[1].work = {};
  CHECK(CostModel(history).observations() == 1);
}

TEST_CASE("cost model: speed classes are normalised the same at plan time and from results", "[cost_model]") {
  CHECK(make_speed_class("local", "cuda:0", "H100", "bf16") == SpeedClass{"runtime", "h100", "bfloat16"});
  CHECK(make_speed_class("local", "cuda", "", "bfloat16") == SpeedClass{"runtime", "gpu", "bfloat16"});
  CHECK(make_speed_class("mill-demo", "cpu", "A100", "float64") == SpeedClass{"demo", "cpu", "float64"});
  CHECK(make_speed_class("vllm", "", "A100", "auto") == SpeedClass{"vllm", "a100", ""});
  CHECK(make_speed_class("litellm", "", "", "") == SpeedClass{"api", "remote", ""});
  CHECK(SpeedClass{"api", "remote", ""}.to_string() == "api on remote");
}

TEST_CASE("a result's provenance is one cost observation, other documents and older results none", "[cost_model]") {
  const nlohmann::json work = {{"documents", 100}, {"input_bytes", 5e5}, {"output_tokens", 0}};
  const auto gsm8k = cost_observation_from_result(
      result_document("gsm8k", {{"work", {{"documents", 50}, {"input_bytes", 4e4}, {"output_tokens", 9000}}},
                                {"wall_seconds", 120.5},
                                {"device", "cuda:0"},
                                {"gpu_type", "H100"},
                                {"dtype", "bfloat16"},
                                {"backend", {{"backend", "local"}, {"parameters", 8030261248}, {"load_seconds", 41}}}}));
  REQUIRE(gsm8k);
  CHECK(gsm8k->task == "gsm8k");
  CHECK(gsm8k->speed == SpeedClass{"runtime", "h100", "bfloat16"});
  CHECK(gsm8k->parameters == 8030261248.0);
  CHECK(gsm8k->work.output_tokens == 9000);
  CHECK(gsm8k->seconds == 120.5);
  CHECK(gsm8k->load_seconds == 41);
  const auto arc = cost_observation_from_result(
      result_document("arc", {{"work", work},
                              {"wall_seconds", 30},
                              {"device", nullptr},
                              {"gpu_type", "A100"},
                              {"dtype", nullptr},
                              {"backend", {{"backend", "vllm"}, {"server_startup_seconds", 95}}}}));
  REQUIRE(arc);
  CHECK(arc->speed == SpeedClass{"vllm", "a100", ""});
  CHECK(arc->load_seconds == 95);
  const auto unsized = cost_observation_from_result(
      result_document("t", {{"work", work}, {"wall_seconds", 2}, {"device", "cuda:1"}, {"gpu_type", nullptr},
                            {"dtype", "float16"}, {"backend", {{"backend", "local"}, {"parameters", 5e8}}}}));
  REQUIRE(unsized);
  CHECK(unsized->speed == SpeedClass{"runtime", "gpu", "float16"});
  // Written before provenance.work.
  CHECK_FALSE(cost_observation_from_result(
      result_document("old", {{"wall_seconds", 30}, {"device", "cpu"}, {"backend", {{"backend", "local"}}}})));
  // The JSON form round-trips through a history file line.
  CHECK(cost_observation_json(*gsm8k)["work"]["output_tokens"] == 9000);
}

TEST_CASE("cost history is read from the sweeps' status files newest first, and from a history file", "[cost_model]") {
  test::TempDir dir;
  auto observation = [](const std::string& task, double seconds) {
    CostObservation o;
    o.task = task;
    o.speed = {"runtime", "a100", "bfloat16"};
    o.parameters = 8e9;
    o.work = {100, 5e5, 0};
    o.seconds = seconds;
    return o;
  };
  // Two sweeps (ids sort by time), the older with two elements; failed jobs carry no cost.
  auto status = [&](const std::string& sweep, int element, const std::vector<CostObservation>& done) {
    nlohmann::json jobs = nlohmann::json::array();
    for (const auto& o : done) jobs.push_back({{"task", o.task}, {"state", "done"}, {"cost", cost_observation_json(o)}});
    jobs.push_back({{"task", "failed_one"}, {"state", "failed"}});
    test::write_text(dir / "sweeps" / sweep / "status" / fmt::format("element-{}.json", element),
                     nlohmann::json{{"element", element}, {"jobs", jobs}}.dump());
  };
  status("20261130T010000Z-aaaaaa", 0, {observation("old_a", 10)});
  status("20261130T010000Z-aaaaaa", 1, {observation("old_b", 11)});
  status("20261130T020000Z-bbbbbb", 0, {observation("new_a", 20), observation("new_b", 21)});
  test::write_text(dir / "sweeps" / "20261130T020000Z-bbbbbb" / "status" / "element-1.json", "{ truncated");
  std::filesystem::create_directories(dir / "sweeps" / "20261130T030000Z-cccccc" / "logs");  // nothing finished yet

  const auto all = read_cost_history(dir.path(), std::nullopt);
  REQUIRE(all.size() == 4);
  CHECK(all[0].task == "new_a");
  CHECK(all[1].task == "new_b");
  CHECK(all[2].task == "old_a");
  CHECK(all[3].task == "old_b");
  CHECK(all[0].seconds == 20);
  CHECK(all[0].speed == SpeedClass{"runtime", "a100", "bfloat16"});
  // The cap is checked per sweep: the newest sweep is read whole, older ones only while under it.
  CHECK(read_cost_history(dir.path(), std::nullopt, 2).size() == 2);
  CHECK(read_cost_history(dir.path(), std::nullopt, 3).size() == 4);
  CHECK(read_cost_history(dir.path() / "nowhere", std::nullopt).empty());

  const auto history_file = dir.path() / "history.jsonl";
  test::write_text(history_file, cost_observation_json(all[0]).dump() + "\n{\"task\": \"x\", \"backend\": 3}\n\n" +
                                     cost_observation_json(all[2]).dump() + "\n");
  std::ostringstream log;
  const auto previous = spdlog::default_logger();
  const auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  const auto with_file = read_cost_history(dir.path() / "nowhere", history_file);
  spdlog::set_default_logger(previous);
  REQUIRE(with_file.size() == 2);  // both good lines of the history file
  CHECK(with_file[0].task == "new_a");
  CHECK(with_file[0].parameters == all[0].parameters);
  CHECK(with_file[0].work.input_bytes == all[0].work.input_bytes);
  CHECK(with_file[1].task == "old_a");
  CHECK_THAT(log.str(), Contains("history.jsonl:2: not a cost observation"));
  CHECK(read_cost_history(dir.path(), dir.path() / "not-yet.jsonl").size() == 4);
}

TEST_CASE("packing: one model per element, longest first, balanced within the target", "[cost_model]") {
  const std::vector<PackItem> items = {{0, "a", 100}, {1, "a", 3000}, {2, "a", 500}, {3, "a", 2500}, {4, "a", 200},
                                       {5, "a", 50},  {6, "b", 4000}, {7, "b", 100}, {8, "b", 100}};
  const auto elements = pack_elements(items, 3600, 7200, 3);
  REQUIRE(elements.size() == 4);
  // Model a's 6350 s need two elements of 3600; balanced, longest first to the lighter one: 3250 and 3100
  // (first fit would give 3600 and 2750), three jobs each (the limit).
  CHECK(elements[0].jobs == std::vector<std::size_t>{1, 4, 5});
  CHECK(elements[0].seconds == 3250);
  CHECK(elements[1].jobs == std::vector<std::size_t>{3, 2, 0});
  CHECK(elements[1].seconds == 3100);
  CHECK(elements[2].jobs == std::vector<std::size_t>{6});        // longer than the target: alone
  CHECK(elements[2].seconds == 4000);
  CHECK(elements[3].jobs == std::vector<std::size_t>{7, 8});     // equal lengths: caller's order
  // A max_seconds below the target is the limit; no job limit packs a model's short jobs together.
  const auto capped = pack_elements(items, 10000, 3600, 3);
  CHECK(capped.size() == 4);
  for (const auto& element : capped) CHECK((element.seconds <= 3600 || element.jobs.size() == 1));
  const auto unlimited = pack_elements(items, 10000, 0, 0);
  REQUIRE(unlimited.size() == 2);
  CHECK(unlimited[0].jobs.size() == 6);
  CHECK(unlimited[1].seconds == 4200);
  // Deterministic, and a model's elements follow its first appearance.
  const std::vector<PackItem> reordered = {items[6], items[0], items[8], items[1], items[2],
                                           items[7], items[3], items[4], items[5]};
  const auto again = pack_elements(reordered, 3600, 7200, 3);
  REQUIRE(again.size() == 4);
  CHECK(again[0].jobs == std::vector<std::size_t>{6});
  CHECK(again[1].jobs == elements[3].jobs);
  CHECK(again[2].jobs == elements[0].jobs);
  CHECK(again[3].jobs == elements[1].jobs);
  CHECK(pack_elements({}, 3600, 7200, 3).empty());
}
