#!/usr/bin/env bash
# A source build without root and without any of mill's libraries installed: a minimal Debian root of another
# release (trixie by default) with only a compiler, CMake and Ninja, a clean clone of this repository's HEAD, and the
# pinned dependency sources of cmake/dependencies.cmake handed over through FETCHCONTENT_SOURCE_DIR_<NAME> (downloaded
# here from the first URL of each pin, Debian's archive, and checked against the pinned SHA-256), configured with
# FETCHCONTENT_FULLY_DISCONNECTED=ON; built, installed to a prefix and moved by an unprivileged user, who then runs
# the checks of checks.sh. As root (chroot); not part of CI: docs/install.md records what it showed.
# Usage: tests/install/source-build-in-root.sh [ROOT]
#   ROOT defaults to /var/tmp/mill-install/trixie-build (kept for the next run); MILL_ROOT_SUITE: the release;
#   MILL_SOURCE_CACHE: where the downloaded tarballs are kept (default /var/tmp/mill-install/tarballs);
#   MILL_BUILD_TYPE: the build type (default Release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=${1:-/var/tmp/mill-install/trixie-build}
suite=${MILL_ROOT_SUITE:-trixie}
cache=${MILL_SOURCE_CACHE:-/var/tmp/mill-install/tarballs}
build_type=${MILL_BUILD_TYPE:-Release}
data=${MILL_DATA_DIR:-$repo/../shared/data}
[ -d "$data/mmlu" ] || { echo "source-build-in-root: no MMLU data under $data (set MILL_DATA_DIR)" >&2; exit 2; }
started=$SECONDS
"$here/make-root.sh" "$suite" "$root" g++ cmake ninja-build

home=$root/home/builder
rm -rf "$home/deps" "$home/mill" "$home/build" "$home/run" "$home/opt"
mkdir -p "$cache" "$home/deps" "$home/run/data"
# Each pin: its name, the first URL (Debian's archive) and the SHA-256.
pool=$(sed -n 's/^set(mill_debian_pool "\(.*\)")$/\1/p' "$repo/cmake/dependencies.cmake")
pins=$(awk '/^FetchContent_Declare\(/ { sub(/^FetchContent_Declare\(/, ""); name = $1; url = "" }
            /^  URL / && !url { url = $2 }
            /URL_HASH SHA256=/ { sub(/.*SHA256=/, ""); sub(/\)$/, "", $1); print name, url, $1 }' "$repo/cmake/dependencies.cmake")
source_dirs=()
while read -r name url sha; do
  url=${url//\$\{mill_debian_pool\}/$pool}
  file=$cache/$(basename "$url")
  [ -f "$file" ] || curl -fsSL -o "$file" "$url"
  echo "$sha  $file" | sha256sum --check --quiet || { echo "source-build-in-root: $file does not match its pin" >&2; exit 1; }
  mkdir -p "$home/deps/$name"
  tar -xf "$file" -C "$home/deps/$name" --strip-components=1
  upper=$(tr '[:lower:]' '[:upper:]' <<<"$name")
  source_dirs+=("-DFETCHCONTENT_SOURCE_DIR_$upper=/home/builder/deps/$name")
done <<<"$pins"
git clone -q "$repo" "$home/mill"
cp -r "$data/mmlu" "$home/run/data/"
cp "$here/checks.sh" "$home/run/"
chroot "$root" chown -R builder:builder /home/builder
prepared=$SECONDS

unshare --mount --pid --fork --mount-proc="$root/proc" \
  chroot "$root" runuser -u builder -- env -i HOME=/home/builder PATH=/usr/bin:/bin \
  BUILD_TYPE="$build_type" SOURCE_DIRS="${source_dirs[*]}" JOBS="${MILL_JOBS:-2}" \
  bash -euo pipefail -c '
cd ~
echo "tools: $(g++ --version | head -1), $(cmake --version | head -1), ninja $(ninja --version)"
# SOURCE_DIRS is a list of -D options without spaces inside them.
cmake -S mill -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DFETCHCONTENT_FULLY_DISCONNECTED=ON $SOURCE_DIRS \
  >configure.log 2>&1 || { tail -40 configure.log; exit 1; }
grep "^-- mill:" configure.log
configured=$SECONDS
nice -n 19 cmake --build build --parallel "$JOBS" >build.log 2>&1 || { grep -B2 -A12 -m3 "error" build.log; exit 1; }
echo "built in $((SECONDS - configured)) s ($(grep -c "^\[" build.log) steps)"
cmake --install build --prefix ~/opt/installed >install.log
mv ~/opt/installed ~/opt/mill
~/run/checks.sh ~/opt/mill ~/run/data ~/run
'
echo "source-build-in-root: passed; root and sources ready in $((prepared - started)) s, build and checks took $((SECONDS - prepared)) s"
