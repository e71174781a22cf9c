#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fmt/format.h>

#include "mill/sweep/cluster.hpp"
#include "mill/base/error.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

namespace {
const std::string kValid = R"(clusters:
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
      {"partition: gpu", "partition: \"\"\n    partition: gpu", "partition"},
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
  CHECK_THAT(error_for("clusters: [a, b]\n"), Contains("`clusters:` must be a mapping"));
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

namespace {
// The example in DESIGN.md and docs/clusters.md, as users have it: top-level `clusters:`, the eight fields.
const std::string kDocumentedSeed = test::design_seed_clusters_yaml();

ClusterProfile only_profile(const ClusterConfig& config) {
  REQUIRE(config.profiles.size() == 1);
  return config.profiles[0];
}

std::string with_fields(const std::string& fields) {
  return "clusters:\n  p:\n    hostname_pattern: h\n    gpus_per_node: 2\n    queue_limit: 5\n    max_array_len: 2\n" + fields;
}
}  // namespace

TEST_CASE("the documented clusters.yaml parses as written, and the older `profiles:` key still works") {
  const auto& seed = only_profile(parse_cluster_config(kDocumentedSeed, "c.yaml"));
  CHECK(seed.name == "my-cluster");
  CHECK(seed.partition == "gpu");
  CHECK(seed.account == "my_project");
  CHECK(seed.gpu_type == "A100");
  CHECK(seed.gpus_per_task == 1);
  CHECK(seed.mem == "64G");
  CHECK(seed.queue_limit == 200);
  CHECK(seed.max_array_len == 100);
  CHECK(seed.signal_minutes == 5);
  CHECK(seed.container_image.empty());

  auto legacy = kDocumentedSeed;
  legacy.replace(0, 9, "profiles:");
  CHECK(only_profile(parse_cluster_config(legacy, "c.yaml")).name == "my-cluster");

  const auto both = error_for(kDocumentedSeed + "profiles:\n  other: {}\n");
  CHECK_THAT(both, Contains("/etc/clusters.yaml") && Contains("both `clusters:` and `profiles:`") && Contains("keep one"));
  CHECK_THAT(error_for("cluster:\n  a: {}\n"), Contains("expected a top-level `clusters:` mapping"));
  CHECK_THAT(error_for("clusters: {}\n"), Contains("`clusters` is empty"));
}

TEST_CASE("the bundled profiles use `clusters:` and end with a catch-all `generic` profile in the default partition") {
  const auto bundled = std::string(bundled_cluster_config());
  CHECK(bundled.find("\nclusters:\n") != std::string::npos);
  const auto config = parse_cluster_config(bundled, "bundled");
  REQUIRE(config.profiles.size() >= 3);
  const auto& generic = config.profiles.back();
  CHECK(generic.name == "generic");
  CHECK(generic.hostname_pattern == "*");
  CHECK(generic.partition.empty());
  CHECK(generic.account.empty());
  CHECK(generic.gpus_per_task == 1);
  CHECK(generic.max_time_minutes <= 24 * 60);
  // Every other bundled profile is chosen before it, and any host gets one.
  for (const auto& profile : config.profiles) {
    CHECK(choose_profile(config, profile.name, "x").profile->name == profile.name);
  }
  CHECK(choose_profile(config, "auto", "some-unmatched-host").profile->name == "generic");
  CHECK(choose_profile(config, "auto", "jwlogin03.juwels").profile->name == "juwels-booster");
  CHECK(choose_profile(config, "auto", "mill-local-slurm").profile->name == "local");
}

TEST_CASE("repeated profile names, fields and top-level keys are errors that name both lines") {
  auto message = error_for("clusters:\n  a:\n    hostname_pattern: x\n    gpus_per_node: 1\n    mem: 1G\n    queue_limit: 1\n"
                           "    max_array_len: 1\n  a:\n    hostname_pattern: y\n");
  CHECK_THAT(message, Contains("/etc/clusters.yaml") && Contains("profile a is defined twice (lines 2 and 8)"));
  message = error_for(with_fields("    mem: 1G\n    mem: 2G\n"));
  CHECK_THAT(message, Contains("profile p, field `mem`: given twice (lines 7 and 8); keep one"));
  // A quoted spelling is the same key.
  message = error_for(with_fields("    mem: 1G\n    \"queue_limit\": 9\n"));
  CHECK_THAT(message, Contains("field `queue_limit`: given twice (lines 5 and 8)"));
  message = error_for(with_fields("    mem: 1G\n") + "clusters:\n  q: {}\n");
  CHECK_THAT(message, Contains("top-level key \"clusters\" is given twice"));
  message = error_for("clusters: {p: {hostname_pattern: h, mem: 1G, mem: 2G}}\n");
  CHECK_THAT(message, Contains("`mem`: given twice (both on line 1)"));
}

TEST_CASE("memory sizes take every form sbatch accepts and are written as sbatch takes them") {
  const std::vector<std::pair<std::string, std::string>> accepted = {
      {"64G", "64G"},    {"64g", "64G"},   {"64GB", "64G"},   {"64gb", "64G"}, {"64000M", "64000M"},
      {"64000", "64000M"}, {"0", "0"},     {"0G", "0"},       {"512k", "512K"}, {"2T", "2T"},
      {"064G", "64G"},   {"1Mb", "1M"}};
  for (const auto& [text, normalized] : accepted) {
    INFO(text);
    CHECK(normalize_slurm_memory(text) == normalized);
    const auto& profile = only_profile(parse_cluster_config(with_fields("    mem: \"" + text + "\"\n"), "c.yaml"));
    CHECK(profile.mem == normalized);
  }
  for (const std::string text : {"", "G", "64 G", "64GiB", "64X", "64GBB", "-1G", "1.5G", "64G ", "lots", "9999999999G"}) {
    INFO(text);
    CHECK_FALSE(normalize_slurm_memory(text));
    const auto message = error_for(with_fields("    mem: \"" + text + "\"\n"));
    CHECK_THAT(message, Contains("profile p, field `mem`") && Contains("is not a memory size sbatch accepts") &&
                            Contains("64G, 64GB, 512000M") && Contains("0 for all of the node's memory"));
  }
}

TEST_CASE("mem_per_gpu replaces mem: one of the two is required, never both") {
  const auto& per_gpu = only_profile(parse_cluster_config(with_fields("    mem_per_gpu: 40gb\n"), "c.yaml"));
  CHECK(per_gpu.mem.empty());
  CHECK(per_gpu.mem_per_gpu == "40G");
  CHECK_THAT(error_for(with_fields("    mem: 64G\n    mem_per_gpu: 40G\n")),
             Contains("field `mem_per_gpu`: given together with `mem`; keep one"));
  CHECK_THAT(error_for(with_fields("")), Contains("field `mem`: missing (required unless `mem_per_gpu` is given"));
  CHECK_THAT(error_for(with_fields("    mem_per_gpu: 0\n")), Contains("field `mem_per_gpu`: 0 is not a memory size here"));
  CHECK_THAT(error_for(with_fields("    mem_per_gpu: 40G\n    gpus_per_task: 0\n")),
             Contains("field `mem_per_gpu`: needs GPUs, but gpus_per_task is 0"));
}

TEST_CASE("max_time must be a real SLURM time, and signal_minutes must come before it") {
  CHECK(only_profile(parse_cluster_config(with_fields("    mem: 1G\n    max_time: \"2-12:30:00\"\n"), "c.yaml"))
            .max_time_minutes == 2 * 1440 + 12 * 60 + 30);
  for (const std::string time : {"25:99:99", "1-24:00:00", "10:60", "0", "forever", "1:2:3:4"}) {
    INFO(time);
    CHECK_THAT(error_for(with_fields("    mem: 1G\n    max_time: \"" + time + "\"\n")),
               Contains("field `max_time`") && Contains("is not a SLURM time") && Contains("below 60"));
  }
  CHECK_THAT(error_for(with_fields("    mem: 1G\n    max_time: \"30\"\n    signal_minutes: 30\n")),
             Contains("field `signal_minutes`: 30 minute(s) is not below max_time (30 minutes)"));
  CHECK_THAT(error_for(with_fields("    mem: 1G\n    max_time: \"4\"\n")),
             Contains("field `signal_minutes`: the default 5 minute(s) is not below max_time (4 minutes)"));
  CHECK(only_profile(parse_cluster_config(with_fields("    mem: 1G\n    max_time: \"30\"\n    signal_minutes: 29\n"), "c.yaml"))
            .signal_minutes == 29);
}

TEST_CASE("venv_path, container_image, container_runtime and bind_paths are read, checked and expanded") {
  const char* home = std::getenv("HOME");
  REQUIRE(home);
  const auto& profile = only_profile(parse_cluster_config(
      with_fields("    mem: 1G\n    venv_path: ~/venvs/eval\n    container_image: /images/mill.sif\n"
                  "    container_runtime: singularity\n"
                  "    bind_paths: [/scratch, \"~/models:/models:ro\", \"/data/it's here:/data\"]\n"),
      "c.yaml"));
  CHECK(profile.venv_path == std::string(home) + "/venvs/eval");
  CHECK(profile.container_image == "/images/mill.sif");
  CHECK(profile.container_runtime == "singularity");
  CHECK(profile.bind_paths == std::vector<std::string>{"/scratch", std::string(home) + "/models:/models:ro",
                                                       "/data/it's here:/data"});
  const auto& uri = only_profile(parse_cluster_config(with_fields("    mem: 1G\n    container_image: docker://org/mill:1.0\n"), "c.yaml"));
  CHECK(uri.container_image == "docker://org/mill:1.0");
  CHECK(uri.container_runtime == "apptainer");
  CHECK(uri.bind_paths.empty());

  struct Case {
    std::string fields, expected;
  };
  const std::vector<Case> cases = {
      {"    venv_path: venvs/eval\n", "field `venv_path`: \"venvs/eval\" is not an absolute path"},
      {"    container_image: mill.sif\n", "field `container_image`: \"mill.sif\" is not an absolute path"},
      {"    container_image: /i.sif\n    container_runtime: docker\n", "field `container_runtime`: \"docker\" is not apptainer or singularity"},
      {"    bind_paths: [/scratch]\n", "field `bind_paths`: needs `container_image`"},
      {"    container_runtime: apptainer\n", "field `container_runtime`: needs `container_image`"},
      {"    container_image: /i.sif\n    bind_paths: [\"/a,/b\"]\n", "contains ',', which --bind reads as a separator"},
      {"    container_image: /i.sif\n    bind_paths: [scratch]\n", "\"scratch\" is not an absolute path"},
      {"    container_image: /i.sif\n    bind_paths: [\"/a:b\"]\n", "the path inside the container must be absolute"},
      {"    container_image: /i.sif\n    bind_paths: [\"/a:/b:rx\"]\n", "\"rx\" is not ro or rw"},
      {"    container_image: /i.sif\n    bind_paths: [\"/a:/b:ro:x\"]\n", "is not SRC, SRC:DEST or SRC:DEST:ro|rw"},
      {"    container_image: /i.sif\n    bind_paths: /scratch\n", "field `bind_paths`: expected a list of strings"},
  };
  for (const auto& c : cases) {
    INFO(c.fields);
    const auto message = error_for(with_fields("    mem: 1G\n" + c.fields));
    CHECK_THAT(message, Contains("/etc/clusters.yaml: profile p") && Contains(c.expected));
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("a YAML alias bomb or a self-containing alias in clusters.yaml is refused in one line with bounded work") {
  // Nine levels of nine aliases: 9^9 (387 million) nodes once expanded, in 20 lines of text.
  std::string bomb = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int level = 1; level <= 9; ++level) {
    bomb += fmt::format("a{0}: &a{0} [", level);
    for (int i = 0; i < 9; ++i) bomb += fmt::format("{}*a{}", i ? ", " : "", level - 1);
    bomb += "]\n";
  }
  const std::vector<std::string> documents = {
      bomb + "clusters:\n  p: {hostname_pattern: h, gpus_per_node: 1, mem: 1G, queue_limit: 1, max_array_len: 1}\n",
      bomb + "clusters:\n  p: {hostname_pattern: h, gpus_per_node: 1, mem: 1G, queue_limit: 1, max_array_len: 1, "
             "extra_sbatch: *a9}\n",
      "clusters: &loop\n  p: *loop\n",
      "clusters:\n  p: &p {hostname_pattern: h, setup_lines: [*p, *p]}\n",
  };
  std::vector<std::string> messages;
  for (const auto& document : documents) {
    INFO(document.substr(document.size() > 120 ? document.size() - 120 : 0));
    const auto started = std::chrono::steady_clock::now();
    const auto& message = messages.emplace_back(error_for(document));
    const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    CHECK(seconds < 10);  // bounded: about a million node visits, never the whole expansion
    CHECK(message.find('\n') == std::string::npos);
    CHECK_THAT(message, Contains("/etc/clusters.yaml"));
  }
  CHECK_THAT(messages[0], Contains("more than 1000000 nodes once its aliases are expanded"));
  CHECK_THAT(messages[2], Contains("more than 1000000 nodes"));
  // Aliases within bounds are ordinary YAML.
  const auto shared = parse_cluster_config(
      "defaults: &defaults [\"--qos=normal\"]\nclusters:\n  p:\n    hostname_pattern: h\n    gpus_per_node: 1\n"
      "    mem: 1G\n    queue_limit: 1\n    max_array_len: 1\n    extra_sbatch: *defaults\n",
      "c.yaml");
  CHECK(only_profile(shared).extra_sbatch == std::vector<std::string>{"--qos=normal"});
}

TEST_CASE("the first load says it created the copy, and a cache dir that cannot hold it fails in one line or falls back") {
  test::TempDir root;
  const auto cache = root / "new" / "cache";
  auto config = load_cluster_config(cache);
  CHECK(config.created);
  CHECK(config.not_created.empty());
  CHECK(config.path == cache / "clusters.yaml");
  CHECK(test::read_text(cache / "clusters.yaml") == std::string(bundled_cluster_config()));
  config = load_cluster_config(cache);
  CHECK_FALSE(config.created);

  // Unreachable (a file on the way) and unwritable (/proc/self takes no new files, not even from root).
  test::write_text(root / "file", "x");
  for (const auto& unusable : {root / "file" / "cache", std::filesystem::path("/proc/self")}) {
    INFO(unusable);
    try {
      load_cluster_config(unusable);
      FAIL("loaded");
    } catch (const Error& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Contains("cannot create " + (unusable / "clusters.yaml").string()) &&
                              Contains("--cache_dir or MILL_CACHE_DIR"));
      CHECK(message.find('\n') == std::string::npos);
    }
    const auto fallback = load_cluster_config(unusable, WithoutCopy::use_bundled);
    CHECK_FALSE(fallback.created);
    CHECK_THAT(fallback.not_created, Contains("cannot create " + (unusable / "clusters.yaml").string()));
    CHECK(fallback.profiles.back().name == "generic");
  }
  CHECK(test::read_text(root / "file") == "x");
  // A broken copy of the user's is never replaced by the fallback: its error is the answer.
  test::write_text(cache / "clusters.yaml", "clusters: [\n");
  CHECK_THROWS_AS(load_cluster_config(cache, WithoutCopy::use_bundled), Error);
  CHECK(test::read_text(cache / "clusters.yaml") == "clusters: [\n");
}
