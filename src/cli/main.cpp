// mill: language-model evaluation sweeps on SLURM clusters. This file wires the subcommands and turns every
// error into one line on stderr with a documented exit code (docs/cli.md).
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <iostream>

#include "commands.hpp"
#include "mill/base/error.hpp"
#include "mill/base/stop_signal.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"

namespace mill::cli {

namespace {
std::filesystem::path absolute_path(const std::filesystem::path& path) {
  std::error_code ec;
  auto absolute = std::filesystem::absolute(path, ec);
  return ec ? path : absolute.lexically_normal();
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}
}  // namespace

std::filesystem::path GlobalOptions::output_dir_path() const {
  if (!output_dir.empty()) return absolute_path(output_dir);
  if (auto value = environment("MILL_OUTPUT_DIR"); !value.empty()) return absolute_path(value);
  return absolute_path("mill_results");
}

std::filesystem::path GlobalOptions::cache_dir_path() const {
  if (!cache_dir.empty()) return absolute_path(cache_dir);
  if (auto value = environment("MILL_CACHE_DIR"); !value.empty()) return absolute_path(value);
  if (auto value = environment("XDG_CACHE_HOME"); !value.empty()) return absolute_path(std::filesystem::path(value) / "mill");
  if (auto value = environment("HOME"); !value.empty()) return std::filesystem::path(value) / ".cache" / "mill";
  throw Error("cannot find a cache directory: set --cache_dir, MILL_CACHE_DIR or HOME");
}

std::string both_spellings(const std::string& underscored) {
  auto dashed = underscored;
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  return dashed == underscored ? "--" + underscored : "--" + underscored + ",--" + dashed;
}

std::vector<int> parse_int_list_option(const std::string& text, const std::string& option) {
  std::vector<int> values;
  for (const auto& item : split_list(text)) {
    char* end = nullptr;
    errno = 0;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || value < 0 || value > 1000) {
      throw Error(fmt::format("{}: {} is not a whole number in 0..1000 (expected e.g. 0,5)", option, quote_value(item)));
    }
    values.push_back(static_cast<int>(value));
  }
  if (values.empty()) throw Error(fmt::format("{}: empty list (expected e.g. 0,5)", option));
  return values;
}

std::vector<std::string> read_list_file(const std::string& path, const std::string& option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot read {}: {}", option, quote_value(path), std::strerror(errno)));
  std::vector<std::string> items;
  for (std::string line; std::getline(in, line);) {
    auto item = trim(line);
    if (!item.empty() && item.front() != '#') items.push_back(std::move(item));
  }
  if (in.bad()) throw Error(fmt::format("{}: cannot read {}: {}", option, quote_value(path), std::strerror(errno)));
  if (items.empty()) {
    throw Error(fmt::format("{}: {} lists nothing (expected one item per line; # starts a comment line)", option,
                            quote_value(path)));
  }
  return items;
}

bool colour_wanted(bool is_terminal) {
  // NO_COLOR counts when set and not empty (no-color.org); a terminal that calls itself dumb shows escapes as text.
  const auto term = environment("TERM");
  return is_terminal && environment("NO_COLOR").empty() && !term.empty() && term != "dumb";
}

bool stdout_is_colour_terminal() { return colour_wanted(::isatty(STDOUT_FILENO)); }

void register_version_command(CLI::App& app) {
  app.add_subcommand("version", "Print mill's version (as mill --version and mill -V do)")->callback([] {
    std::cout << "mill " << version() << "\n";
  });
}

namespace {
// The log message as one line (control and non-UTF-8 bytes escaped): log lines often carry user paths and names.
class OneLineMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm&, spdlog::memory_buf_t& destination) override {
    const auto text = one_line(std::string_view(message.payload.data(), message.payload.size()));
    destination.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<OneLineMessage>(); }
};

void configure_logging(const std::string& level_name) {
  auto logger = spdlog::stderr_color_mt(
      "mill", colour_wanted(::isatty(STDERR_FILENO)) ? spdlog::color_mode::automatic : spdlog::color_mode::never);
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<OneLineMessage>('*').set_pattern("mill: %l: %*");
  logger->set_formatter(std::move(formatter));
  spdlog::set_default_logger(logger);
  const auto level = spdlog::level::from_str(level_name);
  if (level == spdlog::level::off && level_name != "off") {
    throw Error(fmt::format("--log_level: {} is not one of trace, debug, info, warn, error, off", quote_value(level_name)));
  }
  spdlog::set_level(level);
}

