#!/usr/bin/env bash
# Makes (or reuses) a minimal Debian root with debootstrap from Debian's archive, for the install checks in this folder:
# the `minbase` variant (essential and required packages: the C library, libstdc++, coreutils, util-linux) plus the
# packages named. No -dev package unless named. As root. The root is reused while its package list is unchanged.
# Usage: tests/install/make-root.sh SUITE DIR [PACKAGE...]
set -euo pipefail
suite=$1
root=$2
shift 2
wanted="$suite minbase $*"
stamp=$root/.mill-root
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "make-root: reusing $root ($wanted)" >&2
  exit 0
fi
rm -rf "$root"
mkdir -p "$root"
started=$SECONDS
debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian >"$root.debootstrap.log" 2>&1 ||
  { tail -20 "$root.debootstrap.log" >&2; exit 1; }
if (($#)); then
  # apt inside the root resolves the packages' dependencies (recommended packages left out).
  chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $*" \
    >>"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log" >&2; exit 1; }
  chroot "$root" apt-get clean
fi
# An unprivileged user to run everything as.
chroot "$root" useradd --create-home --shell /bin/bash builder
echo "$wanted" >"$stamp"
echo "make-root: $root ($wanted) made in $((SECONDS - started)) s, $(du -sh "$root" | cut -f1)" >&2
