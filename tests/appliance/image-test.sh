#!/usr/bin/env bash
# Boot the images under QEMU TCG, each the way a machine would:
#   iso-bios  the ISO as a CD under SeaBIOS (El Torito, GRUB i386-pc)
#   iso-uefi  the ISO as a CD under UEFI: OVMF (El Torito EFI image,
#             BOOTX64.EFI), or for aarch64 AAVMF on qemu-system-aarch64
#             -M virt -cpu max (BOOTAA64.EFI; a SCSI CD on virtio-scsi)
#   pxe       iPXE (QEMU's e1000e option ROM) over QEMU's built-in TFTP:
#             DHCP bootfile boot.ipxe, which fetches vmlinuz and initrd.img
#   usb-bios  the raw USB image as a USB stick (xHCI) under SeaBIOS
# and, only when named:
#   usb-uefi       the raw USB image as a stick under OVMF (AAVMF)
#   disk-bios      the raw USB image as the machine's SATA disk under SeaBIOS
#   iso-usb-bios   the ISO `dd`-ed to a stick (isohybrid MBR) under SeaBIOS
#   iso-usb-uefi   the same under OVMF or AAVMF (the ISO's GPT EFI partition)
# GRUB's netboot (its TFTP is slow: 45-75 s each):
#   pxe-grub-bios  GRUB netboot grub/i386-pc/core.0 from the iPXE ROM (PXE API)
#   pxe-grub-uefi  GRUB netboot grub/x86_64-efi/core.efi from OVMF's PXE
#                  (grub/arm64-efi/core.efi from AAVMF's, on virtio-net)
# aarch64 images are UEFI only: their default modes are iso-uefi, usb-uefi
# and pxe-grub-uefi.
# In each the agent's GET /node must answer through the host port forward
# with the images' arch and KVM available: kvm_amd (x86_64: TCG -cpu max
# emulates AMD-V) or kvm_arm64 (aarch64: virt's virtualization=on), then
# the ACPI power button must power the node off with QEMU exiting 0.
# Prints QEMU start -> first answer for each mode and the image sizes.
#
#   tests/appliance/image-test.sh [IMAGE_DIR] [MODE...]
#
# The arch is IMAGE_DIR's name (target/build/image/ARCH), or ARCH.
# Environment: HOST_PORT (default: a free port), BOOT_TIMEOUT (240 s),
# OVMF_CODE, OVMF_VARS, AAVMF_CODE, AAVMF_VARS, CONSOLE_LOG (a path to keep
# the console logs at).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=$(realpath "${1:-$repo/target/build/image/x86_64}")
shift || true
arch=${ARCH:-$(basename "$dir")}
case $arch in
  x86_64) modes=${*:-iso-bios iso-uefi pxe usb-bios} ;;
  aarch64) modes=${*:-iso-uefi usb-uefi pxe-grub-uefi} ;;
  *) echo "image-test: unknown arch '$arch' (IMAGE_DIR .../x86_64 or .../aarch64, or set ARCH)" >&2; exit 2 ;;
esac
boot_timeout=${BOOT_TIMEOUT:-240}
iso=$dir/vireo-$arch.iso
usb=$dir/vireo-$arch-usb.img
pxe=$dir/pxe

for f in "$iso" "$usb" "$pxe/boot.ipxe" "$pxe/vmlinuz" "$pxe/initrd.img"; do
  [[ -s $f ]] || { echo "image-test: no $f (make image)" >&2; exit 2; }
done

# shellcheck source=tests/appliance/lib.sh
. "$here/lib.sh"
port=${HOST_PORT:-$(free_port)}
appliance_arch "$arch"
test_init image-test

# UEFI firmware as pflash (OVMF, or AAVMF for aarch64; lib.sh's uefi_args):
# the code, and a scratch copy of the variables (UEFI writes its boot entries).
ovmf() { uefi_args; }

# Image $1 as a USB stick on xHCI, first in the boot order. A copy: nothing
# writes the image, but the build stays pristine.
usb_stick() {
  cp "$1" "$work/stick.img"
  echo -device qemu-xhci -drive "if=none,id=stick,format=raw,file=$work/stick.img" \
    -device usb-storage,drive=stick,bootindex=0
}

# QEMU's user network serving the PXE bundle by TFTP with DHCP bootfile $1.
pxe_nic() {
  echo -netdev "user,id=n0,tftp=$pxe,bootfile=$1,hostfwd=tcp:127.0.0.1:$port-:8006" \
    -device "$netboot_nic,netdev=n0,bootindex=0"
}

# QEMU arguments that boot mode $1.
medium() {
  case $1 in
    iso-bios) echo -cdrom "$iso" -nic "$(user_nic)" ;;
    iso-uefi) echo "$(ovmf)" "$(cdrom_args "$iso")" -nic "$(user_nic)" ;;
    pxe) pxe_nic boot.ipxe ;;
    pxe-grub-bios) pxe_nic grub/i386-pc/core.0 ;;
    pxe-grub-uefi) echo "$(ovmf)" "$(pxe_nic "grub/$grub_efi/core.efi")" ;;
    usb-bios) echo "$(usb_stick "$usb")" -nic "$(user_nic)" ;;
    usb-uefi) echo "$(ovmf)" "$(usb_stick "$usb")" -nic "$(user_nic)" ;;
    disk-bios)
      cp "$usb" "$work/disk.img"
      echo -drive "if=none,id=disk,format=raw,file=$work/disk.img" -device ide-hd,drive=disk,bootindex=0 \
        -nic "$(user_nic)" ;;
    iso-usb-bios) echo "$(usb_stick "$iso")" -nic "$(user_nic)" ;;
    iso-usb-uefi) echo "$(ovmf)" "$(usb_stick "$iso")" -nic "$(user_nic)" ;;
    *) fail "unknown mode $1 (iso-bios iso-uefi pxe usb-bios usb-uefi disk-bios iso-usb-bios iso-usb-uefi pxe-grub-bios pxe-grub-uefi)" ;;
  esac
}

declare -A took=()
for mode in $modes; do
  # (Paths with spaces are not supported: the arguments travel as words.)
  margs=$(medium "$mode") || exit 1
  read -ra args <<<"$margs"
  start_qemu "$mode" "${args[@]}"
  log "$mode: QEMU started (pid $qemu_pid)"
  wait_node
  node_has "\"arch\":\"$arch\"" "\"kind\":\"$kvm_kind\"" '"available":true' '"name":"vireo"'
  took[$mode]=$(elapsed "$t0" "$t_node")
  grep -qaE 'dhcp: lease 10\.0\.2\.15/24' "$con" || fail "$mode: no DHCP lease line"
  power_down
done

size() { du -h --apparent-size "$1" | cut -f1; }
echo
echo "== $arch image boots (QEMU TCG, ${qemu[*]:1}, 2 CPUs, 1 GiB; GRUB menu timeout included) =="
for mode in $modes; do
  echo "$mode: QEMU start -> first GET /node answer: ${took[$mode]} s"
done
echo "== sizes =="
echo "ISO $(size "$iso"), USB image $(size "$usb"), PXE bundle $(du -sh --apparent-size "$pxe" | cut -f1)" \
  "(vmlinuz $(size "$pxe/vmlinuz"), initrd.img $(size "$pxe/initrd.img"))"
echo "image-test: PASS"
