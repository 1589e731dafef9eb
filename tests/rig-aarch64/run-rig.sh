#!/usr/bin/env bash
# Boot the aarch64 rig once and run several jobs in it, in order:
#
#   tests/rig-aarch64/run-rig.sh JOB[,JOB...] [extra outer kernel args]
#
# qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max (TCG):
# Debian's arm64 kernel starts at EL2, its built-in KVM gives /dev/kvm, and
# the rig's /init runs each job (rootfs/rig/jobs/NAME.sh). Prints a
# "RESULT PASS|FAIL rig-aarch64/JOB" line per job; exit 0 only when every
# job printed "RIG job=JOB exit=0". Console log: $BUILD/rig-aarch64/<time>.log.
#
# Environment: BUILD (default target/build), RIG_INITRAMFS (default
# $BUILD/rig-aarch64/rig.cpio.gz), RIG_QEMU_TIMEOUT (default 180 + 240 per
# job), RIG_SMP (2), RIG_MEM (3072), RIG_QEMU_ARGS.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 JOB[,JOB...] [kernel args...]" >&2; exit 2; }
jobs=$1
shift
build=${BUILD:-target/build}
initramfs=${RIG_INITRAMFS:-$build/rig-aarch64/rig.cpio.gz}
[[ -s $initramfs && -s $initramfs.kernel ]] || { echo "no $initramfs; run: make rig-aarch64-initramfs" >&2; exit 1; }
kernel=$(cat "$initramfs.kernel")
IFS=, read -r -a job_list <<<"$jobs"
timeout_s=${RIG_QEMU_TIMEOUT:-$((180 + 240 * ${#job_list[@]}))}

logdir=$build/rig-aarch64
mkdir -p "$logdir"
log=$logdir/$(date +%Y%m%d-%H%M%S)-$$.log
ln -sfn "$(basename "$log")" "$logdir/latest.log"

# -cpu max,pauth-impdef=on: QEMU's architected pointer-authentication
# algorithm (QARMA) is slow under TCG; the IMPDEF one is a cheap hash and
# the guests cannot tell. -no-reboot: a panic ends QEMU.
# shellcheck disable=SC2054
qemu=(qemu-system-aarch64
  -machine virt,virtualization=on,gic-version=3,accel=tcg -cpu max,pauth-impdef=on
  -m "${RIG_MEM:-3072}" -smp "${RIG_SMP:-2}"
  -nographic -no-reboot -nic none
  -kernel "$kernel" -initrd "$initramfs"
  -append "console=ttyAMA0 panic=-1 quiet rig.jobs=$jobs $*")
# shellcheck disable=SC2206
[[ -z ${RIG_QEMU_ARGS:-} ]] || qemu+=(${RIG_QEMU_ARGS})

echo "[run-rig-aarch64] jobs=$jobs timeout=${timeout_s}s log=$log"
echo "[run-rig-aarch64] ${qemu[*]}"
start=$(date +%s%N)
set +e
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null 2>&1 | tee "$log"
qemu_rc=${PIPESTATUS[0]}
set -e
echo "[run-rig-aarch64] qemu exit=$qemu_rc wall_ms=$((($(date +%s%N) - start) / 1000000))"
((qemu_rc == 124 || qemu_rc == 137)) && echo "[run-rig-aarch64] timed out after ${timeout_s}s"
tr -d '\r' <"$log" | grep -aoE 'RIG kvm=.*' | head -n1 || true

failed=0
for job in "${job_list[@]}"; do
  verdict=$(tr -d '\r' <"$log" | grep -aoE "RIG job=$job exit=[0-9]+ ms=[0-9]+" | tail -n1 || true)
  if [[ $verdict == *" exit=0 "* ]]; then
    echo "RESULT PASS rig-aarch64/$job (${verdict##*ms=} ms)"
  else
    echo "RESULT FAIL rig-aarch64/$job (${verdict:-no verdict line}; log: $log)"
    failed=$((failed + 1))
  fi
done
exit $((failed > 0))
