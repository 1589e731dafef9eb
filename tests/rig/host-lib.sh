# shellcheck shell=bash
# Helpers shared by the host-side rig scripts (sourced, not run).

# The Debian kernel that boots the outer rig VM and whose kvm modules go into
# the rig initramfs. The modules must come from exactly the same build as the
# kernel (vermagic), so both are picked together: the newest /boot/vmlinuz-*
# that has a matching /lib/modules/<version>/modules.dep.
rig_default_debian_kernel() {
  local k ver best=
  for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V); do
    ver=${k#/boot/vmlinuz-}
    [[ -f /lib/modules/$ver/modules.dep ]] && best=$k
  done
  [[ -n $best ]] || { echo "no /boot/vmlinuz-* with modules; install linux-image-amd64 (tests/rig/deps.sh)" >&2; return 1; }
  echo "$best"
}

# Kernel release of a /boot/vmlinuz-<release> path.
rig_kernel_release() {
  local base
  base=$(basename "$1")
  [[ $base == vmlinuz-* ]] || { echo "cannot tell the release of $1 (expected .../vmlinuz-<release>)" >&2; return 1; }
  echo "${base#vmlinuz-}"
}

# rig_stage_qemu_ref DIR: QEMU with everything it needs inside the rig under
# DIR (a tree merged into the initramfs root): the binary and its libraries
# (from ldd; QEMU is dynamically linked), the loader, microvm's firmware, and
# tests/rig/qemu-ref-vmm.sh as /usr/bin/qemu-ref-vmm, which speaks the
# vireo-vmm command line.
rig_stage_qemu_ref() {
  local dir=$1 qemu lib f here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  qemu=$(command -v qemu-system-x86_64) || { echo "qemu-system-x86_64 not installed" >&2; return 1; }
  mkdir -p "$dir/usr/bin" "$dir/usr/share/qemu"
  cp "$qemu" "$dir/usr/bin/qemu-system-x86_64"
  # ldd prints "libfoo.so => /path (addr)" and the loader as "/lib64/ld-... (addr)".
  ldd "$qemu" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
      mkdir -p "$dir/$(dirname "$lib")"
      cp -L "$lib" "$dir/$lib"
    done
  # microvm's firmware (qboot) and the option ROMs for -kernel (PVH, bzImage).
  # qboot.rom: microvm with acpi=off (a NIC, qemu-ref-vmm.sh) boots it instead.
  for f in bios-microvm.bin qboot.rom pvh.bin linuxboot_dma.bin linuxboot.bin kvmvapic.bin; do
    [[ -e /usr/share/qemu/$f ]] && cp -L "/usr/share/qemu/$f" "$dir/usr/share/qemu/$f"
  done
  cp "$here/qemu-ref-vmm.sh" "$dir/usr/bin/qemu-ref-vmm"
  chmod 755 "$dir/usr/bin/qemu-ref-vmm"
  # The same with KVM's whole irqchip in the kernel (see qemu-ref-vmm.sh).
  ln -sf qemu-ref-vmm "$dir/usr/bin/qemu-ref-vmm-kirq"
}

# rig_stage_prog DIR PROG DEST: a dynamically linked program at DEST under
# DIR, with every library ldd names and the loader at the paths it loads
# them from.
rig_stage_prog() {
  local dir=$1 prog=$2 dest=$3 lib
  install -D -m 755 "$prog" "$dir$dest"
  ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    while read -r lib; do
      [[ -e $dir$lib ]] || install -D -m 755 "$(readlink -f "$lib")" "$dir$lib"
    done
}
