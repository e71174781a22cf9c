#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each over its corpus in fuzz/corpus/<name>/.
# Usage: scripts/fuzz.sh [RUNS]     default 1000000 executions per target; CI uses a short smoke run.
# MILL_FUZZ_BUILD_DIR: build directory (default build-fuzz). MILL_FUZZ_MAX_SECONDS: per-target time bound
# (default 0: none), so a smoke run stays short however slow the machine is.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
build_dir=${MILL_FUZZ_BUILD_DIR:-build-fuzz}
max_seconds=${MILL_FUZZ_MAX_SECONDS:-0}
# A build directory that exists keeps its configuration (CI passes build-asan, which also holds the test suite).
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DMILL_FUZZ=ON -DMILL_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build_dir" --target fuzz_targets --parallel "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for target in "$build_dir"/fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus=fuzz/corpus/${name#fuzz_}
  mkdir -p "$corpus"
  # New inputs go to a scratch directory so a run never rewrites the committed corpus.
  scratch=$(mktemp -d)
  echo "fuzz: $name, $runs runs" >&2
  status=0
  "$target" "$scratch" "$corpus" -runs="$runs" -max_total_time="$max_seconds" -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$scratch/" >"$scratch.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" "$scratch.log" || true
  if [ "$status" -ne 0 ]; then
    mkdir -p fuzz/crashes && cp "$scratch"/crash-* "$scratch"/leak-* "$scratch"/timeout-* fuzz/crashes/ 2>/dev/null || true
    tail -n 40 "$scratch.log" >&2
  fi
  rm -f "$scratch.log"
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then echo "fuzz: $name FAILED (exit $status); inputs in fuzz/crashes/" >&2; exit 1; fi
done
echo "fuzz: all targets passed" >&2
