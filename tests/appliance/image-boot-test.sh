#!/usr/bin/env bash
# Boot a Vireo ISO from a CD under UEFI firmware (OVMF on x86_64, AAVMF on
# aarch64: qemu-system-aarch64 -M virt -cpu max) with QEMU TCG, and check that
# the agent's GET /node answers through a host port forward with the ISO's
# arch and KVM, then that the power button powers the node off and QEMU
# exits 0. GRUB's default entry boots, with no added command line: the node
# is named "vireo" and takes DHCP. Prints the time from QEMU's start to the
# first answer and the image's size.
#
#   tests/appliance/image-boot-test.sh ARCH ISO
#
# Environment: lib.sh's HOST_PORT, BOOT_TIMEOUT, CONSOLE_LOG.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 2 ]] || { echo "usage: $0 ARCH (x86_64|aarch64) ISO" >&2; exit 2; }
iso=$2
[[ -s $iso ]] || { echo "image-boot-test: no $iso (make image APPLIANCE_ARCH=$1)" >&2; exit 2; }

test_name=image-boot-test
# shellcheck source=tests/appliance/lib.sh
. "$here/lib.sh"
appliance_arch "$1"
uefi_args
cdrom_args "$iso"

start_qemu iso "${uefi_opts[@]}" "${cdrom_opts[@]}"
log "QEMU started (pid $qemu_pid): UEFI ($(basename "$uefi_code")) + $(basename "$iso") as a CD"
wait_node
check_node vireo
boot_s=$(elapsed "$t0" "$t_node")
grep -qaE 'dhcp: lease 10\.0\.2\.15/24' "$con" || fail "no DHCP lease line"
power_down

size_mib=$(awk -v b="$(stat -c %s "$iso")" 'BEGIN { printf "%.1f", b / 1048576 }')
echo
echo "== $arch ISO under UEFI =="
echo "QEMU start -> first GET /node answer: $boot_s s (host clock; UEFI, GRUB's menu timeout, kernel, init)"
echo "guest clock: init $(guest_t 'Vireo init starting') s, agent started $(guest_t 'vireo-agent started') s"
echo "system_powerdown -> QEMU exit 0: $t_off_s s"
echo "image: $iso $size_mib MiB"
echo "image-boot-test: PASS"
