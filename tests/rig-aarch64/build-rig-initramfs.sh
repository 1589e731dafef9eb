#!/usr/bin/env bash
# Build the aarch64 rig initramfs: what qemu-system-aarch64 (-M virt at EL2,
# TCG) boots with Debian's arm64 kernel, whose built-in KVM (kvm_arm64) then
# runs vireo-vmm.
#
#   VIREO_VMM=target/aarch64-unknown-linux-musl/release/vireo-vmm \
#     tests/rig-aarch64/build-rig-initramfs.sh target/build/rig-aarch64/rig.cpio.gz
#
# Environment:
#   VIREO_VMM      static aarch64 vireo-vmm (required); vireo-vmm-ctl is taken
#                  from beside it when there (the snapshot/migration jobs need it)
#   GUEST_DIR      dir with Image and initramfs.cpio.gz (default target/build/guest-arm64)
#   ARM64_ROOT     Debian's unpacked arm64 kernel and busybox (default
#                  target/build/debian-arm64, initramfs/fetch-debian-arch.sh)
#   RIG_MODULES    modules to insmod, by name (default: tun); dependencies
#                  are resolved through modules.dep
#   QEMU_REF_DIR   optional tree merged into the root (build-qemu-ref.sh's
#                  OUTDIR/root: qemu-system-aarch64 for the bench)
#
# Contents: busybox, the modules (decompressed, in load order), vireo-vmm
# (+ vireo-vmm-ctl) in /usr/bin, /guest/Image, /guest/debian-Image (Debian's
# vmlinuz, the outer kernel itself, as a plain arm64 Image), the guest
# initramfs, tests/rig/rootfs/rig/lib.sh (the x86_64 rig's job helpers,
# shared) and tests/rig-aarch64/rootfs (/init, /rig/lib-aarch64.sh, jobs).
# OUT.kernel names the outer kernel (the modules' own).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $# -eq 1 ]] || { echo "usage: VIREO_VMM=... $0 OUT.cpio.gz" >&2; exit 2; }
out=$1
log() { echo "[rig-aarch64-initramfs] $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

vmm=${VIREO_VMM:-}
[[ -n $vmm && -f $vmm && -x $vmm ]] || die "set VIREO_VMM to a static aarch64 vireo-vmm"
file -L "$vmm" | grep -q 'ARM aarch64' || die "VIREO_VMM=$vmm is not an aarch64 binary"
if readelf -lW "$vmm" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  die "VIREO_VMM=$vmm is dynamically linked; build it for aarch64-unknown-linux-musl"
fi
ctl=$(dirname "$vmm")/vireo-vmm-ctl

guest_dir=${GUEST_DIR:-$repo/target/build/guest-arm64}
for f in Image initramfs.cpio.gz; do
  [[ -s $guest_dir/$f ]] || die "missing $guest_dir/$f (make guest-kernel-arm64 guest-initramfs-arm64)"
done
arm64_root=${ARM64_ROOT:-$repo/target/build/debian-arm64}
[[ -s $arm64_root/kver ]] || die "no $arm64_root/kver (make appliance-arm64-debs)"
kver=$(cat "$arm64_root/kver")
kernel=$arm64_root/boot/vmlinuz-$kver
moddir=$arm64_root/lib/modules/$kver
[[ -r $kernel && -f $moddir/modules.dep ]] || die "no kernel or modules.dep for $kver in $arm64_root"

stage=$(mktemp -d "${TMPDIR:-/tmp}/vireo-rig-aarch64.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,root,usr/bin,guest,rig,lib/modules/rig}
cp "$arm64_root/bin/busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
mknod -m 600 "$stage/dev/console" c 5 1

# --- modules, dependencies first (modules.dep: "path: dep dep ...") ---
declare -A dep_of=() seen=()
while IFS= read -r line; do dep_of[${line%%:*}]=${line#*:}; done <"$moddir/modules.dep"
order=()
add_module() {
  local p=$1 d
  [[ -n ${seen[$p]:-} ]] && return 0
  seen[$p]=1
  for d in ${dep_of[$p]}; do add_module "$d"; done
  order+=("$p")
}
for name in ${RIG_MODULES:-tun}; do
  p=
  for cand in "${!dep_of[@]}"; do
    b=${cand##*/}; b=${b%%.ko*}
    [[ ${b//-/_} == "${name//-/_}" ]] && { p=$cand; break; }
  done
  [[ -n $p ]] || die "module $name not in $moddir/modules.dep"
  add_module "$p"
done
: >"$stage/lib/modules/rig/load-order"
for p in "${order[@]}"; do
  plain=$(basename "${p%%.ko*}").ko
  case $p in
    *.ko) cp "$moddir/$p" "$stage/lib/modules/rig/$plain" ;;
    *.ko.xz) xz -dc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *) die "unknown module file type: $p" ;;
  esac
  echo "$plain" >>"$stage/lib/modules/rig/load-order"
done
log "modules ($kver): $(tr '\n' ' ' <"$stage/lib/modules/rig/load-order")"

# --- the VMM and the guests ---
install -m 755 "$vmm" "$stage/usr/bin/vireo-vmm"
[[ -x $ctl ]] && install -m 755 "$ctl" "$stage/usr/bin/vireo-vmm-ctl"
cp "$guest_dir/Image" "$guest_dir/initramfs.cpio.gz" "$stage/guest/"
# Debian's arm64 vmlinuz is a plain Image (with the EFI stub) in bookworm;
# a gzip'ed one (other releases) is unpacked: vireo-vmm loads an Image.
if gzip -t "$kernel" 2>/dev/null; then
  gzip -dc "$kernel" >"$stage/guest/debian-Image"
else
  cp "$kernel" "$stage/guest/debian-Image"
fi
# An x86 bzImage, for the bad-input job (any will do: only its header is read).
bz=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)
[[ -n $bz ]] && head -c 65536 "$bz" >"$stage/guest/x86-bzImage"

if [[ -n ${QEMU_REF_DIR:-} ]]; then
  [[ -x $QEMU_REF_DIR/usr/bin/qemu-system-aarch64 ]] || die "no qemu-system-aarch64 in QEMU_REF_DIR=$QEMU_REF_DIR"
  cp -a "$QEMU_REF_DIR/." "$stage/"
fi

cp "$repo/tests/rig/rootfs/rig/lib.sh" "$stage/rig/lib.sh"
# Jobs written for both rigs.
mkdir -p "$stage/rig/jobs"
cp "$repo/tests/rig/rootfs/rig/jobs/linux-snapshot.sh" "$stage/rig/jobs/"
cp -a "$here/rootfs/." "$stage/"
chmod 755 "$stage/init"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$out.tmp"
mv "$out.tmp" "$out"
realpath "$kernel" >"$out.kernel"
log "wrote $out ($(du -h "$out" | cut -f1)); outer kernel: $kernel"
log "jobs: $(cd "$here/rootfs/rig/jobs" && ls | sed 's/\.sh$//' | tr '\n' ' ')"
