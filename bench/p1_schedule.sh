#!/usr/bin/env bash
# P1 (DESIGN.md): `mill schedule --dry_run` for 10 models × mmlu+mmlu_pro (71 tasks) × 3 n_shots = 2130 jobs
# with 100,000 result files in the output dir, against a `find` over the same tree in the same run.
# Bars: ≤ 2× the find time and ≤ 50 ms, with the preflight of tasks and data (the real MMLU and MMLU-Pro files
# under ../shared/data) but not of models (--skip_model_check). A third command measures the same plan with the
# model check too, over a hub cache holding the 10 models (config.json, shards, tokenizer: names and small files).
# Usage: bench/p1_schedule.sh [build/mill] [data dir]
set -euo pipefail
mill=$(realpath "${1:-build/mill}")
data=$(realpath "${2:-$(dirname "$0")/../../shared/data}")
[ -d "$data/mmlu" ] && [ -d "$data/mmlu_pro" ] || { echo "p1: no MMLU/MMLU-Pro data under $data" >&2; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$work/out
export MILL_CACHE_DIR=$work/cache HF_HUB_CACHE=$work/hub MILL_DATA_DIR=$data
models=$(printf 'org/model-%d,' $(seq 0 9))
models=${models%,}
for i in $(seq 0 9); do
  snapshot=$HF_HUB_CACHE/models--org--model-$i/snapshots/0123456789abcdef
  mkdir -p "$snapshot" "$HF_HUB_CACHE/models--org--model-$i/refs"
  echo 0123456789abcdef > "$HF_HUB_CACHE/models--org--model-$i/refs/main"
  echo '{"architectures": ["LlamaForCausalLM"]}' > "$snapshot/config.json"
  echo '{"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}' > "$snapshot/model.safetensors.index.json"
  touch "$snapshot/model-1.safetensors" "$snapshot/model-2.safetensors" "$snapshot/tokenizer.json"
done
args=(--output_dir "$out" schedule "$models" mmlu,mmlu_pro --n_shots 0,1,5 --cluster local --dry_run --skip_model_check)

# 1. Valid results for every planned job (so every one is read and parsed: the worst case for the scan)...
"$mill" "${args[@]}" --json > "$work/plan.json"
python3 - "$work/plan.json" "$out" <<'PY'
import json, os, sys
plan = json.load(open(sys.argv[1])); out = sys.argv[2]
def result(job, key):
    return json.dumps({"schema": "mill.result/1", "key": key, "key_inputs": {}, "model": job["model"],
        "task": job["task"], "n_shot": job["n_shot"], "n_samples": 100,
        "metrics": {"acc": {"value": 0.5, "stderr": 0.05}}, "provenance": {"host": "bench", "wall_seconds": 60.0}}, indent=2)
count = 0
for job in plan["jobs"]:
    os.makedirs(os.path.dirname(job["result"]), exist_ok=True)
    open(job["result"], "w").write(result(job, job["key"])); count += 1
# 2. ...and other models' results up to 100,000 files in all.
i = 0
while count < 100000:
    d = os.path.join(out, "results", f"other__model-{i // 2000}", f"task_{(i // 10) % 200}")
    os.makedirs(d, exist_ok=True)
    job = {"model": f"other/model-{i // 2000}", "task": f"task_{(i // 10) % 200}", "n_shot": i % 10}
    open(os.path.join(d, f"{i % 10}shot.json"), "w").write(result(job, "0" * 32)); count += 1; i += 1
print(f"{count} result files written", file=sys.stderr)
PY
done=$("$mill" "${args[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["done"])')
echo "planned jobs found done: $done (expected 2130)"
hyperfine -N --warmup 3 --runs 20 --export-json "$work/p1.json" \
  "find $out -type f" \
  "$mill ${args[*]}" \
  "$mill ${args[*]:0:${#args[@]}-1}" >/dev/null
python3 - "$work/p1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
find, mill, checked = (x["mean"] * 1000 for x in r[:3])
print(f"P1: find {find:.1f} ms, mill schedule --dry_run {mill:.1f} ms, ratio {mill / find:.2f} (bars: <= 2.0 and <= 50 ms)")
print(f"    with the model check too: {checked:.1f} ms")
PY
