#!/usr/bin/env bash
# On-demand check of mill's runtime against llama.cpp (not run by CI: it needs npm and about 10 s per family).
# For each family: `mill demo-model --llamacpp_compatible` writes random float32 weights as a Hugging Face folder
# (the variant llama.cpp can represent: the plain demo except for qwen3_moe, gemma2, gemma3 and phi3, see
# docs/runtime.md), hf_to_gguf.mjs writes the same weights as GGUF the way llama.cpp's converter would, score.mjs
# scores fixed token ids with llama.cpp's prebuilt CPU build (node-llama-cpp 3.22.1, F32 KV cache), and
# mill_tests "[llamacpp]" scores the same ids with mill and compares per token (Gemma: see docs/runtime.md for its
# GELU table). docs/runtime.md has the figures.
#
#   tests/llamacpp/run.sh [FAMILY ...]      (default: llama qwen3 qwen3_moe olmo2 mixtral gemma2 gemma3 phi3)
# Environment: BUILD_DIR (default build), NODE_LLAMA_CPP_DIR (an npm folder; installed there when missing,
# default ~/.cache/mill/node-llama-cpp), KEEP=1 keeps the work folder, UPDATE=1 rewrites the families run in
# tests/data/llamacpp/demo-logprobs.json (llama.cpp's numbers, which CI holds mill to without npm; needed when the
# demo checkpoints change) and keeps the others.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-$root/build}
npm_dir=${NODE_LLAMA_CPP_DIR:-$HOME/.cache/mill/node-llama-cpp}
if [ ! -d "$npm_dir/node_modules/node-llama-cpp" ]; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund node-llama-cpp@3.22.1)
fi
export NODE_LLAMA_CPP="$npm_dir/node_modules/node-llama-cpp"
work=$(mktemp -d)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; else echo "work folder: $work"; fi
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(llama qwen3 qwen3_moe olmo2 mixtral gemma2 gemma3 phi3)
for family in "${families[@]}"; do
  dir="$work/$family"
  "$build/mill" demo-model "$dir" --architecture "$family" --llamacpp_compatible >/dev/null
  node "$here/hf_to_gguf.mjs" "$dir" "$dir/model.gguf"
  # Two fixed pseudo-random sequences of 60 ids after the end-of-text token (the demo's BOS).
  node -e '
    const vocab = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).vocab_size;
    let state = 12345;
    const next = () => (state = (state * 1103515245 + 12345) % 2147483648) % (vocab - 1);
    const sequences = [0, 1].map(() => [vocab - 1, ...Array.from({ length: 60 }, next)]);
    console.log(JSON.stringify({ sequences }));' "$dir/config.json" > "$dir/ids.json"
  node "$here/score.mjs" "$dir/model.gguf" "$dir/ids.json" "$dir/llamacpp.json"
done
MILL_LLAMACPP_WORK="$work" "$build/tests/mill_tests" "[llamacpp]"
if [ "${UPDATE:-0}" = 1 ]; then
  # Replaces the families just run and keeps the others.
  node -e '
    const fs = require("fs"), path = require("path");
    const [work, out, ...families] = process.argv.slice(1);
    const result = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, "utf8")) : { families: {} };
    result.source = "tests/llamacpp/run.sh with UPDATE=1: llama.cpp (npm node-llama-cpp 3.22.1, prebuilt CPU build, F32 KV cache) on mill demo-model --llamacpp_compatible checkpoints written as GGUF by tests/llamacpp/hf_to_gguf.mjs";
    for (const family of families) {
      const read = (name) => JSON.parse(fs.readFileSync(path.join(work, family, name), "utf8"));
      result.families[family] = { sequences: read("ids.json").sequences,
                                  logprobs: read("llamacpp.json").logprobs.map((s) => s.map((x) => Math.round(x * 1e9) / 1e9)) };
    }
    fs.writeFileSync(out, JSON.stringify({ source: result.source, families: result.families }));' "$work" "$root/tests/data/llamacpp/demo-logprobs.json" "${families[@]}"
fi
