#pragma once
// Renders the sbatch script of one sweep's SLURM array. Every name a user chose (models, tasks, paths) reaches
// the worker through the manifest file or as a single-quoted shell word, never as shell code.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "mill/sweep/cluster.hpp"
#include "mill/sweep/resources.hpp"
#include "mill/base/shell.hpp"

namespace mill {

struct SbatchRequest {
  const ClusterProfile* profile = nullptr;
  std::string job_name = "mill";
  int first_element = 0;         // the array's indices are manifest elements first..first+array_size-1
  int array_size = 0;
  // GPUs, CPUs and memory of each element; absent: resource_shape(profile.gpus_per_task, profile).
  std::optional<ResourceShape> shape;
  int time_minutes = 0;
  std::filesystem::path mill_binary;
  std::filesystem::path output_dir;
  std::filesystem::path cache_dir;
  std::filesystem::path sweep_dir;      // the job's working directory: manifest and logs/ live here
  std::filesystem::path manifest;
  std::filesystem::path venv_path;      // empty: no activation (in a container: activated inside it)
  // Task paths, data directory and the jobs themselves travel in the manifest, not in the script.
};

// The script text. Safe to run with `sbatch --chdir=<sweep_dir> script`. With the profile's container_image, the
// worker runs through `<container_runtime> exec --bind ...`, the output dir bound too; an output dir that --bind
// cannot take (a ',' or ':' in it) throws mill::Error.
std::string render_sbatch_script(const SbatchRequest& request);

// The script of a sweep's continuation job: one CPU, a short limit, on the profile's partition and account, it
// runs `argv` (a `mill ... schedule ...` command that submits the rest of the sweep). Its log goes to
// logs/continue_%j.out under the sweep directory.
std::string render_continuation_script(const ClusterProfile& profile, const std::string& job_name,
                                       const std::vector<std::string>& argv);
inline constexpr int kContinuationMinutes = 20;

// The sbatch command line (argv) that submits the script with the sweep directory as working directory.
std::vector<std::string> sbatch_command(const SbatchRequest& request, const std::filesystem::path& script);

}  // namespace mill
