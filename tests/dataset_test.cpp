// Dataset loaders: CSV (both MMLU layouts), JSON, JSON Lines, inline documents, filters, and the messages for
// missing data.
#include <catch2/catch.hpp>

#include "mill/eval/dataset.hpp"
#include "mill/base/error.hpp"
#include "support.hpp"

using namespace mill;
using mill::test::TempDir;
using mill::test::write_text;

namespace {
TaskInfo task_with(const nlohmann::json& dataset, const std::string& name = "fixture") {
  TaskInfo task;
  task.name = name;
  task.source = "test";
  task.definition = {{"task", name}, {"output_type", "logprobs"}, {"dataset", dataset}};
  return task;
}
}  // namespace

TEST_CASE("CSV fields may hold quoted commas, quotes and newlines") {
  const auto rows = parse_csv("a,\"b, c\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",x,\n", "t.csv");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0] == std::vector<std::string>{"a", "b, c", "say \"hi\""});
  CHECK(rows[1] == std::vector<std::string>{"two\nlines", "x", ""});
  CHECK_THROWS_WITH(parse_csv("a,\"open", "bad.csv"), Catch::Contains("bad.csv") && Catch::Contains("not closed"));
}

TEST_CASE("Both MMLU CSV layouts give the same documents") {
  const auto exported = parse_mmlu_csv(
      "question,choice0,choice1,choice2,choice3,answer\n\"What, exactly?\",w,x,y,z,2\nSecond,a,b,c,d,0\n", "hf.csv");
  const auto original = parse_mmlu_csv("\"What, exactly?\",w,x,y,z,C\nSecond,a,b,c,d,A\n", "orig.csv");
  REQUIRE(exported.size() == 2);
  CHECK(exported == original);
  CHECK(exported[0]["question"] == "What, exactly?");
  CHECK(exported[0]["choices"] == nlohmann::json({"w", "x", "y", "z"}));
  CHECK(exported[0]["answer"] == 2);
  CHECK_THROWS_WITH(parse_mmlu_csv("q,a,b,c,d,E\n", "x.csv"), Catch::Contains("x.csv: row 1") && Catch::Contains("E"));
  CHECK_THROWS_WITH(parse_mmlu_csv("q,a,b,c\n", "y.csv"), Catch::Contains("4 fields"));
}

TEST_CASE("JSON Lines and JSON loaders apply the filter, doc order is file order") {
  TempDir dir;
  write_text(dir / "d/test.jsonl", "{\"q\":\"one\",\"cat\":\"x\"}\n\n{\"q\":\"two\",\"cat\":\"y\"}\n{\"q\":\"three\",\"cat\":\"x\"}\n");
  write_text(dir / "d/test.json", "[{\"q\":\"a\"},{\"q\":\"b\"}]");
  auto jsonl = load_split(task_with({{"format", "jsonl"}, {"path", "d/{split}.jsonl"}, {"filter", {{"cat", "x"}}}}),
                          "test", dir.path());
  REQUIRE(jsonl.documents.size() == 2);
  CHECK(jsonl.documents[0]["q"] == "one");
  CHECK(jsonl.documents[1]["q"] == "three");
  CHECK(jsonl.origin == (dir.path() / "d/test.jsonl").string());
  auto json = load_split(task_with({{"format", "json"}, {"path", "d/{split}.json"}}), "test", dir.path());
  REQUIRE(json.documents.size() == 2);
  CHECK(json.documents[1]["q"] == "b");
  CHECK(json.fingerprint != jsonl.fingerprint);
}

TEST_CASE("Inline documents are keyed by split") {
  auto task = task_with({{"format", "inline"}, {"documents", {{"test", {{{"q", "x"}}}}}}});
  CHECK(load_split(task, "test", std::nullopt).documents.size() == 1);
  CHECK_THROWS_WITH(load_split(task, "dev", std::nullopt), Catch::Contains("dataset.documents.dev"));
}

TEST_CASE("A missing data file names the task, the path looked for and the data directory") {
  TempDir dir;
  auto task = task_with({{"format", "csv"}, {"layout", "mmlu"}, {"path", "mmlu/{split}/anatomy_{split}.csv"}}, "mmlu_anatomy");
  try {
    load_split(task, "test", dir.path());
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains("mmlu_anatomy"));
    CHECK_THAT(message, Catch::Contains((dir.path() / "mmlu/test/anatomy_test.csv").string()));
    CHECK_THAT(message, Catch::Contains("under data directory " + dir.path().string()));
  }
  CHECK_THROWS_WITH(load_split(task, "test", std::nullopt),
                    Catch::Contains("--data_dir") && Catch::Contains("MILL_DATA_DIR"));
}

TEST_CASE("resolve_data_dir: the flag wins over MILL_DATA_DIR") {
  ::setenv("MILL_DATA_DIR", "/from/env", 1);
  CHECK(resolve_data_dir(std::filesystem::path("/from/flag")) == std::filesystem::path("/from/flag"));
  CHECK(resolve_data_dir(std::nullopt) == std::filesystem::path("/from/env"));
  ::unsetenv("MILL_DATA_DIR");
  CHECK_FALSE(resolve_data_dir(std::nullopt).has_value());
}

TEST_CASE("Real MMLU export (../shared/data) loads with every answer in range") {
  const auto root = mill::test::shared_path("data");
  if (root.empty() || !std::filesystem::exists(root / "mmlu/test/anatomy_test.csv")) {
    WARN("../shared/data/mmlu is absent; skipped");
    return;
  }
  auto task = task_with({{"format", "csv"}, {"layout", "mmlu"}, {"path", "mmlu/{split}/anatomy_{split}.csv"}});
  const auto dev = load_split(task, "dev", root);
  const auto test = load_split(task, "test", root);
  CHECK(dev.documents.size() == 5);
  CHECK(test.documents.size() == 135);
  for (const auto& doc : test.documents) {
    CHECK(doc["choices"].size() == 4);
    CHECK(doc["answer"].get<int>() >= 0);
    CHECK(doc["answer"].get<int>() <= 3);
  }
}
