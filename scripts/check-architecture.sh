#!/usr/bin/env bash
# The grep checks of docs/architecture.md: each prints what breaks it and the script fails (ctest runs it as
# `architecture_checks`; the include order between stages is the separate `layering` test).
#   scripts/check-architecture.sh [SOURCE_DIR]
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2
stages="src/base src/tokenizers src/model src/eval src/sweep src/collect"
failed=0

# check NAME EXPECTED_FILES COMMAND...: the files COMMAND lists must be exactly EXPECTED_FILES (space-separated).
check() {
  local name=$1 expected=$2
  shift 2
  local found
  found=$("$@" 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//')
  if [[ "$found" != "$expected" ]]; then
    echo "architecture check failed: $name"
    echo "  expected: ${expected:-(no file)}"
    echo "  found:    ${found:-(no file)}"
    failed=1
  fi
}

# One owner per file on disk.
check "the manifest schema is named in one place" "include/mill/sweep/manifest.hpp" \
  grep -rlF '"mill.manifest/1"' src include
check "the manifest is parsed in one file" "src/sweep/manifest.cpp" \
  grep -rl 'kManifestSchema' src
check "the result file-name pattern is spelled once" "src/eval/job.cpp" \
  grep -rlE 'shot-limit' src
check "the journal's suffix is spelled once" "src/eval/job.cpp" grep -rlF '.journal.jsonl' src
check "the result schema is named by its builder and its parser" "src/eval/engine.cpp src/eval/results.cpp" \
  grep -rl 'kResultSchema' src
check "the element files' fields are written and read in one file" "src/sweep/element_files.cpp" \
  grep -rlE '"(jobs_total|job_index|exit_code)"' src
# The ground floor: each service written once.
check "the host name is asked for in one place" "src/base/host.cpp" grep -rl 'gethostname' src
check "UTC time is formatted in one place" "src/base/host.cpp" grep -rlE 'gmtime_r|gmtime\(' src
check "shell quoting is written once" "src/base/shell.cpp" grep -rlF "'\\\\''" src
# Library code returns; the CLI prints. The progress display (base/progress.cpp) is the one terminal writer the
# library has: the worker hands it result and message lines, and the CLI decides where it writes.
check "library code does not print" "src/base/progress.cpp" \
  grep -rlE 'std::cout|std::cerr|fmt::print|std::printf|std::puts|\bprintf\(' $stages
check "the library does not parse command lines" "" grep -rl 'CLI/CLI.hpp' $stages include
check "no flat library folder is left" "" find src/lib include/mill -maxdepth 1 -name '*.[ch]pp'

exit $failed
