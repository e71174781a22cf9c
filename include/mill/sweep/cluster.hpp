#pragma once
// Cluster profiles: the bundled data/clusters.yaml, copied on first run to <cache_dir>/clusters.yaml (the copy
// users edit), and the choice of a profile by hostname glob or by name. Fields are documented in
// docs/clusters.md.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mill {

struct ClusterProfile {
  std::string name;
  std::string hostname_pattern;  // shell glob matched against the login node's hostname
  std::string partition;         // may be empty: no --partition line, SLURM's default partition
  std::string account;           // may be empty: no --account line
  std::string gpu_type;          // gres label, e.g. "a100"; empty: --gres=gpu:N
  int gpus_per_node = 0;
  int gpus_per_task = 0;         // GPUs one array element asks for; defaults to gpus_per_node
  std::string mem;               // --mem as sbatch takes it, e.g. "64G" or "0"; empty when mem_per_gpu is set
  std::string mem_per_gpu;       // --mem-per-gpu, e.g. "40G"; empty when mem is set
  int queue_limit = 0;           // cap on this user's jobs queued at once
  int max_array_len = 0;         // the %N throttle: array elements running at once
  // Optional fields (defaults keep old files valid).
  int max_time_minutes = 24 * 60;     // the partition's time limit
  int cpus_per_task = 8;
  int max_array_size = 1001;          // the site's MaxArraySize (array indices must stay below it)
  int signal_minutes = 5;             // SIGUSR1 this long before the time limit: finish, flush, exit 75
  double gpu_memory_bytes = 0;        // memory of one GPU (`gpu_memory: 80G`); 0: known from gpu_type, or unchecked
  int target_element_minutes = 4 * 60;  // what the packer aims one array element's work at (docs/schedule.md)
  std::vector<std::string> extra_sbatch;  // extra sbatch options, e.g. "--qos=normal"
  std::vector<std::string> setup_lines;   // shell lines run before mill (module load ...): trusted, from your file
  std::filesystem::path venv_path;        // the workers' virtual environment when schedule gets no --venv_path
  // A container image runs the worker through `<container_runtime> exec --bind ... IMAGE mill ...`.
  std::string container_image;            // an image path or URI (docker://...); empty: no container
  std::string container_runtime = "apptainer";  // or "singularity"
  std::vector<std::string> bind_paths;    // each "SRC[:DEST[:ro|rw]]", given to --bind
};

struct ClusterConfig {
  std::filesystem::path path;  // where it was read from
  std::vector<ClusterProfile> profiles;
  // load_cluster_config copied the bundled file to `path` just now: the caller tells the user to edit it.
  bool created = false;
  // Not empty: <cache_dir>/clusters.yaml does not exist and could not be created (this says why); `profiles` are
  // the bundled ones (only with WithoutCopy::use_bundled).
  std::string not_created;
};

// The profiles bundled with the binary (data/clusters.yaml).
std::string_view bundled_cluster_config();

// Parses clusters.yaml text (top-level key `clusters:`, or `profiles:` as older files have it); errors name
// `source`, the profile and the field.
ClusterConfig parse_cluster_config(std::string_view text, const std::filesystem::path& source);

// What load_cluster_config does when there is no <cache_dir>/clusters.yaml and it cannot be created (a read-only
// or unreachable cache dir): fail with one line, or go on with the bundled profiles (for a dry run).
enum class WithoutCopy { fail, use_bundled };

// Reads <cache_dir>/clusters.yaml, first copying the bundled file there if it does not exist yet. An existing
// copy is never overwritten.
ClusterConfig load_cluster_config(const std::filesystem::path& cache_dir, WithoutCopy without_copy = WithoutCopy::fail);

// A memory size in one of the forms sbatch accepts (64G, 64g, 64GB, 64000M, 64000 = megabytes, 0), spelled as
// sbatch takes it: digits without leading zeros and an upper-case unit ("64G", "64000M"; "0" stays "0").
// nullopt when `text` is none of these forms.
std::optional<std::string> normalize_slurm_memory(std::string_view text);

// Bytes of a memory size as normalize_slurm_memory spells it ("80G" → 80 GiB); 0 for "0".
double slurm_memory_bytes(std::string_view normalized);

struct ProfileChoice {
  const ClusterProfile* profile = nullptr;
  std::string reason;  // e.g. hostname "jwlogin03" matches "jwlogin*"
};

// `selector` is "auto" (first profile whose hostname_pattern matches `hostname` or its short form) or a
// profile name. No match throws mill::Error naming the hostname and the profiles.
ProfileChoice choose_profile(const ClusterConfig& config, const std::string& selector, const std::string& hostname);

// The machine's hostname; $MILL_HOSTNAME overrides it (for tests and for planning on behalf of another host).
std::string current_hostname();

}  // namespace mill
