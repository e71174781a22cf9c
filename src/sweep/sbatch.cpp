#include "mill/sweep/sbatch.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/walltime.hpp"
#include "mill/base/shell.hpp"

namespace mill {

namespace {

// Whether a --bind entry already makes `path` visible inside the container at the same path.
bool bind_covers(const std::string& entry, const std::string& path) {
  const auto colon = entry.find(':');
  const auto source = entry.substr(0, colon);
  if (colon != std::string::npos) {
    const auto rest = entry.substr(colon + 1);
    if (rest.substr(0, rest.find(':')) != source) return false;  // mounted elsewhere inside
  }
  return path == source || (path.size() > source.size() && path.compare(0, source.size(), source) == 0 &&
                            (source.back() == '/' || path[source.size()] == '/'));
}

// The --bind entries: the profile's, and the output dir (the worker reads its manifest there and writes every
// result there) unless one of them covers it already.
std::vector<std::string> container_binds(const ClusterProfile& profile, const std::filesystem::path& output_dir) {
  auto binds = profile.bind_paths;
  const auto output = output_dir.string();
  const bool covered = std::any_of(binds.begin(), binds.end(), [&](const std::string& entry) { return bind_covers(entry, output); });
  if (!covered) {
    if (output.find_first_of(",:") != std::string::npos) {
      throw Error(fmt::format("--output_dir {} contains ',' or ':', which {} --bind reads as separators; profile {} runs "
                              "the worker in a container, so choose an output directory without them or list a "
                              "directory above it in bind_paths",
                              quote_value(output), profile.container_runtime, profile.name));
    }
    binds.push_back(output);
  }
  return binds;
}

// The start of every script of a sweep: #SBATCH lines for the job name, the profile's partition and account (else
// SLURM's defaults), `options` and the profile's extra_sbatch, then `set -eu` and the profile's setup lines.
std::string script_head(const ClusterProfile& profile, const std::string& job_name,
                        const std::vector<std::string>& options) {
  std::vector<std::string> directives = {"--job-name=" + job_name};
  if (!profile.partition.empty()) directives.push_back("--partition=" + profile.partition);
  if (!profile.account.empty()) directives.push_back("--account=" + profile.account);
  directives.insert(directives.end(), options.begin(), options.end());
  directives.insert(directives.end(), profile.extra_sbatch.begin(), profile.extra_sbatch.end());
  std::string script = "#!/bin/bash\n";
  for (const auto& directive : directives) script += "#SBATCH " + directive + "\n";
  script += "\nset -eu\n";
  for (const auto& line : profile.setup_lines) script += line + "\n";
  return script;
}

}  // namespace

std::string render_sbatch_script(const SbatchRequest& request) {
  const auto& profile = *request.profile;
  const bool container = !profile.container_image.empty();
  const auto shape = request.shape.value_or(resource_shape(profile.gpus_per_task, profile));
  const int last_element = request.first_element + request.array_size - 1;
  std::vector<std::string> options = {
      fmt::format("--array={}-{}%{}", request.first_element, last_element, profile.max_array_len),
      "--time=" + format_slurm_time(request.time_minutes), "--nodes=1", "--ntasks=1",
      fmt::format("--cpus-per-task={}", shape.cpus)};
  if (!shape.mem.empty()) options.push_back("--mem=" + shape.mem);
  if (shape.gpus > 0) {
    options.push_back(profile.gpu_type.empty() ? fmt::format("--gres=gpu:{}", shape.gpus)
                                               : fmt::format("--gres=gpu:{}:{}", profile.gpu_type, shape.gpus));
  }
  if (!shape.mem_per_gpu.empty()) options.push_back("--mem-per-gpu=" + shape.mem_per_gpu);
  // Logs are relative to the working directory (--chdir=<sweep dir>), so no user path appears in a directive.
  options.insert(options.end(), {"--output=logs/%A_%a.out", "--error=logs/%A_%a.err"});
  // The batch shell execs mill (or the container runtime, which passes signals on to mill), so mill itself
  // receives the warning signal and stops cleanly (exit 75).
  options.push_back(fmt::format("--signal=B:USR1@{}", profile.signal_minutes * 60));
  auto script = script_head(profile, request.job_name, options);
  if (!request.venv_path.empty()) {
    if (container) {
      // The runtime does not pass the host's PATH into the container, so sourcing bin/activate out here would not
      // reach mill; these variables do inside what activate does: VIRTUAL_ENV set, its bin/ first on PATH.
      const auto prefix = profile.container_runtime == "singularity" ? "SINGULARITYENV_" : "APPTAINERENV_";
      script += fmt::format("export {}VIRTUAL_ENV={}\n", prefix, shell_quote(request.venv_path.string()));
      script += fmt::format("export {}PREPEND_PATH={}\n", prefix, shell_quote((request.venv_path / "bin").string()));
    } else {
      script += "source " + shell_quote((request.venv_path / "bin" / "activate").string()) + "\n";
    }
  }
  script += "exec ";
  if (container) {
    std::vector<std::string> binds;
    for (const auto& entry : container_binds(profile, request.output_dir)) binds.push_back(shell_quote(entry));
    script += profile.container_runtime + " exec --bind " + join(binds, ",") + " " + shell_quote(profile.container_image) + " ";
  }
  script += shell_quote(request.mill_binary.string()) + " --output_dir " + shell_quote(request.output_dir.string()) +
            " --cache_dir " + shell_quote(request.cache_dir.string()) + " eval --manifest " +
            shell_quote(request.manifest.string()) + " --element \"$SLURM_ARRAY_TASK_ID\"\n";
  return script;
}

std::string render_continuation_script(const ClusterProfile& profile, const std::string& job_name,
                                       const std::vector<std::string>& argv) {
  auto script = script_head(profile, job_name,
                            {"--time=" + format_slurm_time(kContinuationMinutes), "--nodes=1", "--ntasks=1",
                             "--cpus-per-task=1", "--mem=2G", "--output=logs/continue_%j.out",
                             "--error=logs/continue_%j.out"});
  std::vector<std::string> words;
  for (const auto& word : argv) words.push_back(shell_quote(word));
  script += "exec " + join(words, " ") + "\n";
  return script;
}

std::vector<std::string> sbatch_command(const SbatchRequest& request, const std::filesystem::path& script) {
  return {"sbatch", "--parsable", "--chdir=" + request.sweep_dir.string(), script.string()};
}

}  // namespace mill
