#include "mill/sweep/cluster.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <cctype>
#include <fmt/format.h>
#include <map>
#include <regex>

#include "mill/base/atomic_file.hpp"
#include "mill/base/embedded.hpp"
#include "mill/base/error.hpp"
#include "mill/base/text.hpp"
#include "mill/sweep/walltime.hpp"
#include "mill/base/yaml_limits.hpp"
#include "mill/base/host.hpp"

namespace mill {

std::string_view bundled_cluster_config() {
  static const auto content = embedded::find("clusters.yaml");
  return content ? *content : std::string_view();
}

std::optional<std::string> normalize_slurm_memory(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  auto number = text.substr(0, digits);
  auto unit = text.substr(digits);
  while (number.size() > 1 && number.front() == '0') number.remove_prefix(1);
  if (number.size() > 9) return std::nullopt;  // past a petabyte even in megabytes: a typo
  char letter = 'M';                           // sbatch's unit when none is given
  if (!unit.empty()) {
    letter = static_cast<char>(std::toupper(static_cast<unsigned char>(unit.front())));
    if (std::string_view("KMGT").find(letter) == std::string_view::npos) return std::nullopt;
    unit.remove_prefix(1);
    if (!unit.empty() && unit != "B" && unit != "b") return std::nullopt;
  }
  if (number == "0") return std::string("0");  // --mem=0: all of the node's memory
  return std::string(number) + letter;
}

double slurm_memory_bytes(std::string_view normalized) {
  if (normalized.empty() || normalized == "0") return 0;
  const char unit = normalized.back();
  const double number = std::stod(std::string(normalized.substr(0, normalized.size() - 1)));
  const double scale = unit == 'K' ? 1024.0 : unit == 'M' ? 1024.0 * 1024 : unit == 'G' ? 1024.0 * 1024 * 1024
                                                                                         : 1024.0 * 1024 * 1024 * 1024;
  return number * scale;
}

namespace {

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {
      "hostname_pattern", "partition",      "account",        "gpu_type",     "gpus_per_node",   "gpus_per_task",
      "mem",              "mem_per_gpu",    "queue_limit",    "max_array_len", "max_time",       "cpus_per_task",
      "max_array_size",   "signal_minutes", "extra_sbatch",   "setup_lines",  "venv_path",       "container_image",
      "container_runtime", "bind_paths",   "gpu_memory",     "target_element_time"};
  return fields;
}

const char* const kMemoryForms =
    "digits with an optional unit K, M, G or T (a trailing B and lower case are fine), e.g. 64G, 64GB, 512000M";

// Line breaks end an #SBATCH or shell line early; other control bytes (escapes, bells) are never meant. Tabs are
// allowed (whitespace between sbatch options).
bool has_control_byte(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return (byte < 0x20 && byte != '\t') || byte == 0x7f;
  });
}

// One line of UTF-8 text: what every profile value must be (profiles are recorded in JSON, which needs UTF-8).
bool one_line_of_text(const std::string& text) { return !has_control_byte(text) && is_valid_utf8(text); }

// yaml-cpp keeps every entry of a mapping, a repeated key too, and node[key] finds only the first: without this
// check the value a user edited last could be silently ignored.
struct RepeatedKey {
  std::string key;
  std::string lines;  // "lines 3 and 9"
};

std::optional<RepeatedKey> repeated_key(const YAML::Node& mapping) {
  std::map<std::string, int> first_line;
  for (const auto& item : mapping) {
    if (!item.first.IsScalar()) continue;  // refused elsewhere with its own message
    const int line = item.first.Mark().line + 1;
    const auto [seen, inserted] = first_line.emplace(item.first.Scalar(), line);
    if (!inserted) {
      return RepeatedKey{item.first.Scalar(), seen->second == line ? fmt::format("both on line {}", line)
                                                                   : fmt::format("lines {} and {}", seen->second, line)};
    }
  }
  return std::nullopt;
}

