#pragma once
// The command-line front end: each subcommand is one file that declares its options and calls the library.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace mill::cli {

// Options that every subcommand sees (given before or after the subcommand name).
struct GlobalOptions {
  std::string output_dir;  // resolved by output_dir_path()
  std::string cache_dir;
  std::string log_level = "warn";

  std::filesystem::path output_dir_path() const;  // --output_dir, $MILL_OUTPUT_DIR, ./mill_results; absolute
  std::filesystem::path cache_dir_path() const;   // --cache_dir, $MILL_CACHE_DIR, $XDG_CACHE_HOME/mill, ~/.cache/mill
};

// Adds an option under both spellings users type: --name_with_underscores and --name-with-dashes.
template <typename T>
CLI::Option* add_option(CLI::App& app, const std::string& underscored, T& target, const std::string& help) {
  std::string dashed = underscored;
  for (auto& c : dashed) {
    if (c == '_') c = '-';
  }
  const auto names = dashed == underscored ? "--" + underscored : "--" + underscored + ",--" + dashed;
  return app.add_option(names, target, help);
}

CLI::Option* add_flag(CLI::App& app, const std::string& underscored, bool& target, const std::string& help);

// Comma-separated lists, as users type them: "mmlu,mmlu_pro", "0,5".
std::vector<std::string> parse_list_option(const std::string& text);
std::vector<int> parse_int_list_option(const std::string& text, const std::string& option);

// The items of a list file (--models_file, --tasks_file): one per line, surrounding spaces trimmed, blank lines
// and lines starting with '#' skipped. An unreadable or empty file is a mill::Error naming `option` and the file.
std::vector<std::string> read_list_file(const std::string& path, const std::string& option);

// Whether stdout is a terminal that should get colour (NO_COLOR unset).
bool stdout_is_colour_terminal();

void register_schedule_command(CLI::App& app, const GlobalOptions& global);
void register_tasks_command(CLI::App& app, const GlobalOptions& global);
void register_eval_command(CLI::App& app, const GlobalOptions& global);
void register_collect_command(CLI::App& app, const GlobalOptions& global);
void register_status_command(CLI::App& app, const GlobalOptions& global);
void register_demo_model_command(CLI::App& app, const GlobalOptions& global);
void register_serve_command(CLI::App& app, const GlobalOptions& global);
void register_migrate_command(CLI::App& app, const GlobalOptions& global);

}  // namespace mill::cli
