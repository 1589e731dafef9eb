#!/usr/bin/env bash
# Unpack Debian's arm64 QEMU (qemu-system-aarch64 with the shared libraries
# it needs) into a tree the aarch64 rig carries, so `make bench` can boot the
# same guest under QEMU with KVM inside the same rig (the reference for
# vireo-vmm's boot time).
#
#   tests/rig-aarch64/build-qemu-ref.sh OUTDIR
#
# OUTDIR/root gets usr/bin/qemu-system-aarch64, the arm64 loader and the
# library closure: each NEEDED soname missing from the tree is looked up in
# the package that ships the same soname for this x86_64 host (dpkg -S), and
# that package's arm64 build is unpacked (apt-get download; arm64 must be in
# dpkg's architectures, as initramfs/fetch-debian-arch.sh makes it). Skipped
# when OUTDIR/root/usr/bin/qemu-system-aarch64 exists.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
root=$out/root
log() { echo "[qemu-ref-arm64] $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }
[[ -x $root/usr/bin/qemu-system-aarch64 ]] && { log "up to date: $root"; exit 0; }

rm -rf "$out" && mkdir -p "$root" "$out/debs"
unpack() {
  (cd "$out/debs" && apt-get download -q "${@/%/:arm64}") >/dev/null 2>&1 || die "apt-get download $* (arm64) failed"
  for deb in "$out"/debs/*.deb; do dpkg-deb -x "$deb" "$out/unpacked"; done
  rm -f "$out"/debs/*.deb
}
unpack qemu-system-arm libc6 libgcc-s1
install -D -m 755 "$out/unpacked/usr/bin/qemu-system-aarch64" "$root/usr/bin/qemu-system-aarch64"
install -D "$out/unpacked/lib/ld-linux-aarch64.so.1" "$root/lib/ld-linux-aarch64.so.1"

# Where a soname sits in the unpacked packages (lib/ or usr/lib/).
find_lib() { find "$out/unpacked" -name "$1" \( -type f -o -type l \) | head -n1; }
declare -A have=()
todo=("$root/usr/bin/qemu-system-aarch64")
while ((${#todo[@]})); do
  elf=${todo[0]}
  todo=("${todo[@]:1}")
  for so in $(aarch64-linux-gnu-readelf -d "$elf" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [[ -n ${have[$so]:-} || $so == ld-linux-aarch64.so.1 ]] && continue
    src=$(find_lib "$so")
    if [[ -z $src ]]; then
      pkg=$(dpkg -S "x86_64-linux-gnu/$so" 2>/dev/null | head -n1 | cut -d: -f1)
      [[ -n $pkg ]] || die "no package for $so (needed by $(basename "$elf"))"
      log "$so: $pkg"
      unpack "$pkg"
      src=$(find_lib "$so")
      [[ -n $src ]] || die "$pkg (arm64) has no $so"
    fi
    have[$so]=1
    install -D "$(readlink -f "$src")" "$root/lib/aarch64-linux-gnu/$so"
    todo+=("$root/lib/aarch64-linux-gnu/$so")
  done
done
rm -rf "$out/unpacked" "$out/debs"
log "done: qemu-system-aarch64 + ${#have[@]} libraries, $(du -sh "$root" | cut -f1)"
