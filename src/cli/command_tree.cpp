// The CLI11 tree as plain data (commands, their options and positionals), read once from the parser itself so that
// completion scripts, the man page and the usage hints cannot drift from what mill accepts.
#include <algorithm>

#include "commands.hpp"

namespace mill::cli {

namespace {
std::string underscored(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

CommandSummary summarize(const CLI::App& command, bool is_root) {
  CommandSummary summary;
  summary.name = is_root ? std::string() : command.get_name();
  summary.help = command.get_description();
  for (const auto* option : command.get_options()) {
    if (option->get_positional()) {
      summary.positionals.push_back(
          {option->get_name(true), option->get_description(), option->get_items_expected_max()});
      continue;
    }
    OptionSummary out;
    for (const auto& name : option->get_lnames()) out.names.push_back("--" + name);
    for (const auto& name : option->get_snames()) out.names.push_back("-" + name);
    // `--check,!--no-check`: the negations are names too.
    for (const auto& name : option->get_fnames()) {
      const auto typed = "--" + name;
      if (std::find(out.names.begin(), out.names.end(), typed) == out.names.end()) out.names.push_back(typed);
    }
    out.help = option->get_description();
    // Flags expect no items (CLI11 gives them expected(0)); --compare A B expects two.
    out.values = option->get_items_expected_max() == 0 ? 0 : std::max(1, option->get_items_expected_min());
    out.value_name = option->get_type_name();
    out.hidden = option->get_group().empty();
    summary.options.push_back(std::move(out));
  }
  return summary;
}
}  // namespace

const OptionSummary* CommandSummary::find_option(const std::string& typed_name) const {
  const auto wanted = underscored(typed_name);
  for (const auto& option : options) {
    for (const auto& name : option.names) {
      if (underscored(name) == wanted) return &option;
    }
  }
  return nullptr;
}

std::vector<std::string> command_names(const std::vector<CommandSummary>& commands) {
  std::vector<std::string> names;
  for (std::size_t i = 1; i < commands.size(); ++i) names.push_back(commands[i].name);
  return names;
}

std::string option_key(const std::string& typed) {
  auto name = typed.substr(0, typed.find('='));
  name.erase(0, name.find_first_not_of('-'));
  return underscored(name);
}

std::vector<CommandSummary> summarize_commands(const CLI::App& app) {
  std::vector<CommandSummary> commands{summarize(app, true)};
  for (const auto* command : app.get_subcommands([](const CLI::App*) { return true; })) {
    commands.push_back(summarize(*command, false));
  }
  return commands;
}

}  // namespace mill::cli
