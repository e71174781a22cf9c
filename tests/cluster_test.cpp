#include <catch2/catch.hpp>

#include "mill/cluster.hpp"
#include "mill/error.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
const std::string kValid = R"(profiles:
  alpha:
    hostname_pattern: "alpha-login*"
    partition: gpu
    account: proj1
    gpu_type: a100
    gpus_per_node: 4
    mem: 64G
    queue_limit: 20
    max_array_len: 5
  beta:
    hostname_pattern: "beta*"
    partition: batch
    gpus_per_node: 8
    gpus_per_task: 2
    mem: 0
    queue_limit: 10
    max_array_len: 2
    max_time: "2-00:00:00"
    cpus_per_task: 16
    extra_sbatch: ["--qos=normal"]
)";

std::string error_for(const std::string& text) {
  try {
    parse_cluster_config(text, "/etc/clusters.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}
}  // namespace

TEST_CASE("profiles parse with defaults for optional fields") {
  const auto config = parse_cluster_config(kValid, "c.yaml");
  REQUIRE(config.profiles.size() == 2);
  const auto& alpha = config.profiles[0];
  CHECK(alpha.name == "alpha");
  CHECK(alpha.gpus_per_task == 4);  // defaults to gpus_per_node
  CHECK(alpha.max_time_minutes == 24 * 60);
  CHECK(alpha.cpus_per_task == 8);
  CHECK(alpha.max_array_size == 1001);
  const auto& beta = config.profiles[1];
  CHECK(beta.gpus_per_task == 2);
  CHECK(beta.max_time_minutes == 2 * 24 * 60);
  CHECK(beta.extra_sbatch == std::vector<std::string>{"--qos=normal"});
  CHECK(beta.account.empty());
}

TEST_CASE("the bundled profiles are valid") {
  const auto config = parse_cluster_config(bundled_cluster_config(), "bundled");
  CHECK(config.profiles.size() >= 2);
}

TEST_CASE("cluster auto matches the hostname glob, in file order, also on the short name") {
  const auto config = parse_cluster_config(kValid, "c.yaml");
  auto choice = choose_profile(config, "auto", "alpha-login02");
  CHECK(choice.profile->name == "alpha");
  CHECK_THAT(choice.reason, Contains("alpha-login02") && Contains("alpha-login*"));
  CHECK(choose_profile(config, "auto", "beta7.site.example").profile->name == "beta");
  CHECK(choose_profile(config, "auto", "alpha-login3.site.example").profile->name == "alpha");
  CHECK(choose_profile(config, "beta", "alpha-login02").profile->name == "beta");
  try {
    choose_profile(config, "auto", "gamma01");
    FAIL("matched");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("gamma01") && Contains("alpha (alpha-login*)") && Contains("beta (beta*)") &&
                             Contains("c.yaml"));
  }
  try {
    choose_profile(config, "alpah", "x");
    FAIL("matched");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("no profile named \"alpah\"") && Contains("did you mean alpha"));
  }
}

TEST_CASE("every validation error names the file, the profile and the field") {
  struct Case {
    std::string from, to, field;
  };
  const std::vector<Case> cases = {
      {"    partition: gpu\n", "", "partition"},
      {"partition: gpu", "partition: \"gpu; rm -rf /\"", "partition"},
      {"account: proj1", "account: \"a b\"", "account"},
      {"gpu_type: a100", "gpu_type: \"a100:2\"", "gpu_type"},
      {"gpus_per_node: 4", "gpus_per_node: four", "gpus_per_node"},
      {"gpus_per_node: 4", "gpus_per_node: -1", "gpus_per_node"},
      {"mem: 64G", "mem: lots", "mem"},
      {"queue_limit: 20", "queue_limit: 0", "queue_limit"},
      {"max_array_len: 5", "max_array_len: 2.5", "max_array_len"},
      {"    hostname_pattern: \"alpha-login*\"\n", "", "hostname_pattern"},
      {"max_time: \"2-00:00:00\"", "max_time: \"forever\"", "max_time"},
      {"gpus_per_task: 2", "gpus_per_task: 9", "gpus_per_task"},
      {"cpus_per_task: 16", "cpus_per_task: 0", "cpus_per_task"},
      {"extra_sbatch: [\"--qos=normal\"]", "extra_sbatch: [\"qos=normal\"]", "extra_sbatch"},
      {"extra_sbatch: [\"--qos=normal\"]", "extra_sbatch: \"--qos=normal\"", "extra_sbatch"},
      {"cpus_per_task: 16", "cpus_per_tsak: 16", "cpus_per_tsak"},
  };
  for (const auto& c : cases) {
    INFO(c.to);
    const auto message = error_for(replace(kValid, c.from, c.to));
    CHECK_THAT(message, Contains("/etc/clusters.yaml") && Contains("profile") && Contains("`" + c.field + "`"));
    CHECK(message.find('\n') == std::string::npos);
  }
  CHECK_THAT(error_for(replace(kValid, "cpus_per_task: 16", "cpus_per_tsak: 16")), Contains("did you mean `cpus_per_task`"));
  CHECK_THAT(error_for("profiles: [a, b]\n"), Contains("profiles:"));
  CHECK_THAT(error_for("profiles: {\n"), Contains("invalid YAML"));
  CHECK_THAT(error_for("profiles: {}\n"), Contains("`profiles` is empty"));
  // Found by fuzz_clusters_yaml: a list as a key escaped as a YAML exception instead of a mill::Error.
  CHECK_THAT(error_for("profiles:\n  ? [a, b]\n  : {partition: gpu}\n"), Contains("profile names must be plain words"));
  CHECK_THAT(error_for("profiles:\n  alpha:\n    ? {x: 1}\n    : gpu\n"), Contains("field names must be plain words"));
}

TEST_CASE("the first run copies the bundled profiles, an edited copy is never overwritten") {
  test::TempDir cache;
  const auto path = cache / "clusters.yaml";
  auto config = load_cluster_config(cache.path());
  REQUIRE(std::filesystem::exists(path));
  CHECK(test::read_text(path) == std::string(bundled_cluster_config()));
  CHECK(config.path == path);

  test::write_text(path, kValid);
  config = load_cluster_config(cache.path());
  CHECK(config.profiles[0].name == "alpha");
  CHECK(test::read_text(path) == kValid);
  // No temporary files are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(cache.path())) ++entries;
  CHECK(entries == 1);
}
