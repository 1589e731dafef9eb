#!/usr/bin/env bash
# Boot the guest kernel + guest initramfs directly under QEMU TCG (no rig, no
# vireo-vmm). This checks the guest side on its own: the minimal kernel's PVH
# entry and MP-table SMP, and that the initramfs also works on Debian's kernel.
#
#   tests/rig/direct-boot.sh [CASE...]
#     min-1      microvm, ELF vmlinux via PVH, 1 vCPU  -> expects cpus=1
#     min-4      microvm, ELF vmlinux via PVH, 4 vCPUs -> expects cpus=4
#     min-bz     microvm, minimal bzImage, 2 vCPUs     -> expects cpus=2
#     debian     q35, Debian's vmlinuz, 2 vCPUs        -> expects cpus=2
#   (default: all). Exits non-zero if any case fails.
#
# Environment: BUILD (default build), GUEST_DIR (default $BUILD/guest),
# DEBIAN_KERNEL, DIRECT_TIMEOUT (seconds per boot, default 120).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=host-lib.sh
. "$here/host-lib.sh"

build=${BUILD:-target/build}
guest=${GUEST_DIR:-$build/guest}
debian=${DEBIAN_KERNEL:-$(rig_default_debian_kernel)}
limit=${DIRECT_TIMEOUT:-120}
logdir=$build/rig
mkdir -p "$logdir"
cases=("$@")
((${#cases[@]})) || cases=(min-1 min-4 min-bz debian)

# The rig jobs' guest command line resets through the i8042 (reboot=k), and
# -no-reboot turns a reset into a QEMU exit. QEMU's microvm has no i8042, and
# the kernel's fallback after it (a jump to the BIOS reset vector) can leave
# QEMU running, so microvm cases reset by triple fault (reboot=t) instead.
cmdline_k="console=ttyS0 reboot=k panic=-1 quiet"
cmdline_t="console=ttyS0 reboot=t panic=-1 quiet"

# boot NAME WANT_CPUS QEMU-ARGS...: run QEMU, time the VIREO-GUEST-INIT line.
failures=0
boot() {
  local name=$1 want=$2 cmdline=$3 start line t_init='' got='' rc
  shift 3
  local log=$logdir/direct-$name.log
  : >"$log"
  start=$EPOCHREALTIME
  # Read the console line by line to time-stamp the guest's line as it comes.
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >>"$log"
    if [[ -z $got && $line == *VIREO-GUEST-INIT* ]]; then
      t_init=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
      got=VIREO-GUEST-INIT${line#*VIREO-GUEST-INIT}
    fi
  done < <(timeout --kill-after=5 "$limit" qemu-system-x86_64 "$@" -m 512 -nographic -no-reboot \
             -initrd "$guest/initramfs.cpio.gz" -append "$cmdline" </dev/null 2>&1; echo "QEMU-EXIT=$?")
  rc=$(grep -a '^QEMU-EXIT=' "$log" | tail -n1 | cut -d= -f2)
  local total
  total=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  if [[ -n $got && " $got " == *" cpus=$want "* && $rc == 0 ]]; then
    echo "DIRECT $name ok: to_init=${t_init}s total=${total}s | $got"
  else
    echo "DIRECT $name FAIL (qemu exit=$rc, want cpus=$want): ${got:-no VIREO-GUEST-INIT line}; log: $log"
    failures=$((failures + 1))
  fi
}

for c in "${cases[@]}"; do
  case $c in
    min-1) boot "$c" 1 "$cmdline_t" -machine microvm,accel=tcg -cpu max -smp 1 -kernel "$guest/vmlinux" ;;
    min-4) boot "$c" 4 "$cmdline_t" -machine microvm,accel=tcg -cpu max -smp 4 -kernel "$guest/vmlinux" ;;
    # (q35's SeaBIOS gives no MP table, so a no-ACPI kernel sees 1 CPU there.)
    min-bz) boot "$c" 2 "$cmdline_t" -machine microvm,accel=tcg -cpu max -smp 2 -kernel "$guest/bzImage" ;;
    debian) boot "$c" 2 "$cmdline_k" -machine q35,accel=tcg -cpu max -smp 2 -nic none -kernel "$debian" ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
echo "direct boots: ${#cases[@]} run, $failures failed"
((failures == 0))