int run(int argc, char** argv) {
  CLI::App app{"mill: run language-model evaluation sweeps on SLURM clusters.\n\n"
               "  mill schedule MODELS TASKS [--n_shots 0,5] [--dry_run|--local]  plan and submit a sweep\n"
               "  mill status                                         what the sweeps have queued, running, done\n"
               "  mill collect [--check] [--compare A B]              aggregate.csv, report, missing/stale jobs\n"
               "  mill eval MODEL TASKS                               evaluate here (also the array worker)\n"
               "  mill tasks [NAMES]                                  list the known tasks and benchmarks\n"
               "  mill completion bash|zsh|fish, mill man, mill version  shell completion, manual page, version\n\n"
               "Lists are comma-separated. Model specs: NAME_OR_PATH[key=value,...]. Docs: docs/ in the source tree.",
               "mill"};
  app.set_version_flag("-V,--version", std::string("mill ") + version());
  app.require_subcommand(1);
  app.fallthrough();
  GlobalOptions global;
  add_option(app, "output_dir", global.output_dir,
             "Results tree shared by the planner, workers and collect (default $MILL_OUTPUT_DIR or ./mill_results)");
  add_option(app, "cache_dir", global.cache_dir,
             "Where clusters.yaml lives (default $MILL_CACHE_DIR, $XDG_CACHE_HOME/mill or ~/.cache/mill)");
  add_option(app, "log_level", global.log_level, "trace, debug, info, warn (default), error or off");
  register_schedule_command(app, global);
  register_tasks_command(app, global);
  register_eval_command(app, global);
  register_collect_command(app, global);
  register_status_command(app, global);
  register_demo_model_command(app, global);
  register_serve_command(app, global);
  register_migrate_command(app, global);
  register_version_command(app);
  register_completion_command(app);
  register_man_command(app);
  app.parse_complete_callback([&] { configure_logging(global.log_level); });
  // Names and paths end up in JSON files (manifests, results), which must be UTF-8: refuse other bytes up front
  // rather than fail half-way or record a name that no longer matches.
  for (int i = 1; i < argc; ++i) {
    if (is_valid_utf8(argv[i])) continue;
    const bool option_value = i > 1 && std::string_view(argv[i - 1]).rfind("--", 0) == 0;
    throw Error(fmt::format("{} {} is not valid UTF-8 (mill records names and paths in JSON files, which need UTF-8)",
                            option_value ? fmt::format("{}:", argv[i - 1]) : fmt::format("argument {}:", i),
                            quote_value(argv[i])));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (const auto explained = explain_usage_error(app, std::vector<std::string>(argv + 1, argv + argc), e)) {
      std::cerr << "mill: error: " << one_line(*explained) << "\n";
      return static_cast<int>(ExitCode::usage);
    }
    std::cerr << "mill: error: " << one_line(e.what()) << " (see mill --help)\n";
    return static_cast<int>(ExitCode::usage);
  }
  return 0;
}
}  // namespace
}  // namespace mill::cli

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write should fail with EFBIG and be reported like a full disk, naming the
  // file, rather than SIGXFSZ killing mill silently mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return mill::cli::run(argc, argv);
  } catch (const mill::Error& e) {
    // Ctrl-C is the user's choice, not an error: its line says where the run stopped and how to resume it.
    std::cerr << (e.code() == mill::interrupted_exit_code() ? "mill: " : "mill: error: ") << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that the system cannot take is the user's to fix, not a bug.
    if (e.code() == std::errc::filename_too_long) {
      std::cerr << "mill: error: path too long: " << mill::quote_value(e.path1().string())
                << " (the system takes at most " << NAME_MAX << " bytes per name and " << PATH_MAX << " per path)\n";
      return static_cast<int>(mill::ExitCode::usage);
    }
    std::cerr << "mill: internal error: " << mill::one_line(e.what()) << "\n";
    return static_cast<int>(mill::ExitCode::internal);
  } catch (const std::exception& e) {
    std::cerr << "mill: internal error: " << mill::one_line(e.what()) << "\n";
    return static_cast<int>(mill::ExitCode::internal);
  }
}
