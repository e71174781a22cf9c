#pragma once
// The command-line front end: each subcommand is one file that declares its options and calls the library.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <optional>
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

// An option's names in both spellings users type: "--name_with_underscores,--name-with-dashes".
std::string both_spellings(const std::string& underscored);

template <typename T>
CLI::Option* add_option(CLI::App& app, const std::string& underscored, T& target, const std::string& help) {
  return app.add_option(both_spellings(underscored), target, help);
}
inline CLI::Option* add_flag(CLI::App& app, const std::string& underscored, bool& target, const std::string& help) {
  return app.add_flag(both_spellings(underscored), target, help);
}

// A comma-separated list of whole numbers, as users type them: "0,5" (other lists: base's split_list).
std::vector<int> parse_int_list_option(const std::string& text, const std::string& option);

// The items of a list file (--models_file, --tasks_file): one per line, surrounding spaces trimmed, blank lines
// and lines starting with '#' skipped. An unreadable or empty file is a mill::Error naming `option` and the file.
std::vector<std::string> read_list_file(const std::string& path, const std::string& option);

// Whether output to a stream that `is_terminal` should get colour: only a terminal, and not when NO_COLOR is set
// (not empty) or TERM is unset or "dumb".
bool colour_wanted(bool is_terminal);
bool stdout_is_colour_terminal();

// The command-line tree as data: what shell completion, the man page and the usage hints are generated from, so
// that none of them lists an option the parser does not have.
struct OptionSummary {
  std::vector<std::string> names;  // as typed: long names first ("--n_shots", "--n-shots"), then short ones ("-V")
  std::string help;
  int values = 0;          // words the option takes after it: 0 for a flag
  std::string value_name;  // CLI11's name of the value's type (TEXT, INT, ...)
  bool hidden = false;     // internal (set by mill itself): not offered, not documented, but still accepted
};
struct PositionalSummary {
  std::string name;
  std::string help;
  int max_words = 1;  // words it takes at most (large for a list)
};
struct CommandSummary {
  std::string name;  // empty for mill itself, whose options are the global ones
  std::string help;
  std::vector<OptionSummary> options;
  std::vector<PositionalSummary> positionals;
  const OptionSummary* find_option(const std::string& typed_name) const;  // "--n-shots" finds --n_shots
};
// mill itself first, then each command in the order --help lists them.
std::vector<CommandSummary> summarize_commands(const CLI::App& app);
// The commands' names, without mill itself.
std::vector<std::string> command_names(const std::vector<CommandSummary>& commands);
// An option's key, whichever way it is typed: "--num-fewshot=5" -> "num_fewshot".
std::string option_key(const std::string& typed);

// When parsing the command line failed: the first argument mill cannot place (an unknown command or option, or a
// value in lm-evaluation-harness's form) explained in one line, with the closest valid names or mill's spelling of
// what was meant. Nothing when the failure is about something else (CLI11's own message then stands).
std::optional<std::string> explain_usage_error(const CLI::App& app, const std::vector<std::string>& args,
                                               const CLI::ParseError& error);

void register_schedule_command(CLI::App& app, const GlobalOptions& global);
void register_tasks_command(CLI::App& app, const GlobalOptions& global);
void register_eval_command(CLI::App& app, const GlobalOptions& global);
void register_collect_command(CLI::App& app, const GlobalOptions& global);
void register_status_command(CLI::App& app, const GlobalOptions& global);
void register_demo_model_command(CLI::App& app, const GlobalOptions& global);
void register_serve_command(CLI::App& app, const GlobalOptions& global);
void register_migrate_command(CLI::App& app, const GlobalOptions& global);
// These describe `app` itself, so they are registered after every other command.
void register_version_command(CLI::App& app);
void register_completion_command(CLI::App& app);
void register_man_command(CLI::App& app);

}  // namespace mill::cli
