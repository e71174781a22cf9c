#!/usr/bin/env bash
# Installs every build and test dependency from Debian's archive and builds mill into build/.
# Usage: scripts/setup.sh            (as root, or with sudo available)
#        MILL_BUILD_DIR=dir MILL_SANITIZE=1 scripts/setup.sh   (an ASan+UBSan clang build, with the fuzz targets)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libfmt-dev libspdlog-dev catch2 libxxhash-dev
  libpcre2-dev libcurl4-openssl-dev libcpp-httplib-dev
  libutf8proc-dev libsentencepiece-dev sentencepiece python3-jinja2
  libtorch-dev libopenblas0-pthread
  slurm-wlm slurm-client munge
  tmux  # tests: the terminal progress and Ctrl-C tests drive mill in a detached tmux session
  hyperfine clang libclang-rt-14-dev
  zsh fish  # the shell completion tests load mill's scripts in them
)
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
