#pragma once
// `mill migrate`: moves results written under an earlier spelling of their model (before model identities were
// canonical: `m[dtype=bfloat16]`, `m[use_chat_template=True]`) into the directory of today's spelling, once, so
// that schedule and collect find them. Files are renamed, never rewritten: a result's recorded key still matches
// (job.hpp match_job_key reads recorded model specs under today's rules).
#include <filesystem>
#include <string>
#include <vector>

namespace mill {

struct MovedResultDirectory {
  std::string from;  // the model directory's name under results/
  std::string to;    // the canonical one
  std::size_t files_moved = 0;
  std::vector<std::filesystem::path> kept;  // left in place: the canonical directory already has that file
};

struct MigrationReport {
  std::vector<MovedResultDirectory> directories;
  std::size_t files_moved() const;
};

// The model directories under <output_dir>/results whose name is not the canonical spelling of the model it
// stands for: {directory name, canonical directory name}. One directory listing; no file is read.
std::vector<std::pair<std::string, std::string>> result_directories_to_migrate(const std::filesystem::path& output_dir);

// Moves every file of those directories (results, journals, job lock files) to the same place under the canonical
// directory, unless the canonical directory has a file of that name: then it stays and is reported (a rename
// keeps a held lock valid, since flock(2) locks follow the file). `dry_run` reports and changes nothing. Run it
// while no sweep is writing under the earlier spellings.
MigrationReport migrate_result_directories(const std::filesystem::path& output_dir, bool dry_run);

}  // namespace mill
