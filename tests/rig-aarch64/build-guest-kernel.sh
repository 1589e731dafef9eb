#!/usr/bin/env bash
# Build the minimal arm64 guest kernel from Debian's linux-source package,
# cross-compiled with gcc-aarch64-linux-gnu.
#
#   tests/rig-aarch64/build-guest-kernel.sh OUTDIR
#
# Produces OUTDIR/Image (the arm64 boot Image vireo-vmm loads) and
# OUTDIR/config. The source tree lives in OUTDIR/src (its own tree: the
# x86_64 guest builds in-tree too), so a second run only recompiles what
# changed, and is skipped when Image is newer than the fragment.
#
# Environment: KERNEL_FRAGMENT (default kernel-config/guest-arm64.config),
# JOBS (default nproc), FORCE=1 rebuilds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
outdir=$1
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
fragment=${KERNEL_FRAGMENT:-$repo/kernel-config/guest-arm64.config}
jobs=${JOBS:-$(nproc)}

log() { echo "[guest-kernel-arm64 $(date +%H:%M:%S)] $*"; }

if [[ ${FORCE:-0} != 1 && -s $outdir/Image && $outdir/Image -nt $fragment ]]; then
  log "up to date: $outdir/Image (FORCE=1 to rebuild)"
  exit 0
fi
command -v aarch64-linux-gnu-gcc >/dev/null ||
  { echo "ERROR: no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)" >&2; exit 1; }

# shellcheck source=kernel-config/linux-source.sh
. "$repo/kernel-config/linux-source.sh"
linux_source_tree "$outdir/src" || exit 1
log "source tree: $srcdir"

kmake() { make -C "$srcdir" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- -j"$jobs" "$@"; }

log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
kmake -s tinyconfig >"$outdir/tinyconfig.log" 2>&1 || { cat "$outdir/tinyconfig.log" >&2; exit 1; }
(cd "$srcdir" && ARCH=arm64 ./scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null)
kmake -s olddefconfig
"$repo/kernel-config/check-config.sh" "$srcdir/.config" "$fragment"

log "compiling Image with -j$jobs (several minutes on 2 busy cores)"
start=$(date +%s)
set +e
kmake Image 2>&1 | awk '
  /: error:|: warning:|Error [0-9]/ { print; fflush(); next }
  { n++; if (n % 200 == 0) { printf "[guest-kernel-arm64] ... %d steps, at: %s\n", n, $0; fflush() } }
  END { printf "[guest-kernel-arm64] %d build steps\n", n }'
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || { echo "ERROR: arm64 kernel build failed (make exit $rc); rerun make in $srcdir" >&2; exit "$rc"; }
log "compiled in $(($(date +%s) - start)) s"

# The arm64 Image header's magic "ARM\x64" at offset 56: what vireo-vmm checks.
[[ $(dd if="$srcdir/arch/arm64/boot/Image" bs=1 skip=56 count=4 status=none | od -An -c | tr -d ' ') == 'ARMd' ]] ||
  { echo "ERROR: $srcdir/arch/arm64/boot/Image has no arm64 Image magic" >&2; exit 1; }
cp "$srcdir/arch/arm64/boot/Image" "$outdir/Image.tmp"
cp "$srcdir/.config" "$outdir/config"
mv "$outdir/Image.tmp" "$outdir/Image"
log "done: $(du -h "$outdir/Image" | cut -f1) Image in $outdir"