class ProfileReader {
 public:
  ProfileReader(const YAML::Node& node, std::string where) : node_(node), where_(std::move(where)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw Error(fmt::format("{}, field `{}`: {}", where_, field, problem));
  }

  bool given(const std::string& field) const {
    const auto value = node_[field];
    return value && !value.IsNull();
  }

  std::optional<std::string> scalar(const std::string& field) const {
    const auto value = node_[field];
    if (!value || value.IsNull()) return std::nullopt;
    if (!value.IsScalar()) fail(field, "expected a single value");
    const auto& text = value.Scalar();
    if (!one_line_of_text(text)) {
      fail(field, fmt::format("{} contains a line break, control character or non-UTF-8 byte (a value must be one line "
                              "of UTF-8 text)",
                              quote_value(text)));
    }
    return text;
  }

  std::string required_string(const std::string& field) const {
    auto value = scalar(field);
    if (!value || value->empty()) fail(field, "missing (required)");
    return *value;
  }

  int integer(const std::string& field, int minimum, std::optional<int> fallback) const {
    auto value = scalar(field);
    if (!value) {
      if (fallback) return *fallback;
      fail(field, fmt::format("missing (required; an integer ≥ {})", minimum));
    }
    char* end = nullptr;
    errno = 0;
    const long number = std::strtol(value->c_str(), &end, 10);
    if (value->empty() || *end != '\0' || errno != 0 || number < minimum || number > 1'000'000) {
      fail(field, fmt::format("{} is not an integer ≥ {}", quote_value(*value), minimum));
    }
    return static_cast<int>(number);
  }

  std::vector<std::string> lines(const std::string& field) const {
    const auto value = node_[field];
    std::vector<std::string> out;
    if (!value || value.IsNull()) return out;
    if (!value.IsSequence()) fail(field, "expected a list of strings");
    for (const auto& item : value) {
      if (!item.IsScalar()) fail(field, "expected a list of strings");
      if (!one_line_of_text(item.Scalar())) {
        fail(field, fmt::format("entry {} contains a line break, control character or non-UTF-8 byte (each entry must "
                                "be one line of UTF-8 text)",
                                quote_value(item.Scalar())));
      }
      out.push_back(item.Scalar());
    }
    return out;
  }

  // sbatch's memory forms, normalised; `allow_zero` for --mem, where 0 means all of the node.
  std::optional<std::string> memory(const std::string& field, bool allow_zero) const {
    const auto value = scalar(field);
    if (!value) return std::nullopt;
    const auto normalized = normalize_slurm_memory(*value);
    if (!normalized) {
      fail(field, fmt::format("{} is not a memory size sbatch accepts: {}{}", quote_value(*value), kMemoryForms,
                              allow_zero ? ", or 0 for all of the node's memory" : ""));
    }
    if (*normalized == "0" && !allow_zero) fail(field, "0 is not a memory size here (expected more than 0, e.g. 40G)");
    return normalized;
  }

  // A host path the job uses: absolute, or ~/... under the home directory. The job runs in its sweep directory,
  // where a relative path would name something else.
  std::string host_path(const std::string& field, const std::string& text) const {
    if (text == "~" || text.rfind("~/", 0) == 0) {
      const char* home = std::getenv("HOME");
      if (!home || !*home) fail(field, fmt::format("{} starts with ~, but HOME is not set", quote_value(text)));
      return std::string(home) + text.substr(1);
    }
    if (text.empty() || text.front() != '/') {
      fail(field, fmt::format("{} is not an absolute path (write /path or ~/path: the job runs in its sweep directory)",
                              quote_value(text)));
    }
    return text;
  }

  std::string path(const std::string& field) const {
    const auto value = scalar(field);
    return value ? host_path(field, *value) : std::string();
  }

 private:
  const YAML::Node& node_;
  std::string where_;
};

