#!/usr/bin/env bash
# Runs the whole test suite: installs dependencies, builds, runs every test through CTest.
# Usage: scripts/test.sh              (normal build in build/)
#        scripts/test.sh --sanitize   (clang ASan+UBSan build in build-asan/, which also holds the fuzz targets;
#                                      without the [slurm] and [agreement] tests, see docs/reliability.md)
set -euo pipefail
cd "$(dirname "$0")/.."
skip=()
if [ "${1:-}" = "--sanitize" ]; then
  export MILL_BUILD_DIR=build-asan MILL_SANITIZE=1
  # The [slurm] tests drive the same mill code as the local ones, and most of their time is SLURM's own
  # scheduling; the [agreement] tests compare numbers over large real data: both run once, in the normal build.
  skip=(--label-exclude 'slurm|agreement')
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
build_dir=${MILL_BUILD_DIR:-build}
scripts/setup.sh
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j "$(nproc)" "${skip[@]}"
