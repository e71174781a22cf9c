#!/usr/bin/env bash
# P2 (DESIGN.md): `mill collect` over 100,000 result files that carry bootstrap standard errors, against reading
# the same bytes (`cat` of every result file via find | xargs) in the same hyperfine run. Bar: ≤ 3× the read.
# The tree: 470 models × mmlu+mmlu_pro (71 tasks) × n_shots 0,1,5 = 100,110 results, each shaped like the
# engine's (metrics with bootstrap stderr and n, counts, data fingerprints, provenance), with the keys mill
# computes, so --check (on by default) recomputes and compares every key and finds all of them done.
# Usage: bench/p2_collect.sh [build/mill] [runs]
set -euo pipefail
mill=$(realpath "${1:-build/mill}")
runs=${2:-5}
# P2_WORK=dir keeps the generated tree there and reuses it on the next run (for profiling).
if [ -n "${P2_WORK:-}" ]; then
  work=$P2_WORK
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
out=$work/out
export MILL_CACHE_DIR=$work/cache HF_HUB_CACHE=$work/hub
models=$(printf 'org/model-%03d,' $(seq 0 469))
models=${models%,}

# 1. The plan gives every job's key and result path; write an engine-shaped result for each.
if [ ! -f "$work/generated" ]; then
# The models are names only and no data is needed: the preflight's problems (no hub cache entries, no data dir)
# make the dry run exit 2, but its JSON still holds every job's key and result path.
"$mill" --output_dir "$out" schedule "$models" mmlu,mmlu_pro --n_shots 0,1,5 --cluster local --dry_run --json \
  --skip_model_check > "$work/plan.json" 2>/dev/null || [ $? -eq 2 ]
python3 - "$work/plan.json" <<'PY'
import json, os, random, sys
plan = json.load(open(sys.argv[1]))
rng = random.Random(1)
count = 0
for job in plan["jobs"]:
    generative = job["task"].startswith("mmlu_pro_")
    n = rng.randint(100, 1500)
    def metric(p):
        return {"value": p, "stderr": round((p * (1 - p) / n) ** 0.5 * rng.uniform(0.97, 1.03), 6), "n": n}
    acc = round(rng.uniform(0.25, 0.9), 6)
    metrics = ({"exact_match": metric(acc), "unparsed_rate": metric(round(rng.uniform(0, 0.1), 6)),
                "hit_token_limit_rate": metric(round(rng.uniform(0, 0.05), 6))} if generative else
               {"acc": metric(acc), "acc_norm": metric(acc), "greedy_acc": metric(round(acc * 0.8, 6))})
    key_inputs = {"model": job["model"], "model_revision": "unresolved", "task": job["task"],
                  "task_fingerprint": "f" * 32, "n_shot": job["n_shot"], "limit": None, "scoring_version": 1}
    doc = {"schema": "mill.result/1", "key": job["key"], "key_inputs": key_inputs, "model": job["model"],
           "model_identity": job["model"], "task": job["task"], "benchmark": "mmlu_pro" if generative else "mmlu",
           "limit": None, "output_type": "generative" if generative else "logprobs",
           "primary_metric": "exact_match" if generative else "acc", "n_shot": job["n_shot"], "n_samples": n,
           "metrics": metrics, "counts": {"samples": n, "resumed": 0, "evaluated": n},
           "data": {"eval": {"split": "test", "origin": "mmlu/test/x.csv", "fingerprint": "a" * 32, "documents": n}},
           "journal": f"{job['n_shot']}shot.journal.jsonl",
           "provenance": {"mill_version": "0.1.0", "scoring_version": 1, "host": "node001", "device": "cuda:0",
                          "dtype": "bfloat16", "batch_size": 16, "backend": {"name": "local"},
                          "slurm": {"job_id": "123", "array_job_id": "120", "array_task_id": "3"},
                          "started_at": "2026-11-25T08:00:00Z", "finished_at": "2026-11-25T08:05:00Z",
                          "wall_seconds": 300.0, "tokens": {"total": n * 300, "this_run": n * 300},
                          "bootstrap": {"resamples": 1000, "seed": 1234}}}
    os.makedirs(os.path.dirname(job["result"]), exist_ok=True)
    with open(job["result"], "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
    count += 1
print(f"{count} result files written", file=sys.stderr)
PY
touch "$work/generated"
fi
bytes=$(find "$out/results" -name '*.json' -print0 | du -cb --files0-from=- | tail -1 | cut -f1)
echo "tree: $(find "$out/results" -name '*.json' | wc -l) result files, $((bytes / 1000000)) MB"
status=0
"$mill" --output_dir "$out" collect > "$work/collect.out" || status=$?
head -5 "$work/collect.out"
echo "collect exit status with --check: $status (0 = every result found done)"

# 2. Same run, same page cache: reading the bytes vs collecting them (aggregate + rollups + --check + report).
hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/p2.json" \
  --command-name "cat all result files" "bash -c \"find $out/results -name '*.json' -print0 | xargs -0 cat > /dev/null\"" \
  --command-name "mill collect" "$mill --output_dir $out collect" >/dev/null
python3 - "$work/p2.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
read, collect = r[0]["mean"], r[1]["mean"]
print(f"P2: reading the bytes {read * 1000:.0f} ms, mill collect {collect * 1000:.0f} ms, ratio {collect / read:.2f} (bar: <= 3.0)")
PY
