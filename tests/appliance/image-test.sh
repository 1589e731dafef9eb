#!/usr/bin/env bash
# Boot the x86_64 images under QEMU TCG, each the way a machine would:
#   iso-bios  the ISO as a CD under SeaBIOS (El Torito, GRUB i386-pc)
#   iso-uefi  the ISO as a CD under OVMF (El Torito EFI image, BOOTX64.EFI)
#   pxe       iPXE (QEMU's e1000e option ROM) over QEMU's built-in TFTP:
#             DHCP bootfile boot.ipxe, which fetches vmlinuz and initrd.img
#   usb-bios  the raw USB image as a USB stick (xHCI) under SeaBIOS
# and, only when named:
#   usb-uefi       the raw USB image as a stick under OVMF
#   disk-bios      the raw USB image as the machine's SATA disk under SeaBIOS
#   iso-usb-bios   the ISO `dd`-ed to a stick (isohybrid MBR) under SeaBIOS
#   iso-usb-uefi   the same under OVMF (the ISO's GPT EFI partition)
# GRUB's netboot (its TFTP is slow: 45-75 s each):
#   pxe-grub-bios  GRUB netboot grub/i386-pc/core.0 from the iPXE ROM (PXE API)
#   pxe-grub-uefi  GRUB netboot grub/x86_64-efi/core.efi from OVMF's PXE
# In each the agent's GET /node must answer through the host port forward
# with arch x86_64 and KVM kvm_amd available (TCG -cpu max emulates AMD-V),
# then the ACPI power button must power the node off with QEMU exiting 0.
# Prints QEMU start -> first answer for each mode and the image sizes.
#
#   tests/appliance/image-test.sh [IMAGE_DIR] [MODE...]
#
# Environment: HOST_PORT (18016), BOOT_TIMEOUT (240 s), OVMF_CODE, OVMF_VARS,
# CONSOLE_LOG (a path to keep the console logs at).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=$(realpath "${1:-$repo/target/build/image/x86_64}")
shift || true
modes=${*:-iso-bios iso-uefi pxe usb-bios}
port=${HOST_PORT:-18016}
boot_timeout=${BOOT_TIMEOUT:-240}
ovmf_code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
ovmf_vars=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
iso=$dir/vireo-x86_64.iso
usb=$dir/vireo-x86_64-usb.img
pxe=$dir/pxe

for f in "$iso" "$usb" "$pxe/boot.ipxe" "$pxe/vmlinuz" "$pxe/initrd.img"; do
  [[ -s $f ]] || { echo "image-test: no $f (make image)" >&2; exit 2; }
done

# shellcheck source=tests/appliance/lib.sh
. "$here/lib.sh"
test_init image-test

# OVMF as pflash: the code, and a scratch copy of the variables (UEFI
# writes its boot entries).
ovmf() {
  [[ -r $ovmf_code ]] || fail "no OVMF at $ovmf_code (apt-get install ovmf)"
  cp "$ovmf_vars" "$work/vars.fd"
  echo -drive "if=pflash,format=raw,readonly=on,file=$ovmf_code" -drive "if=pflash,format=raw,file=$work/vars.fd"
}

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
    -device e1000e,netdev=n0,bootindex=0
}

# QEMU arguments that boot mode $1.
medium() {
  case $1 in
    iso-bios) echo -cdrom "$iso" -nic "$(user_nic)" ;;
    iso-uefi) echo "$(ovmf)" -cdrom "$iso" -nic "$(user_nic)" ;;
    pxe) pxe_nic boot.ipxe ;;
    pxe-grub-bios) pxe_nic grub/i386-pc/core.0 ;;
    pxe-grub-uefi) echo "$(ovmf)" "$(pxe_nic grub/x86_64-efi/core.efi)" ;;
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
  node_has '"arch":"x86_64"' '"kind":"kvm_amd"' '"available":true' '"name":"vireo"'
  took[$mode]=$(elapsed "$t0" "$t_node")
  grep -qaE 'dhcp: lease 10\.0\.2\.15/24' "$con" || fail "$mode: no DHCP lease line"
  power_down
done

size() { du -h --apparent-size "$1" | cut -f1; }
echo
echo "== image boots (QEMU TCG, q35, -cpu max, 2 CPUs, 1 GiB; GRUB menu timeout included) =="
for mode in $modes; do
  echo "$mode: QEMU start -> first GET /node answer: ${took[$mode]} s"
done
echo "== sizes =="
echo "ISO $(size "$iso"), USB image $(size "$usb"), PXE bundle $(du -sh --apparent-size "$pxe" | cut -f1)" \
  "(vmlinuz $(size "$pxe/vmlinuz"), initrd.img $(size "$pxe/initrd.img"))"
echo "image-test: PASS"
