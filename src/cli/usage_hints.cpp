// Errors that teach: when the command line does not parse, name the argument at fault and what was probably
// meant, a close command or option name, or mill's spelling of an lm-evaluation-harness habit.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "commands.hpp"
#include "mill/base/text.hpp"

namespace mill::cli {

namespace {

bool is_whole_number(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool looks_like_option(const std::string& arg) {
  return arg.size() > 1 && arg[0] == '-' && !std::isdigit(static_cast<unsigned char>(arg[1])) && arg[1] != '.';
}

// lm-evaluation-harness options that mill spells differently, or takes elsewhere. `command` is the mill command
// being parsed ("" before one).
std::optional<std::string> harness_hint(const std::string& key, const std::string& command) {
  const bool takes_models = command == "eval" || command == "schedule" || command == "serve";
  if (key == "num_fewshot") return "mill uses --n_shots (a list: --n_shots 0,5)";
  if ((key == "model" || key == "model_args" || key == "pretrained") && takes_models) {
    const auto example = command == "schedule" ? "mill schedule 'org/model[dtype=bfloat16]',other/model TASKS"
                         : command == "serve"  ? "mill serve 'org/model[dtype=bfloat16]'"
                                               : "mill eval 'org/model[dtype=bfloat16]' TASKS";
    return fmt::format(
        "mill takes model specs as positional arguments, NAME_OR_PATH[key=value,...], e.g. `{}` (lm-eval's --model "
        "hf --model_args pretrained=org/model,dtype=bfloat16)",
        example);
  }
  if (key == "tasks" && command == "eval") {
    return "tasks are the positional argument after the model: `mill eval MODEL mmlu,hellaswag`";
  }
  if (key == "tasks" && command == "schedule") {
    return "tasks are the positional argument after the models: `mill schedule MODELS mmlu,hellaswag` (or "
           "--tasks_file FILE)";
  }
  if (key == "batch_size") {
    return "the batch size is a model argument in mill: 'org/model[batch_size=8]' (default auto: as many rows as "
           "fit in memory)";
  }
  if (key == "device") return "the device is a model argument in mill: 'org/model[device=cuda:0]' (default auto)";
  if (key == "output_path") {
    return "mill writes into a results tree: --output_dir DIR (default $MILL_OUTPUT_DIR or ./mill_results)";
  }
  if (key == "include_path") return "mill reads extra task YAML files from --extra_task_paths DIR[,DIR...]";
  if (key == "apply_chat_template") {
    return "the chat template is a model argument in mill: 'org/model[use_chat_template=true]'";
  }
  if (key == "verbosity") return "mill uses --log_level (trace, debug, info, warn, error, off)";
  return std::nullopt;
}

std::string help_pointer(const std::string& command) {
  return command.empty() ? "mill --help lists them" : fmt::format("mill {} --help lists them", command);
}

std::string unknown_option(const std::vector<CommandSummary>& commands, const CommandSummary* command,
                           const std::string& typed) {
  const auto name = typed.substr(0, typed.find('='));
  const auto key = option_key(typed);
  const std::string command_name = command ? command->name : "";
  const auto where = command ? fmt::format("mill {}: unknown option {}", command_name, quote_value(name))
                             : fmt::format("unknown option {}", quote_value(name));
  if (auto hint = harness_hint(key, command_name)) return fmt::format("{}: {}", where, *hint);
  // The options valid here: this command's and the global ones.
  std::vector<std::string> keys;
  std::vector<std::string> spellings;
  for (const auto* scope : {command, &commands.front()}) {
    if (!scope) continue;
    for (const auto& option : scope->options) {
      if (option.hidden || option.names.empty() || option.names.front().rfind("--", 0) != 0) continue;
      keys.push_back(option_key(option.names.front()));
      spellings.push_back(option.names.front());
    }
  }
  const auto close = closest_names(key, keys, 2);
  if (!close.empty()) {
    std::vector<std::string> suggestions;
    for (const auto& found : close) suggestions.push_back("--" + found);
    return fmt::format("{}; did you mean {}? ({})", where, join(suggestions, " or "), help_pointer(command_name));
  }
  // Given before the command, or to another command: say where it belongs.
  std::vector<std::string> owners;
  for (std::size_t i = 1; i < commands.size(); ++i) {
    const auto* option = commands[i].find_option("--" + key);
    if (option && !option->hidden && &commands[i] != command) owners.push_back(commands[i].name);
  }
  if (!owners.empty()) {
    return fmt::format("{}: it is an option of mill {}; give it after that command's name", where,
                       join(owners, ", mill "));
  }
  return fmt::format("{} ({})", where, help_pointer(command_name));
}

}  // namespace

std::optional<std::string> explain_usage_error(const CLI::App& app, const std::vector<std::string>& args,
                                               const CLI::ParseError& error) {
  const auto commands = summarize_commands(app);
  const CommandSummary* command = nullptr;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (arg == "--") break;
    if (looks_like_option(arg)) {
      const auto name = arg.substr(0, arg.find('='));
      const OptionSummary* option = command ? command->find_option(name) : nullptr;
      if (!option) option = commands.front().find_option(name);
      if (!option) return unknown_option(commands, command, arg);
      std::optional<std::string> value;
      if (arg.find('=') != std::string::npos) {
        value = arg.substr(arg.find('=') + 1);
      } else if (option->values > 0) {
        if (i + 1 < args.size()) value = args[i + 1];
        i += static_cast<std::size_t>(option->values);
      }
      if (option_key(name) == "limit" && value && !is_whole_number(*value)) {
        return fmt::format(
            "--limit {}: mill's --limit is a whole number of documents per task (e.g. --limit 100); lm-eval's "
            "fraction of each task has no mill equivalent",
            quote_value(*value));
      }
      continue;
    }
    if (command) continue;  // a positional argument of the command
    for (std::size_t c = 1; c < commands.size() && !command; ++c) {
      if (commands[c].name == arg) command = &commands[c];
    }
    if (command) continue;
    const auto close = closest_names(arg, command_names(commands), 2);
    return fmt::format("unknown command {}{} (commands: {})", quote_value(arg),
                       close.empty() ? std::string() : fmt::format("; did you mean {}?", join(close, " or ")),
                       join(command_names(commands), ", "));
  }
  if (!command && error.get_name() == "RequiredError") {
    return fmt::format("a command is required: {} (mill --help says what each does)", join(command_names(commands), ", "));
  }
  return std::nullopt;
}

}  // namespace mill::cli
