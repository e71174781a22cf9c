// `mill completion bash|zsh|fish`: a shell completion script generated from the parser's own tree (commands, their
// options, which options take a value), with the built-in task and benchmark names for task arguments.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <set>

#include "commands.hpp"
#include "mill/base/error.hpp"
#include "mill/eval/tasks.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"
#include "mill/base/shell.hpp"

namespace mill::cli {

namespace {

// What a value or positional argument is, for offering candidates.
enum class ValueKind { none, file, directory, task_list, log_level, shell };

ValueKind option_value_kind(const OptionSummary& option) {
  const auto key = option_key(option.names.front());
  if (key == "output_dir" || key == "cache_dir" || key == "data_dir" || key == "venv_path") return ValueKind::directory;
  if (key == "extra_task_paths" || key == "manifest" || key == "models_file" || key == "tasks_file" ||
      key == "cost_history") {
    return ValueKind::file;
  }
  if (key == "log_level") return ValueKind::log_level;
  if (key == "tasks") return ValueKind::task_list;
  return ValueKind::none;
}

// The kind of the `index`-th positional word (0-based) of a command.
ValueKind positional_kind(const CommandSummary& command, int index) {
  int first = 0;
  for (const auto& positional : command.positionals) {
    if (index >= first + positional.max_words) {
      first += positional.max_words;
      continue;
    }
    const auto& name = positional.name;
    if (name == "model_spec") return ValueKind::file;  // a spec may be a local checkpoint folder
    if (name == "folder") return ValueKind::directory;
    if (name == "tasks" || name == "names") return ValueKind::task_list;
    if (name == "shell") return ValueKind::shell;
    if (name == "lists") return index - first == 0 ? ValueKind::file : ValueKind::task_list;  // MODELS TASKS
    return ValueKind::none;
  }
  return ValueKind::none;
}

constexpr const char* kLogLevels = "trace debug info warn error off";
constexpr const char* kShells = "bash zsh fish";

// Built-in task and benchmark names; names a shell would need quoted are left out.
std::vector<std::string> task_names() {
  std::set<std::string> names;
  const auto registry = TaskRegistry::load();
  for (const auto& task : registry.tasks()) names.insert(task.name);
  for (const auto& benchmark : registry.benchmarks()) names.insert(benchmark);
  std::vector<std::string> out;
  for (const auto& name : names) {
    const bool plain = std::all_of(name.begin(), name.end(), [](unsigned char c) {
      return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/';
    });
    if (plain && !name.empty()) out.push_back(name);
  }
  return out;
}

void append_new(std::vector<std::string>& names, const std::vector<std::string>& more) {
  for (const auto& name : more) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
}

// A command's option names, then the global ones not already there (a command's --help is its own): the visible
// ones, or those that take a value.
std::vector<std::string> option_names(const CommandSummary& command, const CommandSummary* globals, bool taking_values) {
  std::vector<std::string> names;
  for (const auto* scope : {&command, globals}) {
    if (!scope) continue;
    for (const auto& option : scope->options) {
      if (taking_values ? option.values > 0 : !option.hidden) append_new(names, option.names);
    }
  }
  return names;
}
std::vector<std::string> visible_names(const CommandSummary& command, const CommandSummary* globals = nullptr) {
  return option_names(command, globals, false);
}
std::vector<std::string> value_option_names(const CommandSummary& command, const CommandSummary* globals = nullptr) {
  return option_names(command, globals, true);
}

// Help texts shortened to their first sentence for menus (the man page and --help keep the whole text).
std::string short_help(const std::string& help) {
  auto text = one_line(help);
  // A sentence ends at ". " before a capital letter ("e.g. 0,5" goes on).
  for (auto stop = text.find(". "); stop != std::string::npos; stop = text.find(". ", stop + 1)) {
    if (stop + 2 < text.size() && std::isupper(static_cast<unsigned char>(text[stop + 2]))) {
      text.resize(stop);
      break;
    }
  }
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

// ---- bash ----

std::string bash_value_completion(ValueKind kind, const std::string& word) {
  switch (kind) {
    case ValueKind::file:
      return fmt::format("compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- \"{}\")", word);
    case ValueKind::directory:
      return fmt::format("compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- \"{}\")", word);
    case ValueKind::task_list: return fmt::format("_mill_complete_list \"{}\" \"$_mill_tasks\"", word);
    case ValueKind::log_level: return fmt::format("mapfile -t COMPREPLY < <(compgen -W '{}' -- \"{}\")", kLogLevels, word);
    case ValueKind::shell: return fmt::format("mapfile -t COMPREPLY < <(compgen -W '{}' -- \"{}\")", kShells, word);
    case ValueKind::none: return "COMPREPLY=()";
  }
  return "COMPREPLY=()";
}

std::string bash_script(const std::vector<CommandSummary>& commands) {
  const auto& root = commands.front();
  std::string out = fmt::format(
      "# bash completion for mill {}, generated by `mill completion bash`. Load it with\n"
      "#   source <(mill completion bash)\n"
      "# (e.g. in ~/.bashrc), or save it as /etc/bash_completion.d/mill.\n\n",
      version());
  out += fmt::format("_mill_tasks={}\n\n", shell_quote(join(task_names(), " ")));
  out +=
      "# A comma-separated list (mmlu,hella<TAB>): complete the item after the last comma.\n"
      "_mill_complete_list() {\n"
      "  local prefix=\"\"\n"
      "  [[ $1 == *,* ]] && prefix=${1%,*},\n"
      "  mapfile -t COMPREPLY < <(compgen -P \"$prefix\" -W \"$2\" -- \"${1##*,}\")\n"
      "  compopt -o nospace 2>/dev/null\n"
      "}\n\n";
  // Options per command (the global ones are valid after a command too).
  out += "_mill_options() {\n  case $1 in\n";
  for (const auto& command : commands) {
    const auto names = visible_names(command, command.name.empty() ? nullptr : &root);
    out += fmt::format("    {}) echo {} ;;\n", command.name.empty() ? "''" : command.name, shell_quote(join(names, " ")));
  }
  out += "  esac\n}\n\n";
  out += "_mill_value_options() {\n  case $1 in\n";
  for (const auto& command : commands) {
    const auto names = value_option_names(command, command.name.empty() ? nullptr : &root);
    out += fmt::format("    {}) echo {} ;;\n", command.name.empty() ? "''" : command.name,
                       shell_quote(" " + join(names, " ") + " "));
  }
  out += "  esac\n}\n\n";
  out += "_mill_complete_value() {\n  case $1 in\n";
  std::set<std::string> seen;
  for (const auto& command : commands) {
    for (const auto& option : command.options) {
      const auto kind = option_value_kind(option);
      if (option.values == 0 || kind == ValueKind::none || !seen.insert(option.names.front()).second) continue;
      out += fmt::format("    {}) {} ;;\n", join(option.names, "|"), bash_value_completion(kind, "$2"));
    }
  }
  out += "    *) COMPREPLY=() ;;\n  esac\n}\n\n";
  out +=
      "_mill() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} command=\"\" positional=0 skip=0 i word\n"
      "  # COMP_WORDBREAKS splits --option=value into three words: --option, =, value.\n"
      "  [[ $cur == \"=\" ]] && cur=\"\"\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    word=${COMP_WORDS[i]}\n"
      "    if [[ $word == \"=\" ]]; then skip=1; continue; fi\n"
      "    if ((skip)); then skip=0; continue; fi\n"
      "    if [[ $word == -* ]]; then\n"
      "      [[ $(_mill_value_options \"$command\") == *\" $word \"* ]] && skip=1\n"
      "    elif [[ -z $command ]]; then\n"
      "      command=$word\n"
      "    else\n"
      "      ((positional++))\n"
      "    fi\n"
      "  done\n"
      "  local previous=${COMP_WORDS[COMP_CWORD-1]}\n"
      "  [[ $previous == \"=\" ]] && previous=${COMP_WORDS[COMP_CWORD-2]}\n"
      "  [[ ${COMP_WORDS[COMP_CWORD]} == \"=\" ]] && previous=${COMP_WORDS[COMP_CWORD-1]}\n"
      "  if ((skip)) || [[ ${COMP_WORDS[COMP_CWORD]} == \"=\" ]]; then\n"
      "    _mill_complete_value \"$previous\" \"$cur\"\n"
      "    return 0\n"
      "  fi\n"
      "  if [[ $cur == -* ]]; then\n"
      "    mapfile -t COMPREPLY < <(compgen -W \"$(_mill_options \"$command\")\" -- \"$cur\")\n"
      "    return 0\n"
      "  fi\n"
      "  case $command in\n";
  out += fmt::format("    '') mapfile -t COMPREPLY < <(compgen -W {} -- \"$cur\") ;;\n", shell_quote(join(command_names(commands), " ")));
  for (std::size_t i = 1; i < commands.size(); ++i) {
    const auto& command = commands[i];
    if (command.positionals.empty()) continue;
    out += fmt::format("    {})\n      case $positional in\n", command.name);
    int words = 0;
    for (const auto& positional : command.positionals) words += std::min(positional.max_words, 2);
    for (int p = 0; p < words; ++p) {
      out += fmt::format("        {}) {} ;;\n", p, bash_value_completion(positional_kind(command, p), "$cur"));
    }
    out += "      esac ;;\n";
  }
  out += "  esac\n  return 0\n}\n\ncomplete -F _mill mill\n";
  return out;
}

// ---- zsh ----

// A description inside an _arguments spec's [...]: brackets, colons and backslashes escaped.
std::string zsh_description(const std::string& help) {
  std::string out;
  for (char c : short_help(help)) {
    if (c == '[' || c == ']' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string zsh_action(ValueKind kind) {
  switch (kind) {
    case ValueKind::file: return "_files";
    case ValueKind::directory: return "_files -/";
    case ValueKind::task_list: return "_mill_tasks";
    case ValueKind::log_level: return fmt::format("({})", kLogLevels);
    case ValueKind::shell: return fmt::format("({})", kShells);
    case ValueKind::none: return " ";
  }
  return " ";
}

// The specs of a command's options, leaving out those named in `taken` (a command's own --help hides mill's).
std::vector<std::string> zsh_option_specs(const CommandSummary& command, const std::set<std::string>& taken = {}) {
  std::vector<std::string> specs;
  for (const auto& option : command.options) {
    if (option.hidden) continue;
    if (std::any_of(option.names.begin(), option.names.end(), [&](const auto& name) { return taken.count(name) > 0; })) {
      continue;
    }
    const auto exclusive = "(" + join(option.names, " ") + ")";
    auto value_name = option.value_name.empty() ? std::string("value") : option.value_name;
    std::transform(value_name.begin(), value_name.end(), value_name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string values;
    for (int v = 0; v < option.values; ++v) values += ":" + value_name + ":" + zsh_action(option_value_kind(option));
    for (const auto& name : option.names) {
      const bool long_name = name.rfind("--", 0) == 0;
      specs.push_back(shell_quote(exclusive + name + (option.values == 1 && long_name ? "=" : "") + "[" +
                               zsh_description(option.help) + "]" + values));
    }
  }
  return specs;
}

std::string zsh_script(const std::vector<CommandSummary>& commands) {
  std::string out = fmt::format(
      "#compdef mill\n"
      "# zsh completion for mill {}, generated by `mill completion zsh`. Load it after compinit with\n"
      "#   source <(mill completion zsh)\n"
      "# or save it as _mill in a directory on $fpath.\n\n",
      version());
  out += fmt::format(
      "_mill_tasks() {{\n"
      "  local -a names\n"
      "  names=({})\n"
      "  _sequence -s , compadd -a names\n"
      "}}\n\n",
      join(task_names(), " "));
  out += "_mill() {\n  local curcontext=$curcontext state state_descr line ret=1\n  typeset -A opt_args\n";
  out += "  local -a globals commands\n  globals=(\n";
  for (const auto& spec : zsh_option_specs(commands.front())) out += "    " + spec + "\n";
  out += "  )\n  commands=(\n";
  for (std::size_t i = 1; i < commands.size(); ++i) {
    out += "    " + shell_quote(commands[i].name + ":" + short_help(commands[i].help)) + "\n";
  }
  out +=
      "  )\n"
      "  _arguments -C -S $globals ': :->command' '*:: :->argument' && ret=0\n"
      "  case $state in\n"
      "    (command) _describe -t commands 'mill command' commands && ret=0 ;;\n"
      "    (argument)\n"
      "      curcontext=${curcontext%:*:*}:mill-$words[1]:\n"
      "      case $words[1] in\n";
  for (std::size_t i = 1; i < commands.size(); ++i) {
    const auto& command = commands[i];
    out += fmt::format("        ({})\n          _arguments -S", command.name);
    std::set<std::string> own;
    for (const auto& option : command.options) own.insert(option.names.begin(), option.names.end());
    for (const auto& spec : zsh_option_specs(command)) out += " \\\n            " + spec;
    for (const auto& spec : zsh_option_specs(commands.front(), own)) out += " \\\n            " + spec;
    int index = 0;
    for (const auto& positional : command.positionals) {
      if (positional.max_words > 2) {
        out += " \\\n            " + shell_quote("*:" + positional.name + ":" + zsh_action(positional_kind(command, index)));
        break;
      }
      for (int w = 0; w < positional.max_words; ++w, ++index) {
        out += " \\\n            " +
               shell_quote(fmt::format("{}:{}:{}", index + 1, positional.name, zsh_action(positional_kind(command, index))));
      }
    }
    out += " && ret=0 ;;\n";
  }
  out +=
      "      esac ;;\n"
      "  esac\n"
      "  return ret\n"
      "}\n\n"
      "# Autoloaded from $fpath the file is _mill's body; sourced, it registers _mill.\n"
      "if [[ $funcstack[1] == _mill ]]; then _mill \"$@\"; else compdef _mill mill; fi\n";
  return out;
}

// ---- fish ----

std::string fishell_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string fish_arguments(ValueKind kind) {
  switch (kind) {
    case ValueKind::file: return " -F";
    case ValueKind::directory: return " -f -a '(__fish_complete_directories)'";
    case ValueKind::task_list: return " -f -a '(__mill_tasks)'";
    case ValueKind::log_level: return fmt::format(" -f -a '{}'", kLogLevels);
    case ValueKind::shell: return fmt::format(" -f -a '{}'", kShells);
    case ValueKind::none: return " -f";
  }
  return " -f";
}

std::string fish_option(const OptionSummary& option, const std::string& condition) {
  std::string out = "complete -c mill" + condition;
  for (const auto& name : option.names) {
    out += name.rfind("--", 0) == 0 ? " -l " + name.substr(2) : " -s " + name.substr(1);
  }
  if (option.values > 0) out += " -r" + fish_arguments(option_value_kind(option));
  return out + " -d " + fishell_quote(short_help(option.help)) + "\n";
}

std::string fish_script(const std::vector<CommandSummary>& commands) {
  const auto& root = commands.front();
  std::string out = fmt::format(
      "# fish completion for mill {}, generated by `mill completion fish`. Load it with\n"
      "#   mill completion fish | source\n"
      "# or save it as ~/.config/fish/completions/mill.fish.\n\n",
      version());
  // Which words are option values, to tell the command and the positionals apart.
  std::set<std::string> value_options;
  for (const auto& command : commands) {
    for (const auto& name : value_option_names(command)) value_options.insert(name);
  }
  const auto value_cases = join(std::vector<std::string>(value_options.begin(), value_options.end()), " ");
  out += fmt::format(
      "function __mill_words --description 'The command (first line) and its positionals so far'\n"
      "    set -l words (commandline -opc)\n"
      "    set -e words[1]\n"
      "    set -l skip 0\n"
      "    for word in $words\n"
      "        if test $skip = 1\n"
      "            set skip 0\n"
      "            continue\n"
      "        end\n"
      "        switch $word\n"
      "            case {}\n"
      "                set skip 1\n"
      "            case '-*'\n"
      "            case '*'\n"
      "                echo $word\n"
      "        end\n"
      "    end\n"
      "end\n\n"
      "function __mill_command\n"
      "    set -l words (__mill_words)\n"
      "    set -q words[1]; and echo $words[1]\n"
      "end\n\n"
      "# __mill_at COMMAND [N]: completing inside COMMAND (at its N-th positional, 0-based).\n"
      "function __mill_at\n"
      "    set -l words (__mill_words)\n"
      "    set -q words[1]; or return 1\n"
      "    test $words[1] = $argv[1]; or return 1\n"
      "    set -q argv[2]; or return 0\n"
      "    test (math (count $words) - 1) = $argv[2]\n"
      "end\n\n"
      "function __mill_tasks --description 'Task names, after the last comma of the word being completed'\n"
      "    set -l prefix (string replace -r '[^,]*$' '' -- (commandline -ct))\n"
      "    printf '%s\\n' $prefix{}\n"
      "end\n\n"
      "complete -c mill -f\n",
      value_cases, "(string split ' ' " + fishell_quote(join(task_names(), " ")) + ")");
  for (std::size_t i = 1; i < commands.size(); ++i) {
    out += fmt::format("complete -c mill -n 'not __mill_command >/dev/null' -a {} -d {}\n", commands[i].name,
                       fishell_quote(short_help(commands[i].help)));
  }
  for (const auto& option : root.options) {
    if (!option.hidden) out += fish_option(option, "");
  }
  for (std::size_t i = 1; i < commands.size(); ++i) {
    const auto& command = commands[i];
    const auto condition = fmt::format(" -n '__mill_at {}'", command.name);
    for (const auto& option : command.options) {
      if (!option.hidden) out += fish_option(option, condition);
    }
    int words = 0;
    for (const auto& positional : command.positionals) words += std::min(positional.max_words, 2);
    for (int p = 0; p < words; ++p) {
      const auto kind = positional_kind(command, p);
      if (kind == ValueKind::none) continue;
      out += fmt::format("complete -c mill -n '__mill_at {} {}'{}\n", command.name, p, fish_arguments(kind));
    }
  }
  return out;
}

}  // namespace

void register_completion_command(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  auto* command = app.add_subcommand(
      "completion", "Print a shell completion script for bash, zsh or fish: source <(mill completion bash), "
                    "source <(mill completion zsh) after compinit, or mill completion fish | source");
  command->add_option("shell", *shell, "bash, zsh or fish")->required();
  command->callback([&app, shell] {
    const auto commands = summarize_commands(app);
    if (*shell == "bash") {
      std::cout << bash_script(commands);
    } else if (*shell == "zsh") {
      std::cout << zsh_script(commands);
    } else if (*shell == "fish") {
      std::cout << fish_script(commands);
    } else {
      throw Error(fmt::format("mill completion: {} is not a shell mill completes for (expected bash, zsh or fish)",
                              quote_value(*shell)));
    }
  });
}

}  // namespace mill::cli
