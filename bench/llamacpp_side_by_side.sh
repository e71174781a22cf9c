#!/usr/bin/env bash
# mill's runtime side by side with llama.cpp on the same weights (docs/performance.md, issue 20).
#   bench/llamacpp_side_by_side.sh [ROUNDS]        (default 3; run at normal priority on a machine as quiet as it gets)
# Writes one random Llama (hidden 768, 6 layers, 12 heads, 4 KV heads, MLP 2048, vocabulary 32,000: 87 M
# parameters) as safetensors (F32 and BF16) for mill and as GGUF (F32 and BF16, tests/llamacpp/hf_to_gguf.mjs) for
# llama.cpp from npm node-llama-cpp 3.22.1 (installed into NODE_LLAMA_CPP_DIR as tests/llamacpp/run.sh does), then
# runs ROUNDS interleaved rounds (mill f32, llama.cpp F32, mill bf16, llama.cpp BF16; each a fresh process that
# loads its model and runs the whole workload, bench/llamacpp_mill_side.cpp) and prints the medians and ratios:
# prefill of 4,431 tokens in 512-token windows and as whole documents, MMLU 5-shot 20 questions, peak resident set,
# and the prefill against llama.cpp's forward alone (the same tokens without per-position log-probabilities);
# then per-token agreement (llama.cpp with an F32 KV cache here; the timed llama.cpp runs use its default F16 cache).
# Environment: BUILD_DIR (default build; needs the llamacpp_mill_side target), THREADS (default: the CPUs of this
# process), NODE_LLAMA_CPP_DIR, MMLU_DIR (default ../shared/data/mmlu), KEEP=1 keeps the work folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${BUILD_DIR:-$root/build}
rounds=${1:-3}
threads=${THREADS:-$(nproc)}
npm_dir=${NODE_LLAMA_CPP_DIR:-$HOME/.cache/mill/node-llama-cpp}
mmlu=${MMLU_DIR:-$root/../shared/data/mmlu}
side="$build/bench/llamacpp_mill_side"
[ -x "$side" ] || { echo "llamacpp_side_by_side: build it first: ninja -C $build llamacpp_mill_side" >&2; exit 1; }
if [ ! -d "$npm_dir/node_modules/node-llama-cpp" ]; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund node-llama-cpp@3.22.1)
fi
export NODE_LLAMA_CPP="$npm_dir/node_modules/node-llama-cpp"
work=$(mktemp -d)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; else echo "work folder: $work"; fi

"$build/mill" demo-model "$work/tokenizer" >/dev/null
node "$here/llamacpp_write_model.mjs" "$work/model" "$work/tokenizer"
node "$root/tests/llamacpp/hf_to_gguf.mjs" "$work/model/f32" "$work/model-f32.gguf" f32
node "$root/tests/llamacpp/hf_to_gguf.mjs" "$work/model/f32" "$work/model-bf16.gguf" bf16
"$side" prepare "$work/model/f32" "$mmlu" "$work/workload.json"

for round in $(seq 1 "$rounds"); do
  "$side" run "$work/model/f32" "$work/workload.json" float32 "$threads" "$work/mill-f32-$round.json"
  node "$here/llamacpp_side.mjs" "$work/model-f32.gguf" "$work/workload.json" "$threads" f16 "$work/llama-f32-$round.json"
  "$side" run "$work/model/bf16" "$work/workload.json" bfloat16 "$threads" "$work/mill-bf16-$round.json"
  node "$here/llamacpp_side.mjs" "$work/model-bf16.gguf" "$work/workload.json" "$threads" f16 "$work/llama-bf16-$round.json"
  echo "round $round of $rounds done (load average $(cut -d' ' -f1 /proc/loadavg))"
done
node "$here/llamacpp_side.mjs" "$work/model-f32.gguf" "$work/workload.json" "$threads" f32 "$work/llama-f32-kvf32.json"
node "$here/llamacpp_side.mjs" "$work/model-bf16.gguf" "$work/workload.json" "$threads" f32 "$work/llama-bf16-kvf32.json"

node - "$work" "$rounds" "$threads" <<'EOF'
const fs = require("fs"), path = require("path");
const [work, rounds, threads] = process.argv.slice(2);
const read = (name) => JSON.parse(fs.readFileSync(path.join(work, name), "utf8"));
const runs = (kind) => Array.from({ length: Number(rounds) }, (_, i) => read(`${kind}-${i + 1}.json`));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const spread = (xs) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;
console.log(`threads ${threads}, ${rounds} interleaved rounds; medians (range) in seconds / MB`);
for (const dtype of ["f32", "bf16"]) {
  const mill = runs(`mill-${dtype}`), llama = runs(`llama-${dtype}`);
  for (const key of ["windows_seconds", "documents_seconds", "mmlu_seconds", "peak_rss_mb"]) {
    const m = mill.map((r) => r[key]), l = llama.map((r) => r[key]);
    console.log(`${dtype} ${key.padEnd(18)} mill ${median(m).toFixed(2)} (${spread(m)})  llama.cpp ${median(l).toFixed(2)} (${spread(l)})  ratio ${(median(m) / median(l)).toFixed(2)}`);
  }
  // mill's scored runs against llama.cpp's forward alone (no per-position log-probs): the ratio mill cannot flatter.
  for (const part of ["windows", "documents"]) {
    const m = mill.map((r) => r[`${part}_seconds`]), l = llama.map((r) => r[`${part}_forward_seconds`]);
    console.log(`${dtype} ${(part + " vs forward").padEnd(18)} mill ${median(m).toFixed(2)} (${spread(m)})  llama.cpp forward only ${median(l).toFixed(2)} (${spread(l)})  ratio ${(median(m) / median(l)).toFixed(2)}`);
  }
}
const flat = (r) => r.window_logprobs.flat();
const compare = (name, a, b) => {
  let max = 0, sum = 0;
  for (let i = 0; i < a.length; ++i) { const d = Math.abs(a[i] - b[i]); max = Math.max(max, d); sum += d; }
  console.log(`${name.padEnd(44)} mean |Δ| ${(sum / a.length).toExponential(2)}  max ${max.toExponential(2)}  (${a.length} tokens)`);
};
const millF32 = flat(read("mill-f32-1.json")), millBf16 = flat(read("mill-bf16-1.json"));
const llamaF32 = flat(read("llama-f32-kvf32.json")), llamaBf16 = flat(read("llama-bf16-kvf32.json"));
compare("mill float32 vs llama.cpp F32 (F32 KV)", millF32, llamaF32);
compare("mill bfloat16 vs mill float32", millBf16, millF32);
compare("llama.cpp BF16 vs llama.cpp F32 (F32 KV)", llamaBf16, llamaF32);
compare("mill bfloat16 vs llama.cpp BF16 (F32 KV)", millBf16, llamaBf16);
EOF
