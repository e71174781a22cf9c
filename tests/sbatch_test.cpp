#include <catch2/catch.hpp>

#include "mill/sweep/cluster.hpp"
#include "mill/base/error.hpp"
#include "mill/sweep/sbatch.hpp"
#include "support.hpp"

using namespace mill;
using Catch::Matchers::Contains;

TEST_CASE("shell_quote round-trips hostile strings through a real shell without executing them") {
  test::TempDir dir;
  const auto canary = dir / "canary";
  const std::vector<std::string> values = {
      "plain", "with space", "it's", "$(touch " + canary.string() + ")", "`touch " + canary.string() + "`",
      "a\nb", "\"double\"", "back\\slash", "semi;colon && true", "$HOME", "*", std::string("non-utf8 \xff\xfe"), ""};
  for (const auto& value : values) {
    INFO(value);
    const auto result = test::run_program({"bash", "-c", "printf '%s' " + shell_quote(value)});
    CHECK(result.exit_code == 0);
    CHECK(result.out == value);
  }
  CHECK_FALSE(std::filesystem::exists(canary));
}

TEST_CASE("the array script carries the profile's resources and only quoted user paths") {
  ClusterProfile profile;
  profile.name = "p";
  profile.partition = "gpu";
  profile.account = "proj";
  profile.gpu_type = "a100";
  profile.gpus_per_task = 2;
  profile.mem = "64G";
  profile.max_array_len = 5;
  profile.cpus_per_task = 12;
  profile.signal_minutes = 7;
  profile.extra_sbatch = {"--qos=high"};
  profile.setup_lines = {"module load cuda"};
  SbatchRequest request;
  request.profile = &profile;
  request.array_size = 30;
  request.time_minutes = 105;
  request.mill_binary = "/opt/mill bin/mill";
  request.output_dir = "/scratch/it's results";
  request.cache_dir = "/home/u/.cache/mill";
  request.sweep_dir = "/scratch/it's results/sweeps/s1";
  request.manifest = "/scratch/it's results/sweeps/s1/manifest.json";
  request.venv_path = "/home/u/venv $(x)";
  const auto script = render_sbatch_script(request);
  CHECK_THAT(script, Contains("#SBATCH --partition=gpu\n") && Contains("#SBATCH --account=proj\n") &&
                         Contains("#SBATCH --array=0-29%5\n") && Contains("#SBATCH --time=01:45:00\n") &&
                         Contains("#SBATCH --gres=gpu:a100:2\n") && Contains("#SBATCH --mem=64G\n") &&
                         Contains("#SBATCH --cpus-per-task=12\n") && Contains("#SBATCH --signal=B:USR1@420\n") &&
                         Contains("#SBATCH --qos=high\n") && Contains("module load cuda\n") &&
                         Contains("source '/home/u/venv $(x)/bin/activate'\n") &&
                         Contains("exec '/opt/mill bin/mill' --output_dir '/scratch/it'\\''s results'") &&
                         Contains("--element \"$SLURM_ARRAY_TASK_ID\""));
  // User paths never appear in #SBATCH directives (sbatch would split them).
  std::istringstream lines(script);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("#SBATCH", 0) == 0) CHECK(line.find("results") == std::string::npos);
  }
  const auto command = sbatch_command(request, request.sweep_dir / "job.sbatch");
  CHECK(command[0] == "sbatch");
  CHECK(command[2] == "--chdir=/scratch/it's results/sweeps/s1");

  profile.gpus_per_task = 0;
  CHECK(render_sbatch_script(request).find("--gres") == std::string::npos);
  profile.gpus_per_task = 1;
  profile.gpu_type = "";
  CHECK_THAT(render_sbatch_script(request), Contains("#SBATCH --gres=gpu:1\n"));
}

