#!/usr/bin/env bash
# The release tarball on a host that is not the one it was built on: a minimal Debian root of another release (trixie
# by default; debootstrap's minbase, so the C library, libstdc++ and coreutils, and none of the -dev packages or
# libraries mill was built with), where an unprivileged user unpacks it, moves the tree, and runs `mill --help`, the
# 114-job dry run of DESIGN.md's example and a `--local` demo sweep, then `mill serve` and an `api[...]` evaluation
# against it (the remote plugin and its bundled libcurl loaded from lib/mill). As root (chroot); not part of CI:
# docs/install.md records what it showed and how long it took.
# Usage: tests/install/tarball-in-root.sh TARBALL [ROOT]
#   ROOT defaults to /var/tmp/mill-install/trixie-minbase and is kept for the next run (MILL_ROOT_SUITE: the release).
#   The MMLU CSVs come from $MILL_DATA_DIR or ../shared/data beside the checkout.
set -euo pipefail
tarball=$(realpath "$1")
root=${2:-/var/tmp/mill-install/trixie-minbase}
suite=${MILL_ROOT_SUITE:-trixie}
here=$(cd "$(dirname "$0")" && pwd)
data=${MILL_DATA_DIR:-$here/../../../shared/data}
[ -d "$data/mmlu" ] || { echo "tarball-in-root: no MMLU data under $data (set MILL_DATA_DIR)" >&2; exit 2; }
started=$SECONDS
"$here/make-root.sh" "$suite" "$root"
prepared=$SECONDS

run=$root/home/builder/run
rm -rf "$run"
mkdir -p "$run/data"
cp "$tarball" "$run/"
cp -r "$data/mmlu" "$run/data/"
cp "$here/checks.sh" "$run/"
chroot "$root" chown -R builder:builder /home/builder/run

# A private mount namespace with its own /proc (mill finds its plugins through /proc/self/exe), torn down on exit.
unshare --mount --pid --fork --mount-proc="$root/proc" \
  chroot "$root" runuser -u builder -- env -i HOME=/home/builder PATH=/usr/bin:/bin TARBALL="$(basename "$tarball")" \
  bash -euo pipefail -c '
cd ~/run
tar -xzf "$TARBALL"
mkdir -p ~/opt
rm -rf ~/opt/mill
mv mill-*/ ~/opt/mill   # moved after unpacking: nothing may point at where it was unpacked
./checks.sh ~/opt/mill ~/run/data ~/run
'
echo "tarball-in-root: passed; root ready in $((prepared - started)) s, checks took $((SECONDS - prepared)) s"
