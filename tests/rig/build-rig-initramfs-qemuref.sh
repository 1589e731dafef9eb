#!/usr/bin/env bash
# Build a rig initramfs whose "vireo-vmm" is QEMU with KVM (qemu-ref-vmm.sh),
# so that every Linux-guest job can run end to end before vireo-vmm exists,
# and so that vireo-vmm's timings have a baseline measured in the same rig.
#
#   tests/rig/build-rig-initramfs-qemuref.sh OUT.cpio.gz
#
# Takes the same environment as build-rig-initramfs.sh (except VIREO_VMM).
# QEMU is dynamically linked, so its libraries (from ldd), the loader and the
# firmware files microvm uses are copied in at their usual paths.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }

qemu=$(command -v qemu-system-x86_64) || { echo "qemu-system-x86_64 not installed" >&2; exit 1; }
extra=$(mktemp -d "${TMPDIR:-/tmp}/vireo-qemuref.XXXXXX")
trap 'rm -rf "$extra"' EXIT

mkdir -p "$extra/usr/bin" "$extra/usr/share/qemu"
cp "$qemu" "$extra/usr/bin/qemu-system-x86_64"
# ldd prints "libfoo.so => /path (addr)" and the loader as "/lib64/ld-... (addr)".
ldd "$qemu" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
  while read -r lib; do
    mkdir -p "$extra/$(dirname "$lib")"
    cp -L "$lib" "$extra/$lib"
  done
# microvm's firmware (qboot) and the option ROMs for -kernel (PVH, bzImage).
for f in bios-microvm.bin pvh.bin linuxboot_dma.bin linuxboot.bin kvmvapic.bin; do
  [[ -e /usr/share/qemu/$f ]] && cp -L "/usr/share/qemu/$f" "$extra/usr/share/qemu/$f"
done

VIREO_VMM=$here/qemu-ref-vmm.sh RIG_EXTRA_DIR=$extra "$here/build-rig-initramfs.sh" "$1"