namespace {
ClusterProfile plain_profile() {
  ClusterProfile profile;
  profile.name = "p";
  profile.gpus_per_task = 1;
  profile.mem = "64G";
  profile.max_array_len = 2;
  return profile;
}

SbatchRequest request_for(const ClusterProfile& profile) {
  SbatchRequest request;
  request.profile = &profile;
  request.array_size = 3;
  request.time_minutes = 30;
  request.mill_binary = "/opt/mill/bin/mill";
  request.output_dir = "/scratch/results";
  request.cache_dir = "/home/u/.cache/mill";
  request.sweep_dir = "/scratch/results/sweeps/s1";
  request.manifest = "/scratch/results/sweeps/s1/manifest.json";
  return request;
}

std::string last_line(const std::string& script) {
  const auto end = script.find_last_not_of('\n');
  return script.substr(script.rfind('\n', end) + 1, end - script.rfind('\n', end));
}
}  // namespace

TEST_CASE("without a partition the script leaves the choice to SLURM, and mem_per_gpu replaces --mem") {
  auto profile = plain_profile();
  auto script = render_sbatch_script(request_for(profile));
  CHECK(script.find("--partition") == std::string::npos);
  CHECK_THAT(script, Contains("#SBATCH --mem=64G\n"));
  CHECK(script.find("--mem-per-gpu") == std::string::npos);
  profile.mem = "";
  profile.mem_per_gpu = "40G";
  script = render_sbatch_script(request_for(profile));
  CHECK_THAT(script, Contains("#SBATCH --mem-per-gpu=40G\n") && Contains("#SBATCH --gres=gpu:1\n"));
  CHECK(script.find("--mem=") == std::string::npos);
}

TEST_CASE("a container profile runs the worker through the runtime, every value quoted, the output dir bound") {
  auto profile = plain_profile();
  profile.container_image = "/images/it's mill.sif";
  profile.bind_paths = {"/models", "/data $(x):/data:ro"};
  auto request = request_for(profile);
  auto script = render_sbatch_script(request);
  CHECK(last_line(script) ==
        "exec apptainer exec --bind '/models','/data $(x):/data:ro','/scratch/results' '/images/it'\\''s mill.sif' "
        "'/opt/mill/bin/mill' --output_dir '/scratch/results' --cache_dir '/home/u/.cache/mill' eval --manifest "
        "'/scratch/results/sweeps/s1/manifest.json' --element \"$SLURM_ARRAY_TASK_ID\"");

  // A virtual environment is activated inside the container (the runtime does not pass PATH in).
  request.venv_path = "/home/u/venv 'x'";
  script = render_sbatch_script(request);
  CHECK_THAT(script, Contains("export APPTAINERENV_VIRTUAL_ENV='/home/u/venv '\\''x'\\'''\n") &&
                         Contains("export APPTAINERENV_PREPEND_PATH='/home/u/venv '\\''x'\\''/bin'\n"));
  CHECK(script.find("source ") == std::string::npos);
  profile.container_runtime = "singularity";
  script = render_sbatch_script(request);
  CHECK_THAT(script, Contains("export SINGULARITYENV_VIRTUAL_ENV=") && Contains("\nexec singularity exec --bind "));

  // A bind that already covers the output dir at the same path is enough; one that mounts it elsewhere is not.
  profile.bind_paths = {"/scratch"};
  CHECK_THAT(last_line(render_sbatch_script(request)), Contains("--bind '/scratch' '/images"));
  profile.bind_paths = {"/scratch/results:/scratch/results:rw"};
  CHECK_THAT(last_line(render_sbatch_script(request)), Contains("--bind '/scratch/results:/scratch/results:rw' '/images"));
  profile.bind_paths = {"/scratch:/mnt"};
  CHECK_THAT(last_line(render_sbatch_script(request)), Contains("--bind '/scratch:/mnt','/scratch/results' '/images"));
  profile.bind_paths = {"/scratch/res"};  // a sibling with a common prefix covers nothing
  CHECK_THAT(last_line(render_sbatch_script(request)), Contains("--bind '/scratch/res','/scratch/results' '/images"));

  // An output dir that --bind cannot take is refused in one line, unless a bind path covers it.
  profile.bind_paths = {};
  request.output_dir = "/scratch/a,b:c";
  try {
    render_sbatch_script(request);
    FAIL("rendered");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("--output_dir \"/scratch/a,b:c\" contains ',' or ':'") && Contains("profile p"));
  }
  profile.bind_paths = {"/scratch"};
  CHECK_THAT(last_line(render_sbatch_script(request)), Contains("--bind '/scratch' '/images"));
}
