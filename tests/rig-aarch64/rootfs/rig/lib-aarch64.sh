# shellcheck shell=dash disable=SC2034
# aarch64 rig helpers, on top of the x86_64 rig's /rig/lib.sh (rig_now_ms,
# rig_vmm_run, rig_expect_guest, rig_wait_for, rig_reap, the tick checks).

# The 16550 the FDT describes is ttyS0 here too. No reboot=k: arm64 resets
# through PSCI SYSTEM_RESET, which KVM hands to the VMM as a system event.
RIG_GUEST_CMDLINE="console=ttyS0 panic=-1 quiet"
[ "${RIG_VERBOSE:-0}" = 1 ] && RIG_GUEST_CMDLINE="console=ttyS0 panic=-1 earlycon"

MIN_KERNEL=/guest/Image
DEBIAN_KERNEL=/guest/debian-Image
GUEST_INITRD=/guest/initramfs.cpio.gz

# rig_linux KERNEL CPUS MEM_MIB [EXTRA_CMDLINE [VMM ARGS...]]: one boot to
# /init, checked (vCPUs online, MemTotal, VMM exit 0).
rig_linux() {
  local kernel=$1 cpus=$2 mem=$3 extra=${4:-}
  shift 3
  [ $# -gt 0 ] && shift
  rig_vmm_run --kernel "$kernel" --initrd "$GUEST_INITRD" \
    --cmdline "$RIG_GUEST_CMDLINE $extra" --cpus "$cpus" --memory "${mem}M" \
    --serial stdio "$@"
  rig_expect_guest "$cpus" "$mem"
}

# rig_wait_for, rig_last_tick, rig_ticks_continuous and rig_reap are in
# /rig/lib.sh (shared with the x86_64 rig's migration and snapshot jobs).
