#!/usr/bin/env bash
# On a GPU machine with a CUDA PyTorch (and transformers): builds the runtime plugin against that libtorch, runs
# the runtime tests on the GPU and cross-checks the numbers with transformers. Debian packages for the non-torch
# dependencies are unpacked from DEBS (a folder of .deb files) into a private root.
# Usage: tests/gpu/run.sh DEBS OUT
set -euo pipefail
debs=$1
out=$2
root=$(mktemp -d)
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
# The unversioned .so links of -dev packages point at the runtime packages' files, unpacked above too.
build=$(mktemp -d)
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S "$(dirname "$0")" -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DMILL_DEB_ROOT="$root" >"$out/cmake.log" 2>&1 ||
  { tail -30 "$out/cmake.log"; exit 1; }
ninja -C "$build" >"$out/build.log" 2>&1 || { grep -E "error|Error" -A3 "$out/build.log" | head -40; exit 1; }
echo "built: $(ls "$build"/libmill_runtime.so)"; ldd "$build/libmill_runtime.so" | grep -E "torch_cuda|cudart" || true
MILL_TEST_DEVICE=cuda "$build/runtime_tests" "[runtime]" 2>&1 | grep -v '\[info\]' | tail -15
MILL_RUNTIME_PLUGIN="$build/libmill_runtime.so" "$build/reference_check" "$out/check" cuda
cp "$out/check/runtime.json" "$out/"
python3 "$(dirname "$0")/compare_transformers.py" "$out/check"
cp "$out/check/comparison.json" "$out/"
rm -rf "$out/check"
