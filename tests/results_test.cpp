#include <catch2/catch.hpp>

#include <fmt/format.h>

#include "mill/base/atomic_file.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/results.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
nlohmann::json valid_result(const Job& job, const JobKey& key) {
  return {{"schema", kResultSchema}, {"key", key.digest},        {"key_inputs", key.inputs},
          {"model", job.model.to_string()}, {"task", job.task->name}, {"n_shot", job.n_shot},
          {"n_samples", 10},           {"metrics", {{"acc", {{"value", 0.5}, {"stderr", 0.1}}}}}};
}
}  // namespace

TEST_CASE("atomic writes replace whole files and leave no temporaries") {
  test::TempDir dir;
  const auto path = dir / "a" / "b" / "file.json";
  write_file_atomically(path, "first");
  write_file_atomically(path, "second");
  CHECK(test::read_text(path) == "second");
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(path.parent_path())) ++entries;
  CHECK(entries == 1);
  CHECK_FALSE(read_file_if_exists(dir / "missing"));
}

TEST_CASE("a failed atomic write keeps the old file and names the path") {
  test::TempDir dir;
  const auto path = dir / "result.json";
  write_file_atomically(path, "old");
  std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  if (::geteuid() == 0) {
    // root ignores directory permissions; use a path under a regular file instead.
    CHECK_THROWS_WITH(write_file_atomically(path / "x", "new"), Contains(path.string()));
  } else {
    CHECK_THROWS_WITH(write_file_atomically(path, "new"), Contains(path.string()));
  }
  std::filesystem::permissions(dir.path(), std::filesystem::perms::owner_all);
  CHECK(test::read_text(path) == "old");
}

TEST_CASE("the result cache tells done, missing, stale and corrupt apart") {
  const auto registry = TaskRegistry::load();
  test::TempDir out;
  Job job{ModelSpec::parse("org/model"), registry.find("mmlu_anatomy"), 5, std::nullopt};
  const auto key = make_job_key(job, "rev1");
  const auto path = result_path(out.path(), job);
  CHECK(path == out / "results" / "org__model" / "mmlu_anatomy" / "5shot.json");

  CHECK(check_result(path, key).state == ResultState::missing);

  write_result(path, valid_result(job, key));
  CHECK(check_result(path, key).state == ResultState::done);

  // Same job, another model revision: stale, and the reason says what changed.
  const auto newer = make_job_key(job, "rev2");
  const auto stale = check_result(path, newer);
  CHECK(stale.state == ResultState::stale);
  CHECK_THAT(stale.reason, Contains("model_revision"));

  // A truncated file is corrupt, not done.
  const auto text = test::read_text(path);
  test::write_text(path, text.substr(0, text.size() / 2));
  auto corrupt = check_result(path, key);
  CHECK(corrupt.state == ResultState::corrupt);
  CHECK_THAT(corrupt.reason, Contains("not valid JSON"));

  // Valid JSON that is not a complete result is corrupt too.
  auto partial = valid_result(job, key);
  partial.erase("metrics");
  test::write_text(path, partial.dump());
  corrupt = check_result(path, key);
  CHECK(corrupt.state == ResultState::corrupt);
  CHECK_THAT(corrupt.reason, Contains("metrics"));

  // Writing an invalid document is refused and leaves the file as it was.
  const auto before = test::read_text(path);
  CHECK_THROWS_AS(write_result(path, partial), Error);
  CHECK(test::read_text(path) == before);
}

TEST_CASE("job keys change with everything that determines the numbers, and only with that") {
  const auto registry = TaskRegistry::load();
  const auto* task = registry.find("mmlu_anatomy");
  const Job base{ModelSpec::parse("m[dtype=float16]"), task, 5, std::nullopt};
  const auto key = make_job_key(base, "r").digest;
  CHECK(make_job_key(Job{ModelSpec::parse("m[dtype=float16,batch_size=64,device=cpu]"), task, 5, std::nullopt}, "r").digest == key);
  CHECK(make_job_key(Job{ModelSpec::parse("m[dtype=bfloat16]"), task, 5, std::nullopt}, "r").digest != key);
  CHECK(make_job_key(Job{base.model, task, 0, std::nullopt}, "r").digest != key);
  CHECK(make_job_key(Job{base.model, registry.find("mmlu_virology"), 5, std::nullopt}, "r").digest != key);
  CHECK(make_job_key(Job{base.model, task, 5, 10}, "r").digest != key);
  CHECK(make_job_key(base, "other").digest != key);
  // --limit runs live in their own files, so a smoke test never overwrites a full result.
  CHECK(result_path("/o", Job{base.model, task, 5, 10}) != result_path("/o", base));
}

TEST_CASE("a result from a newer scorer is left alone: not planned, and mill eval refuses to overwrite it") {
  test::TempDir out;
  Job job{ModelSpec::parse("mill-demo"), nullptr, 0, std::nullopt};
  const auto registry = TaskRegistry::load();
  job.task = registry.find("demo");
  REQUIRE(job.task);
  auto future = make_job_key(job, resolve_model_revision(job.model));
  future.inputs["scoring_version"] = future.inputs["scoring_version"].get<int>() + 1;
  future.digest = content_hash(future.inputs.dump());
  const auto path = result_path(out.path(), job);
  write_result(path, valid_result(job, future));
  const auto before = test::read_text(path);

  const auto now = make_job_key(job, resolve_model_revision(job.model));
  const auto check = check_result(path, now);
  CHECK(check.state == ResultState::stale);
  CHECK(check.newer_scoring_version == future.inputs["scoring_version"].get<int>());
  CHECK_THAT(check.reason, Contains("newer mill"));

  const auto plan = test::run_mill({"--output_dir", out.path().string(), "schedule", "mill-demo", "demo", "--dry_run",
                                    "--json", "--cluster", "local"});
  REQUIRE(plan.exit_code == 0);
  const auto planned = nlohmann::json::parse(plan.out);
  CHECK(planned["counts"]["pending"] == 0);
  CHECK_THAT(planned["jobs"][0]["reason"].get<std::string>(), Contains("newer mill"));

  const auto eval = test::run_mill({"--output_dir", out.path().string(), "eval", "mill-demo", "demo"});
  CHECK(eval.exit_code == static_cast<int>(ExitCode::eval_failed));
  CHECK_THAT(eval.err, Contains(fmt::format("scoring_version {}", kScoringVersion + 1)) &&
                           Contains(fmt::format("this mill's is {}", kScoringVersion)) && Contains("not overwritten"));
  CHECK(test::read_text(path) == before);
}
