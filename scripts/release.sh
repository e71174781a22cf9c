#!/usr/bin/env bash
# Builds the relocatable release tarball, mill-<version>-linux-<arch>.tar.gz in the build folder: bin/mill and the
# remote plugin with every shared library they load bundled in lib/mill except the C library and libstdc++, the manual
# page, shell completions and docs (docs/install.md). The model runtime is not in it: it is built on the cluster
# against the cluster's PyTorch. Prints the newest glibc and libstdc++ symbol versions the files ask for: the floor
# a host must meet.
# Usage: scripts/release.sh [BUILD_DIR]     (default build-release; needs the packages of MILL_SETUP=product)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build-release}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMILL_BUNDLE_LIBS=ON -DMILL_BUILD_RUNTIME=OFF \
  -DMILL_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" --parallel "$(nproc)"
(cd "$build_dir" && cpack -G TGZ >/dev/null)
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
tarball=$(ls "$build_dir"/mill-"$version"-linux-*.tar.gz)

unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$tarball" -C "$unpacked"
newest() { grep -ho "$1[0-9.]*" | sort -uV | tail -1; }
symbols=$(find "$unpacked" -type f \( -name mill -o -name '*.so*' \) -exec objdump -T {} + 2>/dev/null || true)
echo "release: $tarball ($(du -h "$tarball" | cut -f1)), $(find "$unpacked" -type f -path '*/lib/mill/*.so*' ! -name 'libmill_*' | wc -l) bundled libraries in lib/mill"
echo "release: needs glibc >= $(newest GLIBC_ <<<"$symbols" | cut -d_ -f2), libstdc++ with $(newest GLIBCXX_ <<<"$symbols")," \
  "CXXABI $(newest CXXABI_1 <<<"$symbols" | cut -d_ -f2)"
