#!/usr/bin/env bash
# Build the minimal Vireo guest kernel from Debian's linux-source package.
#
#   tests/rig/build-guest-kernel.sh OUTDIR
#
# Produces OUTDIR/vmlinux (ELF with the PVH entry note, for direct/PVH boot)
# and OUTDIR/bzImage (for the Linux boot protocol), plus OUTDIR/config (the
# final .config, for reference). The source tree lives in OUTDIR/src so that a
# second run only recompiles what changed.
#
# Environment:
#   KERNEL_SOURCE_TARBALL  default: newest /usr/src/linux-source-*.tar.xz
#   KERNEL_FRAGMENT        default: kernel-config/guest-x86_64.config
#   JOBS                   default: $(nproc)
#   FORCE=1                rebuild even if the outputs look up to date
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
outdir=$1
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

fragment=${KERNEL_FRAGMENT:-$repo/kernel-config/guest-x86_64.config}
jobs=${JOBS:-$(nproc)}

log() { echo "[guest-kernel $(date +%H:%M:%S)] $*"; }

# The build takes minutes, so don't redo it when both images are already newer
# than the fragment that defines them.
if [[ ${FORCE:-0} != 1 && -s $outdir/vmlinux && -s $outdir/bzImage &&
      $outdir/vmlinux -nt $fragment && $outdir/bzImage -nt $fragment ]]; then
  log "up to date: $outdir/vmlinux, $outdir/bzImage (FORCE=1 to rebuild)"
  exit 0
fi

# shellcheck source=kernel-config/linux-source.sh
. "$repo/kernel-config/linux-source.sh"
linux_source_tree "$outdir/src" || exit 1
log "source tree: $srcdir"

# ARCH=x86_64 (not the default "x86") makes tinyconfig start from a 64-bit
# configuration; the fragment also sets CONFIG_64BIT=y for good measure.
kmake() { make -C "$srcdir" ARCH=x86_64 -j"$jobs" "$@"; }

log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
# tinyconfig reports every value its own fragments override; keep that out of
# the log unless it fails.
kmake -s tinyconfig >"$outdir/tinyconfig.log" 2>&1 || { cat "$outdir/tinyconfig.log" >&2; exit 1; }
# merge_config.sh -m only merges the fragment into .config; olddefconfig then
# resolves dependencies and fills in defaults for everything else.
(cd "$srcdir" && ARCH=x86_64 ./scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null)
# "override: X changes choice state" warnings are expected for the choices
# the fragment picks (e.g. NO_HZ_IDLE); the check below is what counts.
kmake -s olddefconfig

# Kconfig silently drops options whose dependencies are unmet, so check that
# every option the fragment asks for really ended up as asked.
"$repo/kernel-config/check-config.sh" "$srcdir/.config" "$fragment"

log "compiling vmlinux + bzImage with -j$jobs (6-13 minutes on 2 busy cores)"
start=$(date +%s)
# Progress: print every 200th compiler line plus errors/warnings, so a CI log
# shows that the build moves without drowning in thousands of lines.
set +e
kmake vmlinux bzImage 2>&1 | awk '
  /: error:|: warning:|Error [0-9]/ { print; fflush(); next }
  { n++; if (n % 200 == 0) { printf "[guest-kernel] ... %d steps, at: %s\n", n, $0; fflush() } }
  END { printf "[guest-kernel] %d build steps\n", n }'
rc=${PIPESTATUS[0]}
set -e
if ((rc != 0)); then
  echo "ERROR: kernel build failed (make exit $rc); rerun make in $srcdir to see it all" >&2
  exit "$rc"
fi
log "compiled in $(($(date +%s) - start)) s"

# The PVH entry point is advertised by an ELF note of type 0x12
# (XEN_ELFNOTE_PHYS32_ENTRY) owned by "Xen". Without it the VMM cannot enter
# vmlinux directly. Checked before copying out, so a bad image is never
# taken as up to date by the skip check above.
if readelf -n "$srcdir/vmlinux" | grep -E 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|.*PHYS32_ENTRY)' >/dev/null; then
  log "vmlinux has the PVH (Xen PHYS32_ENTRY) note"
else
  echo "ERROR: $srcdir/vmlinux has no PVH ELF note (readelf -n shows:)" >&2
  readelf -n "$srcdir/vmlinux" >&2 || true
  exit 1
fi

# Copy to temporary names first, then rename, so a half-copied image never
# looks up to date to the skip check above.
cp "$srcdir/vmlinux" "$outdir/vmlinux.tmp"
cp "$srcdir/arch/x86/boot/bzImage" "$outdir/bzImage.tmp"
cp "$srcdir/.config" "$outdir/config"
mv "$outdir/vmlinux.tmp" "$outdir/vmlinux"
mv "$outdir/bzImage.tmp" "$outdir/bzImage"

log "done: $(du -h "$outdir/vmlinux" | cut -f1) vmlinux, $(du -h "$outdir/bzImage" | cut -f1) bzImage in $outdir"
