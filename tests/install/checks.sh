#!/usr/bin/env bash
# The checks both root scripts run, inside the root as the unprivileged user, on an installed mill tree at PREFIX:
# the libraries resolve, `mill --help`, DESIGN.md's 114-job dry run (over the MMLU CSVs in DATA), a `--local` demo
# sweep and collect, and `mill serve` with an `api[...]` evaluation against it (the remote plugin from lib/mill).
# Usage (in the root): checks.sh PREFIX DATA WORKDIR
set -euo pipefail
prefix=$1
data=$2
work=$3
mill=$prefix/bin/mill
cd "$work"
. /etc/os-release
echo "root: $PRETTY_NAME, glibc $(ldd --version | head -1 | grep -o '[0-9.]*$'), user $(id -un) (uid $(id -u))"
objects=("$mill" "$prefix"/lib/mill/libmill_*.so)
missing=$(ldd "${objects[@]}" | grep "not found" || true)
[ -z "$missing" ] || { echo "unresolved libraries: $missing"; exit 1; }
echo "from the host: $(ldd "${objects[@]}" | grep -v "^/" | grep -v "$prefix/" | awk '{print $1}' | sort -u | tr '\n' ' ')"

"$mill" --help >help.txt
head -1 help.txt
"$mill" --output_dir out --cache_dir cache schedule meta-llama/Meta-Llama-3-8B-Instruct mmlu --n_shots 0,5 \
  --data_dir "$data" --skip_model_check --dry_run >dry_run.txt
grep -E "114 job\(s\)|dry run" dry_run.txt
grep -q "^exec '$mill' " dry_run.txt || { echo "the array script does not run $mill"; exit 1; }
"$mill" --output_dir out --cache_dir cache schedule mill-demo demo --n_shots 0,1 --local >sweep.txt 2>&1
tail -1 sweep.txt
"$mill" --output_dir out --cache_dir cache collect >collect.txt
head -4 collect.txt

"$mill" serve mill-demo --port 0 >serve.out 2>serve.err &
server=$!
for _ in $(seq 100); do grep -q "listening on" serve.out && break; sleep 0.1; done
url=$(grep -o "http://[0-9.:]*" serve.out | head -1)
[ -n "$url" ] || { cat serve.out serve.err; exit 1; }
MILL_REMOTE_DIR=remote "$mill" --output_dir remote-out --cache_dir cache eval "api[base_url=$url/v1,model=mill-demo]" \
  demo --limit 8 --quiet
kill "$server"
wait "$server" || true
echo "remote plugin: evaluated demo through mill serve at $url"
