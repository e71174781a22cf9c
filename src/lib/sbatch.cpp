#include "mill/sbatch.hpp"

#include <fmt/format.h>

#include "mill/text.hpp"
#include "mill/walltime.hpp"

namespace mill {

std::string shell_quote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string render_sbatch_script(const SbatchRequest& request) {
  const auto& profile = *request.profile;
  std::string script = "#!/bin/bash\n";
  auto directive = [&](const std::string& option) { script += "#SBATCH " + option + "\n"; };
  directive("--job-name=" + request.job_name);
  directive("--partition=" + profile.partition);
  if (!profile.account.empty()) directive("--account=" + profile.account);
  directive(fmt::format("--array=0-{}%{}", request.array_size - 1, profile.max_array_len));
  directive("--time=" + format_slurm_time(request.time_minutes));
  directive("--nodes=1");
  directive("--ntasks=1");
  directive(fmt::format("--cpus-per-task={}", profile.cpus_per_task));
  directive("--mem=" + profile.mem);
  if (profile.gpus_per_task > 0) {
    directive(profile.gpu_type.empty() ? fmt::format("--gres=gpu:{}", profile.gpus_per_task)
                                       : fmt::format("--gres=gpu:{}:{}", profile.gpu_type, profile.gpus_per_task));
  }
  // Logs are relative to the working directory (--chdir=<sweep dir>), so no user path appears in a directive.
  directive("--output=logs/%A_%a.out");
  directive("--error=logs/%A_%a.err");
  // The batch shell execs mill, so mill itself receives the warning signal and stops cleanly (exit 75).
  directive(fmt::format("--signal=B:USR1@{}", profile.signal_minutes * 60));
  for (const auto& option : profile.extra_sbatch) directive(option);
  script += "\nset -eu\n";
  for (const auto& line : profile.setup_lines) script += line + "\n";
  if (!request.venv_path.empty()) {
    script += "source " + shell_quote((request.venv_path / "bin" / "activate").string()) + "\n";
  }
  script += "exec " + shell_quote(request.mill_binary.string()) + " --output_dir " +
            shell_quote(request.output_dir.string()) + " --cache_dir " + shell_quote(request.cache_dir.string()) +
            " eval --manifest " + shell_quote(request.manifest.string()) + " --element \"$SLURM_ARRAY_TASK_ID\"";

  script += "\n";
  return script;
}

std::vector<std::string> sbatch_command(const SbatchRequest& request, const std::filesystem::path& script) {
  return {"sbatch", "--parsable", "--chdir=" + request.sweep_dir.string(), script.string()};
}

}  // namespace mill