// An image given as a URI (docker://..., library://..., oras://...) is for the runtime to fetch; anything else
// is a file on the cluster.
bool is_image_uri(const std::string& image) {
  static const std::regex uri("[A-Za-z][A-Za-z0-9+.-]*://.+");
  return std::regex_match(image, uri);
}

// One --bind entry: SRC, SRC:DEST or SRC:DEST:ro|rw. Entries are joined with commas, so neither separator may
// appear inside a path.
std::string bind_entry(const ProfileReader& reader, const std::string& entry) {
  const std::string forms = "SRC, SRC:DEST or SRC:DEST:ro|rw, with absolute paths";
  if (entry.find(',') != std::string::npos) {
    reader.fail("bind_paths", fmt::format("{} contains ',', which --bind reads as a separator (give each path as its "
                                          "own list entry; a path with a comma cannot be bound)",
                                          quote_value(entry)));
  }
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const auto colon = entry.find(':', start);
    parts.push_back(entry.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() > 3) reader.fail("bind_paths", fmt::format("{} is not {}", quote_value(entry), forms));
  auto bound = reader.host_path("bind_paths", parts[0]);
  if (parts.size() >= 2) {
    if (parts[1].empty() || parts[1].front() != '/') {
      reader.fail("bind_paths", fmt::format("{}: the path inside the container must be absolute ({})", quote_value(entry), forms));
    }
    bound += ":" + parts[1];
  }
  if (parts.size() == 3) {
    if (parts[2] != "ro" && parts[2] != "rw") {
      reader.fail("bind_paths", fmt::format("{}: {} is not ro or rw ({})", quote_value(entry), quote_value(parts[2]), forms));
    }
    bound += ":" + parts[2];
  }
  return bound;
}

