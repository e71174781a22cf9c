#!/usr/bin/env bash
# P3 (DESIGN.md): start-up of `mill --help` within 5 ms of /bin/true (the model runtime is never loaded).
# Usage: bench/p3_startup.sh [build/mill]
set -euo pipefail
mill=$(realpath "${1:-build/mill}")
json=$(mktemp)
trap 'rm -f "$json"' EXIT
hyperfine -N --warmup 20 --runs 300 --export-json "$json" "/bin/true" "$mill --help" >/dev/null
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
true, mill = r[0]["mean"] * 1000, r[1]["mean"] * 1000
print(f"P3: /bin/true {true:.2f} ms, mill --help {mill:.2f} ms, difference {mill - true:.2f} ms (bar: <= 5 ms)")
PY
if ldd "$mill" | grep -q torch; then echo "P3: FAIL: mill links libtorch"; exit 1; fi
