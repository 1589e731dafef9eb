# shellcheck shell=dash disable=SC2034
# aarch64 rig helpers, on top of the x86_64 rig's /rig/lib.sh (rig_now_ms,
# rig_vmm_run, rig_expect_guest).

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

# rig_wait_for FILE PATTERN SECONDS: wait until FILE has a line matching
# PATTERN (grep -E); returns 1 on timeout.
rig_wait_for() {
  local file=$1 pattern=$2 left=$(($3 * 10))
  while [ "$left" -gt 0 ]; do
    grep -qE "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
    left=$((left - 1))
  done
  return 1
}

# rig_last_tick FILE: the number of the last "VIREO-TICK i" line in FILE (0 if none).
rig_last_tick() {
  local n
  n=$(tr -d '\r' <"$1" | sed -n 's/.*VIREO-TICK \([0-9]*\).*/\1/p' | tail -n1)
  echo "${n:-0}"
}

# rig_ticks_continuous FILE...: every VIREO-TICK line of the files, in
# order, counts 1, 2, 3, ... with no gap or repeat, and uptime never goes
# back. Prints the count; returns 1 (with the reason) otherwise.
rig_ticks_continuous() {
  cat "$@" | tr -d '\r' | sed -n 's/.*VIREO-TICK \([0-9]*\) up=\([0-9.]*\).*/\1 \2/p' |
    awk '{ if ($1 != NR) { print "tick " NR " is " $1; bad = 1; exit 1 }
           if ($2 + 0 < last) { print "uptime went back at tick " $1; bad = 1; exit 1 }
           last = $2 + 0 }
         END { if (!bad) print NR }'
}

# rig_reap PID: waits for the background process PID at most RIG_TIMEOUT
# seconds (then kills it); sets RIG_REAP_RC to its exit code or "timeout".
rig_reap() {
  local left=$RIG_TIMEOUT
  while kill -0 "$1" 2>/dev/null && [ "$left" -gt 0 ]; do sleep 1; left=$((left - 1)); done
  if kill -0 "$1" 2>/dev/null; then
    kill -9 "$1"
    wait "$1" 2>/dev/null
    RIG_REAP_RC=timeout
    return
  fi
  wait "$1"
  RIG_REAP_RC=$?
}