ClusterProfile read_profile(const std::string& name, const YAML::Node& node, const std::filesystem::path& source) {
  const auto where = fmt::format("{}: profile {}", source.string(), name);
  if (!node.IsMap()) throw Error(fmt::format("{}: expected a mapping of fields", where));
  ProfileReader reader(node, where);
  for (const auto& item : node) {
    // A YAML key can be a list or mapping (`? [a, b]`); as<std::string> would throw a YAML exception.
    if (!item.first.IsScalar()) throw Error(fmt::format("{}: field names must be plain words", where));
    const auto field = item.first.as<std::string>();
    if (std::find(known_fields().begin(), known_fields().end(), field) == known_fields().end()) {
      const auto suggestions = closest_names(field, known_fields(), 1);
      reader.fail(field, "unknown field" + (suggestions.empty() ? fmt::format(" (known: {})", join(known_fields(), ", "))
                                                                : fmt::format("; did you mean `{}`?", suggestions[0])));
    }
  }
  if (const auto repeated = repeated_key(node)) {
    reader.fail(repeated->key, fmt::format("given twice ({}); keep one", repeated->lines));
  }
  ClusterProfile profile;
  profile.name = name;
  profile.hostname_pattern = reader.required_string("hostname_pattern");
  // Values that go into #SBATCH lines are restricted to characters sbatch never splits or interprets.
  static const std::regex slurm_name("[A-Za-z0-9_.,+-]*");
  profile.partition = reader.scalar("partition").value_or("");
  if (!std::regex_match(profile.partition, slurm_name)) {
    reader.fail("partition", fmt::format("{} is not a partition name (letters, digits, '_', '-', '.', ','; leave it "
                                         "out for the cluster's default partition)",
                                         quote_value(profile.partition)));
  }
  profile.account = reader.scalar("account").value_or("");
  if (!std::regex_match(profile.account, slurm_name)) {
    reader.fail("account", fmt::format("{} is not an account name (letters, digits, '_', '-', '.')", quote_value(profile.account)));
  }
  profile.gpu_type = reader.scalar("gpu_type").value_or("");
  static const std::regex label("[A-Za-z0-9_.-]*");
  if (!std::regex_match(profile.gpu_type, label)) {
    reader.fail("gpu_type", fmt::format("{} is not a gres label (letters, digits, '_', '-', '.')", quote_value(profile.gpu_type)));
  }
  profile.gpus_per_node = reader.integer("gpus_per_node", 0, std::nullopt);
  profile.gpus_per_task = reader.integer("gpus_per_task", 0, profile.gpus_per_node);
  if (profile.gpus_per_task > profile.gpus_per_node) {
    reader.fail("gpus_per_task", fmt::format("{} is more than gpus_per_node ({})", profile.gpus_per_task, profile.gpus_per_node));
  }
  // sbatch takes one of --mem (per node) and --mem-per-gpu, never both.
  if (reader.given("mem") && reader.given("mem_per_gpu")) {
    reader.fail("mem_per_gpu", "given together with `mem`; keep one (sbatch takes --mem per node or --mem-per-gpu, not both)");
  }
  profile.mem = reader.memory("mem", true).value_or("");
  profile.mem_per_gpu = reader.memory("mem_per_gpu", false).value_or("");
  if (profile.mem.empty() && profile.mem_per_gpu.empty()) {
    reader.fail("mem", fmt::format("missing (required unless `mem_per_gpu` is given: {}, or 0 for all of the node's "
                                   "memory)",
                                   kMemoryForms));
  }
  if (!profile.mem_per_gpu.empty() && profile.gpus_per_task == 0) {
    reader.fail("mem_per_gpu", "needs GPUs, but gpus_per_task is 0 (an element would ask for no memory); use `mem`");
  }
  profile.queue_limit = reader.integer("queue_limit", 1, std::nullopt);
  profile.max_array_len = reader.integer("max_array_len", 1, std::nullopt);
  if (auto time = reader.scalar("max_time")) {
    profile.max_time_minutes = parse_slurm_time(*time);
    if (profile.max_time_minutes <= 0) {
      reader.fail("max_time", fmt::format("{} is not a SLURM time: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S with minutes and "
                                          "seconds below 60 and hours after a day count below 24, e.g. 24:00:00, "
                                          "2-00:00:00 or 90",
                                          quote_value(*time)));
    }
  }
  profile.cpus_per_task = reader.integer("cpus_per_task", 1, 8);
  profile.max_array_size = reader.integer("max_array_size", 2, 1001);
  profile.signal_minutes = reader.integer("signal_minutes", 1, 5);
  if (profile.signal_minutes >= profile.max_time_minutes) {
    // The signal warns of the time limit; at or past it, it would come before any work is done.
    reader.fail("signal_minutes", fmt::format("{}{} minute(s) is not below max_time ({} minutes); lower signal_minutes "
                                              "or raise max_time",
                                              reader.given("signal_minutes") ? "" : "the default ", profile.signal_minutes,
                                              profile.max_time_minutes));
  }
  if (const auto memory = reader.memory("gpu_memory", false)) profile.gpu_memory_bytes = slurm_memory_bytes(*memory);
  if (auto time = reader.scalar("target_element_time")) {
    profile.target_element_minutes = parse_slurm_time(*time);
    if (profile.target_element_minutes <= 0) {
      reader.fail("target_element_time", fmt::format("{} is not a SLURM time (e.g. 4:00:00 or 240)", quote_value(*time)));
    }
  }
  profile.extra_sbatch = reader.lines("extra_sbatch");
  for (const auto& option : profile.extra_sbatch) {
    if (option.rfind("--", 0) != 0) {
      reader.fail("extra_sbatch", fmt::format("{} is not an sbatch option starting with --", quote_value(option)));
    }
  }
  profile.setup_lines = reader.lines("setup_lines");
  profile.venv_path = reader.path("venv_path");

  if (const auto image = reader.scalar("container_image"); image && !image->empty()) {
    profile.container_image = is_image_uri(*image) ? *image : reader.host_path("container_image", *image);
  }
  for (const auto* field : {"container_runtime", "bind_paths"}) {
    if (reader.given(field) && profile.container_image.empty()) {
      reader.fail(field, "needs `container_image` (the image the worker runs in)");
    }
  }
  if (const auto runtime = reader.scalar("container_runtime")) {
    if (*runtime != "apptainer" && *runtime != "singularity") {
      reader.fail("container_runtime", fmt::format("{} is not apptainer or singularity", quote_value(*runtime)));
    }
    profile.container_runtime = *runtime;
  }
  for (const auto& entry : reader.lines("bind_paths")) profile.bind_paths.push_back(bind_entry(reader, entry));
  return profile;
}

