#!/usr/bin/env bash
# Build Vireo's own appliance kernel from Debian's linux-source: a base
# configuration plus kernel-config/appliance-common.config and the
# architecture's fragment, as an alternative to Debian's linux-image.
#
#   kernel-config/build-kernel.sh ARCH OUTDIR [--config-only]   (ARCH: x86_64 | aarch64)
#
# OUTDIR/src     the extracted source (KERNEL_SRC_DIR to share one), used
#                by both architectures: the builds are out of tree,
#                O=OUTDIR/ARCH
# OUTDIR/ARCH/   the build: .config, then the kernel image (x86_64: bzImage,
#                aarch64: Image, both with the EFI stub) and modules_install
#                under OUTDIR/ARCH/root (lib/modules/KVER), the layout
#                MODULES_ROOT of initramfs/build-initramfs.sh expects
# OUTDIR/config-ARCH  the merged, checked configuration
#
# --config-only stops after the configuration and its check: every option of
# the fragments must be in the merged .config as asked (kernel-config/
# check-config.sh), else the script fails. That part takes about a minute
# once the source is extracted; the full build takes hours on two busy
# cores (run it niced, in the background).
#
# Environment:
#   KERNEL_BASE            defconfig (default: the architecture's defconfig,
#                          the quicker build) or debian (Debian's own config:
#                          /boot/config-* for x86_64, the unpacked arm64
#                          package's for aarch64; every Debian driver, slow)
#   KERNEL_SOURCE_TARBALL  default: newest /usr/src/linux-source-*.tar.xz
#   KERNEL_SRC_DIR         where it is extracted (default OUTDIR/src)
#   ARM64_ROOT             the unpacked arm64 linux-image (for KERNEL_BASE=debian)
#   JOBS                   default: $(nproc)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() { echo "usage: $0 ARCH (x86_64|aarch64) OUTDIR [--config-only]" >&2; exit 2; }
[[ $# -eq 2 || ($# -eq 3 && $3 == --config-only) ]] || usage
arch=$1
mkdir -p "$2"
outdir=$(cd "$2" && pwd)
config_only=${3:-}
base=${KERNEL_BASE:-defconfig}
jobs=${JOBS:-$(nproc)}

log() { echo "[kernel $arch $(date +%H:%M:%S)] $*"; }
die() { echo "build-kernel: ERROR: $*" >&2; exit 1; }

# ======================================================================
# Architecture-specific part.
#   karch        the kernel's ARCH
#   cross        CROSS_COMPILE prefix ("" on a native host)
#   image        the boot image make target and its path under arch/
#   debian_cfg   Debian's config for KERNEL_BASE=debian
# ======================================================================
case $arch in
  x86_64)
    karch=x86_64 cross=
    image=bzImage image_path=arch/x86/boot/bzImage
    debian_cfg=$(ls -1 /boot/config-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
    ;;
  aarch64)
    karch=arm64
    cross=aarch64-linux-gnu-
    image=Image image_path=arch/arm64/boot/Image
    arm64_root=${ARM64_ROOT:-$repo/target/build/debian-arm64}
    debian_cfg=$(ls -1 "$arm64_root"/boot/config-* 2>/dev/null | sort -V | tail -n1 || true)
    ;;
  *) die "unknown ARCH $arch (x86_64 or aarch64)" ;;
esac
fragments=("$here/appliance-common.config" "$here/appliance-$karch.config")
[[ $(uname -m) == "$arch" ]] && cross=
if [[ -n $cross ]] && ! command -v "${cross}gcc" >/dev/null; then
  die "${cross}gcc not found (apt-get install gcc-aarch64-linux-gnu)"
fi

# --- the source, extracted once (a stamp names the tarball it came from) ---
# shellcheck source=kernel-config/linux-source.sh
. "$here/linux-source.sh"
linux_source_tree "${KERNEL_SRC_DIR:-$outdir/src}" || die "cannot prepare the kernel source"

build=$outdir/$arch
mkdir -p "$build"
kmake() { make -C "$srcdir" O="$build" ARCH="$karch" ${cross:+CROSS_COMPILE=$cross} -j"$jobs" "$@"; }

# --- configuration: base + fragments + olddefconfig, then the check ---
case $base in
  defconfig)
    log "configuring: defconfig + ${fragments[*]##*/}"
    kmake -s defconfig >"$build/base.log" 2>&1 || { cat "$build/base.log" >&2; exit 1; }
    ;;
  debian)
    [[ -n $debian_cfg && -r $debian_cfg ]] || die "no Debian config for $arch (x86_64: linux-image-amd64; aarch64: make appliance-arm64-debs)"
    log "configuring: $debian_cfg + ${fragments[*]##*/}"
    cp "$debian_cfg" "$build/.config"
    # Debian signs its modules with a key that is not in linux-source.
    "$srcdir/scripts/config" --file "$build/.config" --set-str SYSTEM_TRUSTED_KEYS "" \
      --set-str SYSTEM_REVOCATION_KEYS "" --disable MODULE_SIG_ALL --undefine MODULE_SIG_KEY
    ;;
  *) die "KERNEL_BASE must be defconfig or debian" ;;
esac
# merge_config.sh -m only merges; olddefconfig then resolves dependencies.
(cd "$build" && ARCH=$karch "$srcdir/scripts/kconfig/merge_config.sh" -m -O "$build" \
  "$build/.config" "${fragments[@]}" >"$build/merge.log")
kmake -s olddefconfig
"$here/check-config.sh" "$build/.config" "${fragments[@]}"
cp "$build/.config" "$outdir/config-$arch"
log "configured ($base base): $outdir/config-$arch"
[[ $config_only == --config-only ]] && exit 0

# --- the build ---
log "compiling $image + modules with -j$jobs (long: hours on 2 busy cores for a Debian base)"
start=$(date +%s)
set +e
kmake "$image" modules 2>&1 | awk '
  /: error:|Error [0-9]/ { print; fflush(); next }
  { n++; if (n % 500 == 0) { printf "[kernel] ... %d steps, at: %s\n", n, $0; fflush() } }
  END { printf "[kernel] %d build steps\n", n }'
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || die "kernel build failed (make exit $rc); rerun make O=$build in $srcdir to see it all"
log "compiled in $(($(date +%s) - start)) s"
kver=$(kmake -s kernelrelease)
rm -rf "$build/root"
kmake -s INSTALL_MOD_PATH="$build/root" INSTALL_MOD_STRIP=1 modules_install
mkdir -p "$build/root/boot"
cp "$build/$image_path" "$build/root/boot/vmlinuz-$kver"
cp "$build/.config" "$build/root/boot/config-$kver"
echo "$kver" >"$build/root/kver"
log "done: $build/root/boot/vmlinuz-$kver ($(du -h "$build/root/boot/vmlinuz-$kver" | cut -f1)), modules $(du -sh "$build/root/lib/modules/$kver" | cut -f1)"
log "initramfs from it: MODULES_ROOT=$build/root KVER=$kver initramfs/build-initramfs.sh OUT $arch"
