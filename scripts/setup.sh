#!/usr/bin/env bash
# Installs every build and test dependency from Debian's archive and builds mill into build/.
# Usage: scripts/setup.sh            (as root, or with sudo available)
#        MILL_BUILD_DIR=dir MILL_SANITIZE=1 scripts/setup.sh   (an ASan+UBSan clang build, with the fuzz targets)
#        MILL_SETUP=product scripts/setup.sh   (only what the product needs; builds without the tests)
# Without root (a cluster login node) see README "Install on a cluster": no script of this kind is needed there.
set -euo pipefail
cd "$(dirname "$0")/.."

# What mill itself needs to build: a C++20 compiler, CMake, Ninja, and the libraries. The remote backends need
# libcurl and cpp-httplib, the model runtime libtorch; both switch off when missing.
product_packages=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libfmt-dev libspdlog-dev libxxhash-dev
  libpcre2-dev libutf8proc-dev libsentencepiece-dev
  libcurl4-openssl-dev libcpp-httplib-dev  # remote backends and `mill serve` (libmill_remote.so)
  libtorch-dev libopenblas0-pthread        # the CPU model runtime (libmill_runtime.so)
)
# What only the tests, benchmarks and fuzzers need.
test_packages=(
  catch2
  sentencepiece python3-jinja2  # reference tokenizers and chat templates the tests compare with
  slurm-wlm slurm-client munge  # the [slurm] tests' single-node cluster (scripts/local-slurm.sh)
  tmux  # the terminal progress and Ctrl-C tests drive mill in a detached tmux session
  hyperfine  # benchmarks (bench/)
  clang libclang-rt-14-dev  # the ASan+UBSan build and the libFuzzer targets
  zsh fish  # the shell completion tests load mill's scripts in them
)
packages=("${product_packages[@]}")
[ "${MILL_SETUP:-all}" = "product" ] || packages+=("${test_packages[@]}")
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${MILL_SETUP:-all}" = "product" ]; then
  cmake -S . -B "${MILL_BUILD_DIR:-build}" -G Ninja -DCMAKE_BUILD_TYPE="${MILL_BUILD_TYPE:-RelWithDebInfo}" \
    -DMILL_BUILD_TESTS=OFF >/dev/null
  exec cmake --build "${MILL_BUILD_DIR:-build}" --parallel "$(nproc)"
fi

# The official openai npm client, pinned in tests/openai_client/package-lock.json, for the test that drives mill serve
# with it (it skips, saying why, when node_modules is absent). Installed again only when the lock file changed.
client=tests/openai_client
if command -v npm >/dev/null 2>&1 &&
  { [ ! -d "$client/node_modules/openai" ] || [ "$client/package-lock.json" -nt "$client/node_modules/.package-lock.json" ]; }; then
  npm ci --prefix "$client" --no-audit --no-fund --loglevel=error >/dev/null ||
    echo "setup: npm ci in $client failed; the openai client test will be skipped" >&2
fi

build_dir=${MILL_BUILD_DIR:-build}
# MILL_BUILD_TYPE=Check (what .ci/run uses) compiles faster for test-only runs; see CMakeLists.txt.
build_type=${MILL_BUILD_TYPE:-RelWithDebInfo}
if [ "${MILL_SANITIZE:-0}" = "1" ]; then
  # One clang build serves the ASan+UBSan test suite and the libFuzzer targets (fuzz/, scripts/fuzz.sh).
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DMILL_FUZZ=ON >/dev/null
else
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
fi
cmake --build "$build_dir" --parallel "$(nproc)"
