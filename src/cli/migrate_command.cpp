// `mill migrate [--dry_run]`: moves results written under an earlier spelling of their model into the canonical
// directory (include/mill/eval/migrate.hpp, docs/results.md "Model identity").
#include <fmt/format.h>
#include <iostream>

#include "commands.hpp"
#include "mill/eval/migrate.hpp"

namespace mill::cli {

namespace {
struct MigrateOptions {
  bool dry_run = false;
};

void run_migrate(const GlobalOptions& global, const MigrateOptions& options) {
  const auto output_dir = global.output_dir_path();
  const auto report = migrate_result_directories(output_dir, options.dry_run);
  const char* verb = options.dry_run ? "would move" : "moved";
  for (const auto& directory : report.directories) {
    std::cout << fmt::format("results/{} -> results/{}: {} {} file(s)", directory.from, directory.to, verb,
                             directory.files_moved);
    if (!directory.kept.empty()) {
      std::cout << fmt::format(", {} left in place (the canonical directory has its own)", directory.kept.size());
    }
    std::cout << "\n";
    for (const auto& kept : directory.kept) std::cout << "  kept: " << kept.string() << "\n";
  }
  std::cout << fmt::format("{}: {} {} file(s) from {} model director{}{}\n", output_dir.string(), verb,
                           report.files_moved(), report.directories.size(),
                           report.directories.size() == 1 ? "y" : "ies",
                           report.directories.empty() ? " (every model directory already has its canonical name)" : "");
}
}  // namespace

void register_migrate_command(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<MigrateOptions>();
  auto* command = app.add_subcommand(
      "migrate", "Move results written under an earlier spelling of their model (m[dtype=bfloat16]) to its canonical "
                 "directory (m), so schedule and collect find them");
  add_flag(*command, "dry_run", options->dry_run, "Say what would move; change nothing");
  command->callback([&global, options] { run_migrate(global, *options); });
}

}  // namespace mill::cli