// The profiles mapping under the top-level key, which is `clusters:` (the documented spelling) or `profiles:`
// (older files); with both, which one the user edits is unclear, so that is refused.
std::pair<YAML::Node, std::string> profiles_node(const YAML::Node& root, const std::filesystem::path& source) {
  if (!root.IsMap()) {
    throw Error(fmt::format("{}: expected a top-level `clusters:` mapping of profile names to fields", source.string()));
  }
  if (const auto repeated = repeated_key(root)) {
    throw Error(fmt::format("{}: top-level key {} is given twice ({}); keep one", source.string(),
                            quote_value(repeated->key), repeated->lines));
  }
  const auto clusters = root["clusters"];
  const auto profiles = root["profiles"];
  if (clusters && profiles) {
    throw Error(fmt::format("{}: both `clusters:` and `profiles:` are given; keep one (`clusters:`, the documented key; "
                            "`profiles:` is the older spelling)",
                            source.string()));
  }
  if (!clusters && !profiles) {
    throw Error(fmt::format("{}: expected a top-level `clusters:` mapping of profile names to fields", source.string()));
  }
  const std::string key = clusters ? "clusters" : "profiles";
  const auto node = clusters ? clusters : profiles;
  if (!node.IsMap()) {
    throw Error(fmt::format("{}: `{}:` must be a mapping of profile names to fields", source.string(), key));
  }
  return {node, key};
}

}  // namespace

ClusterConfig parse_cluster_config(std::string_view text, const std::filesystem::path& source) {
  YAML::Node loaded;
  try {
    loaded = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("{}: invalid YAML at line {}, column {}: {}", source.string(), e.mark.line + 1,
                            e.mark.column + 1, e.msg));
  }
  check_yaml_size(loaded, source.string());
  const YAML::Node& root = loaded;  // const: looking a key up never adds it
  const auto [profiles, key] = profiles_node(root, source);
  ClusterConfig config;
  config.path = source;
  for (const auto& item : profiles) {
    if (!item.first.IsScalar())
      throw Error(fmt::format("{}: profile names must be plain words, not a list or mapping", source.string()));
    const auto name = item.first.as<std::string>();
    if (name.empty() || name.find_first_of(" \t\n\r'\"$`\\") != std::string::npos || !one_line_of_text(name)) {
      throw Error(fmt::format("{}: profile name {} must not contain spaces, quotes or shell characters",
                              source.string(), quote_value(name)));
    }
  }
  if (const auto repeated = repeated_key(profiles)) {
    throw Error(fmt::format("{}: profile {} is defined twice ({}); keep one (--cluster and hostname matching would "
                            "only ever see the first)",
                            source.string(), repeated->key, repeated->lines));
  }
  for (const auto& item : profiles) {
    config.profiles.push_back(read_profile(item.first.as<std::string>(), item.second, source));
  }
  if (config.profiles.empty()) throw Error(fmt::format("{}: `{}` is empty (expected at least one profile)", source.string(), key));
  return config;
}

