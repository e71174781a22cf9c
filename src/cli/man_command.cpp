// `mill man`: the manual page (roff, section 1) written from the parser's own tree, so that every command and
// option is in it with its --help text; the build writes it to build/mill.1 (CMakeLists.txt).
#include <fmt/format.h>

#include <cstdint>
#include <iostream>
#include <sstream>

#include "commands.hpp"
#include "mill/base/text.hpp"
#include "mill/base/version.hpp"

namespace mill::cli {

namespace {

// Text for roff: backslashes and dashes escaped (so options print as typed), other than ASCII as groff's \[uXXXX]
// (the page renders the same in any locale), nothing read as a request.
std::string roff(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      // Help texts are valid UTF-8 (they are ours); decode one character.
      const int length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      std::uint32_t code = c & (0x7F >> length);
      for (int k = 1; k < length && i + 1 < text.size(); ++k) code = (code << 6) | (static_cast<unsigned char>(text[++i]) & 0x3F);
      out += fmt::format("\\[u{:04X}]", code);
    }
  }
  if (!out.empty() && (out.front() == '.' || out.front() == '\'')) out.insert(0, "\\&");
  return out;
}

std::string option_heading(const OptionSummary& option) {
  std::vector<std::string> names;
  for (const auto& name : option.names) names.push_back("\\fB" + roff(name) + "\\fR");
  std::string out = join(names, ", ");
  for (int v = 0; v < option.values; ++v) out += " \\fI" + roff(option.value_name.empty() ? "VALUE" : option.value_name) + "\\fR";
  return out;
}

void write_options(std::ostream& out, const CommandSummary& command) {
  for (const auto& positional : command.positionals) {
    out << ".TP\n\\fI" << roff(positional.name) << "\\fR" << (positional.max_words > 2 ? " ..." : "") << "\n"
        << roff(one_line(positional.help)) << "\n";
  }
  for (const auto& option : command.options) {
    if (option.hidden) continue;
    out << ".TP\n" << option_heading(option) << "\n" << roff(one_line(option.help)) << "\n";
  }
}

// The description's paragraphs: indented ones (the command overview) kept as laid out.
void write_description(std::ostream& out, const std::string& description) {
  std::size_t start = 0;
  bool first = true;
  while (start <= description.size()) {
    auto end = description.find("\n\n", start);
    if (end == std::string::npos) end = description.size();
    const auto paragraph = description.substr(start, end - start);
    start = end + 2;
    if (first) {  // "mill: ..." is the NAME line
      first = false;
      continue;
    }
    if (paragraph.empty()) continue;
    if (paragraph.rfind("  ", 0) == 0) {
      out << ".PP\n.nf\n";
      std::istringstream lines(paragraph);
      for (std::string line; std::getline(lines, line);) out << roff(line) << "\n";
      out << ".fi\n";
    } else {
      out << ".PP\n" << roff(one_line(paragraph)) << "\n";
    }
  }
}

std::string manual_page(const std::vector<CommandSummary>& commands) {
  std::ostringstream out;
  const auto& root = commands.front();
  auto summary = root.help.substr(0, root.help.find('\n'));
  if (summary.rfind("mill: ", 0) == 0) summary.erase(0, 6);
  if (!summary.empty() && summary.back() == '.') summary.pop_back();
  out << fmt::format(".TH MILL 1 \"\" \"mill {}\" \"User Commands\"\n", roff(version()));
  out << ".SH NAME\nmill \\- " << roff(summary) << "\n";
  out << ".SH SYNOPSIS\n.B mill\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]\n";
  out << ".SH DESCRIPTION\n";
  write_description(out, root.help);
  out << ".PP\nOptions are spelled with underscores (\\fB\\-\\-output_dir\\fR); the dashed spelling "
         "(\\fB\\-\\-output\\-dir\\fR) is accepted too. Global options may come before or after the command name.\n";
  out << ".SH GLOBAL OPTIONS\n";
  write_options(out, root);
  out << ".SH COMMANDS\n";
  for (std::size_t i = 1; i < commands.size(); ++i) {
    const auto& command = commands[i];
    std::string usage = "mill " + command.name + " [OPTIONS]";
    for (const auto& positional : command.positionals) {
      usage += " " + positional.name + (positional.max_words > 1 ? " ..." : "");
    }
    out << ".SS \"" << roff(usage) << "\"\n" << roff(one_line(command.help)) << "\n";
    write_options(out, command);
  }
  out << ".SH ENVIRONMENT\n";
  const std::pair<const char*, const char*> environment[] = {
      {"MILL_OUTPUT_DIR", "the results tree when --output_dir is not given (else ./mill_results)"},
      {"MILL_CACHE_DIR", "where clusters.yaml lives when --cache_dir is not given (else $XDG_CACHE_HOME/mill, else "
                         "~/.cache/mill)"},
      {"MILL_DATA_DIR", "where task data files live when --data_dir is not given"},
      {"MILL_HOSTNAME", "the hostname --cluster auto matches against the cluster profiles"},
      {"HF_HUB_CACHE, HF_HOME", "the Hugging Face cache that model names are looked up in"},
      {"NO_COLOR", "set (not empty) turns colour off"},
      {"TERM", "colour is used only on a terminal whose TERM is set and not dumb"},
  };
  for (const auto& [name, meaning] : environment) out << ".TP\n.B " << roff(name) << "\n" << roff(meaning) << "\n";
  out << ".SH EXIT STATUS\n";
  const std::pair<const char*, const char*> codes[] = {
      {"0", "success"},
      {"1", "internal error (a bug, or an unexpected system failure)"},
      {"2", "bad input: command line, model spec, task name, task or cluster file"},
      {"3", "collect \\-\\-check: some combinations are missing, stale, corrupt, unreadable or in flight"},
      {"4", "an evaluation ran but produced no valid result"},
      {"5", "SLURM refused or failed (sbatch, squeue)"},
      {"6", "another mill process held the job (eval) or the output directory's submit lock (schedule)"},
      {"7", "the system refused to write a file (disk full, quota, permissions, I/O); the input was fine"},
      {"75", "a worker stopped early on the pre-walltime signal; it resumes when rerun"},
      {"130", "interrupted with Ctrl\\-C; the journal is flushed and the same command resumes"},
  };
  for (const auto& [code, meaning] : codes) out << ".TP\n.B " << code << "\n" << meaning << "\n";
  out << ".SH SEE ALSO\nThe docs/ directory of mill's source tree: cli.md, schedule.md, eval.md, collect.md, "
         "status.md, backends.md, tasks.md, results.md.\n";
  return out.str();
}

}  // namespace

void register_man_command(CLI::App& app) {
  auto* command = app.add_subcommand("man", "Print mill's manual page (roff): mill man > mill.1; man -l mill.1");
  command->callback([&app] { std::cout << manual_page(summarize_commands(app)); });
}

}  // namespace mill::cli
