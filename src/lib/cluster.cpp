#include "mill/cluster.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <regex>

#include "mill/atomic_file.hpp"
#include "mill/embedded.hpp"
#include "mill/error.hpp"
#include "mill/text.hpp"
#include "mill/walltime.hpp"

namespace mill {

std::string_view bundled_cluster_config() {
  static const auto content = embedded::find("clusters.yaml");
  return content ? *content : std::string_view();
}

namespace {

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {
      "hostname_pattern", "partition",    "account",        "gpu_type",       "gpus_per_node",
      "gpus_per_task",    "mem",          "queue_limit",    "max_array_len",  "max_time",
      "cpus_per_task",    "max_array_size", "signal_minutes", "extra_sbatch", "setup_lines"};
  return fields;
}

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

class ProfileReader {
 public:
  ProfileReader(const YAML::Node& node, std::string where) : node_(node), where_(std::move(where)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    throw Error(fmt::format("{}, field `{}`: {}", where_, field, problem));
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

 private:
  const YAML::Node& node_;
  std::string where_;
};

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
  ClusterProfile profile;
  profile.name = name;
  profile.hostname_pattern = reader.required_string("hostname_pattern");
  // Values that go into #SBATCH lines are restricted to characters sbatch never splits or interprets.
  static const std::regex slurm_name("[A-Za-z0-9_.,+-]*");
  profile.partition = reader.required_string("partition");
  if (!std::regex_match(profile.partition, slurm_name)) {
    reader.fail("partition", fmt::format("{} is not a partition name (letters, digits, '_', '-', '.', ',')", quote_value(profile.partition)));
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
  profile.mem = reader.required_string("mem");
  static const std::regex memory("[0-9]+[KMGT]?");
  if (!std::regex_match(profile.mem, memory)) {
    reader.fail("mem", fmt::format("{} is not a SLURM memory size such as 64G, 512000M or 0", quote_value(profile.mem)));
  }
  profile.queue_limit = reader.integer("queue_limit", 1, std::nullopt);
  profile.max_array_len = reader.integer("max_array_len", 1, std::nullopt);
  if (auto time = reader.scalar("max_time")) {
    profile.max_time_minutes = parse_slurm_time(*time);
    if (profile.max_time_minutes <= 0) {
      reader.fail("max_time", fmt::format("{} is not a SLURM time such as 24:00:00, 2-00:00:00 or 90", quote_value(*time)));
    }
  }
  profile.cpus_per_task = reader.integer("cpus_per_task", 1, 8);
  profile.max_array_size = reader.integer("max_array_size", 2, 1001);
  profile.signal_minutes = reader.integer("signal_minutes", 1, 5);
  profile.extra_sbatch = reader.lines("extra_sbatch");
  for (const auto& option : profile.extra_sbatch) {
    if (option.rfind("--", 0) != 0) {
      reader.fail("extra_sbatch", fmt::format("{} is not an sbatch option starting with --", quote_value(option)));
    }
  }
  profile.setup_lines = reader.lines("setup_lines");
  return profile;
}

}  // namespace

ClusterConfig parse_cluster_config(std::string_view text, const std::filesystem::path& source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("{}: invalid YAML at line {}, column {}: {}", source.string(), e.mark.line + 1,
                            e.mark.column + 1, e.msg));
  }
  if (!root.IsMap() || !root["profiles"] || !root["profiles"].IsMap()) {
    throw Error(fmt::format("{}: expected a top-level `profiles:` mapping of profile names to fields", source.string()));
  }
  ClusterConfig config;
  config.path = source;
  for (const auto& item : root["profiles"]) {
    if (!item.first.IsScalar())
      throw Error(fmt::format("{}: profile names must be plain words, not a list or mapping", source.string()));
    const auto name = item.first.as<std::string>();
    if (name.empty() || name.find_first_of(" \t\n\r'\"$`\\") != std::string::npos || !one_line_of_text(name)) {
      throw Error(fmt::format("{}: profile name {} must not contain spaces, quotes or shell characters",
                              source.string(), quote_value(name)));
    }
    config.profiles.push_back(read_profile(name, item.second, source));
  }
  if (config.profiles.empty()) throw Error(fmt::format("{}: `profiles` is empty", source.string()));
  return config;
}

ClusterConfig load_cluster_config(const std::filesystem::path& cache_dir) {
  const auto path = cache_dir / "clusters.yaml";
  if (!std::filesystem::exists(path)) {
    // Write a temporary file and hard-link it into place: link() fails if the file appeared meanwhile, so a
    // copy the user already has is never replaced.
    const auto temporary = cache_dir / fmt::format(".clusters.yaml.{}", static_cast<long>(::getpid()));
    write_file_atomically(temporary, bundled_cluster_config());
    if (::link(temporary.c_str(), path.c_str()) != 0 && errno != EEXIST) {
      const int error = errno;
      std::filesystem::remove(temporary);
      throw Error(fmt::format("cannot create {}: {}", path.string(), std::strerror(error)));
    }
    std::filesystem::remove(temporary);
  }
  return parse_cluster_config(read_file(path, "cluster profiles"), path);
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
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown";
  return buffer;
}

}  // namespace mill