namespace {

// Copies the bundled profiles to `path` unless a file is there already. Returns an empty string when `path` exists
// afterwards (`created` says whether this call made it), else why it could not be created.
std::string copy_bundled_profiles(const std::filesystem::path& cache_dir, const std::filesystem::path& path, bool& created) {
  std::error_code error;
  std::filesystem::create_directories(cache_dir, error);
  if (error) return error.message();
  if (::access(cache_dir.c_str(), W_OK) != 0) return std::strerror(errno);
  // Write a temporary file and hard-link it into place: link() fails if the file appeared meanwhile, so a copy
  // the user already has is never replaced.
  const auto temporary = cache_dir / fmt::format(".clusters.yaml.{}", static_cast<long>(::getpid()));
  try {
    write_file_atomically(temporary, bundled_cluster_config());
  } catch (const Error& e) {
    return e.what();
  }
  std::string problem;
  if (::link(temporary.c_str(), path.c_str()) == 0) {
    created = true;
  } else if (errno != EEXIST) {
    problem = std::strerror(errno);
  }
  std::filesystem::remove(temporary, error);
  return problem;
}

}  // namespace

ClusterConfig load_cluster_config(const std::filesystem::path& cache_dir, WithoutCopy without_copy) {
  const auto path = cache_dir / "clusters.yaml";
  std::optional<std::string> text;
  try {
    text = read_file_if_exists(path);
  } catch (const Error&) {
    // A file that is there but unreadable is the user's to fix. When even looking fails (a directory on the way
    // is not searchable), the cache dir is unreachable: creating the copy fails below and says why.
    struct stat info {};
    if (::lstat(path.c_str(), &info) == 0 || errno != EACCES) throw;
  }
  bool created = false;
  if (!text) {
    const auto problem = copy_bundled_profiles(cache_dir, path, created);
    if (!problem.empty()) {
      const auto not_created = fmt::format("cannot create {} ({})", path.string(), problem);
      if (without_copy == WithoutCopy::fail) {
        throw Error(fmt::format("{}: mill keeps its cluster profiles there; make the directory writable or choose "
                                "another with --cache_dir or MILL_CACHE_DIR",
                                not_created));
      }
      auto config = parse_cluster_config(bundled_cluster_config(), "bundled clusters.yaml");
      config.not_created = not_created;
      return config;
    }
    text = read_file(path, "cluster profiles");
  }
  auto config = parse_cluster_config(*text, path);
  config.created = created;
  return config;
}

ProfileChoice choose_profile(const ClusterConfig& config, const std::string& selector, const std::string& hostname) {
  std::vector<std::string> names;
  for (const auto& profile : config.profiles) names.push_back(profile.name);
  if (selector != "auto") {
    for (const auto& profile : config.profiles) {
      if (profile.name == selector) return {&profile, fmt::format("chosen by --cluster {}", selector)};
    }
    const auto suggestions = closest_names(selector, names, 1);
    throw Error(fmt::format("--cluster: no profile named {} in {} (profiles: {}{})", quote_value(selector),
                            config.path.string(), join(names, ", "),
                            suggestions.empty() ? "" : "; did you mean " + suggestions[0] + "?"));
  }
  const auto short_name = hostname.substr(0, hostname.find('.'));
  for (const auto& profile : config.profiles) {
    for (const auto& candidate : {hostname, short_name}) {
      if (glob_match(profile.hostname_pattern, candidate)) {
        return {&profile, fmt::format("hostname {} matches hostname_pattern {}", quote_value(candidate),
                                      quote_value(profile.hostname_pattern))};
      }
    }
  }
  std::vector<std::string> described;
  for (const auto& profile : config.profiles) described.push_back(profile.name + " (" + profile.hostname_pattern + ")");
  throw Error(fmt::format("no cluster profile matches hostname {} (profiles in {}: {}); use --cluster NAME or add a "
                          "hostname_pattern",
                          quote_value(hostname), config.path.string(), join(described, ", ")));
}

std::string current_hostname() {
  if (const char* forced = std::getenv("MILL_HOSTNAME"); forced && *forced) return forced;
  return host_name();
}

}  // namespace mill
