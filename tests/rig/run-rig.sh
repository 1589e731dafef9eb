#!/usr/bin/env bash
# Boot the rig (outer QEMU, TCG, -cpu max => emulated AMD-V) and run one job,
# or several in turn in the same boot (JOB,JOB,...).
#
#   tests/rig/run-rig.sh JOB[,JOB...] [extra kernel args, e.g. rig.runs=5]
#
# Prints "RESULT PASS|FAIL rig/JOB" for each job and passes (exit 0) only if
# the console shows "RIG job=JOB exit=0" for every one. The console is shown
# live and saved to $BUILD/rig/JOB-<time>.log (and JOB-latest.log).
#
# Environment:
#   BUILD            output root (default: build)
#   RIG_INITRAMFS    default $BUILD/rig/rig-initramfs.cpio.gz
#   DEBIAN_KERNEL    default: the kernel recorded next to the initramfs
#   RIG_QEMU_TIMEOUT hard limit for the whole VM in seconds (default 300;
#                    bench-*, profile-*: 120 + 90 per run)
#   RIG_SILENCE_TIMEOUT  seconds without console output after which the
#                    outer VM counts as hung (default 240)
#   RIG_SMP          outer vCPUs (default 2, one per host core; see README)
#   RIG_MEM          outer memory in MiB (default 2048)
#   RIG_QEMU_ARGS    extra QEMU arguments (word-split)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=host-lib.sh
. "$here/host-lib.sh"

[[ $# -ge 1 ]] || { echo "usage: $0 JOB [kernel args...]" >&2; exit 2; }
job=$1
shift
extra_args=("$@")

build=${BUILD:-target/build}
initramfs=${RIG_INITRAMFS:-$build/rig/rig-initramfs.cpio.gz}
[[ -s $initramfs ]] || { echo "no $initramfs; run: make rig-initramfs" >&2; exit 1; }

# The outer kernel must be the one whose modules are in the initramfs.
if [[ -n ${DEBIAN_KERNEL:-} ]]; then
  kernel=$DEBIAN_KERNEL
elif [[ -s $initramfs.kernel ]]; then
  kernel=$(cat "$initramfs.kernel")
else
  kernel=$(rig_default_debian_kernel)
fi
[[ -r $kernel ]] || { echo "outer kernel $kernel not readable" >&2; exit 1; }

timeout_s=${RIG_QEMU_TIMEOUT:-}
IFS=, read -ra rig_jobs <<<"$job"
if [[ -z $timeout_s ]]; then
  # 300 s for one job, 150 s more for each further one.
  timeout_s=$((150 + 150 * ${#rig_jobs[@]}))
  if [[ $job == bench-* || $job == profile-* ]]; then
    runs=5
    for a in "${extra_args[@]}"; do [[ $a == rig.runs=* ]] && runs=${a#rig.runs=}; done
    timeout_s=$((120 + 90 * runs))
  fi
fi

# Console silence that means the outer VM is hung (see watch_qemu): longer
# than a job's per-launch bound (rig.timeout, 120 s) plus its dump.
silence_s=${RIG_SILENCE_TIMEOUT:-240}

logdir=$build/rig
mkdir -p "$logdir"
log=$logdir/$job-$(date +%Y%m%d-%H%M%S).log
ln -sfn "$(basename "$log")" "$logdir/$job-latest.log"

# -smp 2: MTTCG runs one host thread per vCPU, and the host has 2 cores;
#   more vCPUs than cores only adds contention.
# -no-reboot: a panic (panic=-1 reboots) ends QEMU instead of looping.
# -nic none: no default NIC, so SeaBIOS does not load and run the iPXE ROM;
#   jobs that need a network add their own through RIG_QEMU_ARGS.
# shellcheck disable=SC2054 # the commas belong to QEMU options
qemu=(qemu-system-x86_64
  -machine q35,accel=tcg -cpu max
  -m "${RIG_MEM:-2048}" -smp "${RIG_SMP:-2}"
  -nographic -no-reboot -nic none
  -kernel "$kernel" -initrd "$initramfs"
  -append "console=ttyS0 panic=-1 panic_print=0x40 quiet rig.job=$job ${extra_args[*]}")
# shellcheck disable=SC2206
[[ -z ${RIG_QEMU_ARGS:-} ]] || qemu+=(${RIG_QEMU_ARGS})
# A monitor on two fifos, so that an outer VM that stops answering (a hung
# outer kernel: no job line, no timeout of its own) can still be asked
# where its vCPUs are before it is killed (outer_dump below). Not for the
# interactive job, whose console must stay a plain terminal.
monitor=$logdir/$job.monitor
if [[ $job != linux-shell ]]; then
  rm -f "$monitor.in" "$monitor.out" "$monitor.timedout"
  mkfifo "$monitor.in" "$monitor.out"
  qemu+=(-monitor "pipe:$monitor")
fi

# outer_dump WHY: the outer kernel's backtraces (sysrq 9 = all console
# output, l = every CPU's stack, w = blocked tasks, sent as keys: they work
# while interrupts do), every vCPU's registers three times a second apart
# (a RIP that stays put with IF clear is a CPU spinning with interrupts off),
# then an NMI: the rig's /init makes an unknown NMI panic the outer kernel,
# whose panic prints every CPU's stack even when interrupts are off
# everywhere (as in the hangs seen so far). From the monitor.
outer_dump() {
  local k
  [[ -p $monitor.in ]] || return 0
  echo "[run-rig] $1; the outer VM's state:"
  for k in alt-sysrq-9 alt-sysrq-l alt-sysrq-w; do
    echo "sendkey $k" >"$monitor.in"
    sleep 3
  done
  for k in 1 2 3; do
    echo "info registers -a" >"$monitor.in"
    sleep 1
  done
  timeout 5 cat "$monitor.out" | tr -d '\r' | grep -aE '^(CPU#|RIP|RAX|RSP|CS |CR0|CR3|EFER|HLT)' |
    sed 's/^/[run-rig] outer: /' || true
  echo "nmi" >"$monitor.in"
  sleep 15
}

# watch_qemu PID: ends the outer VM when it runs past the hard timeout, or
# when its console has been silent for RIG_SILENCE_TIMEOUT seconds (a job's
# launches print a line each and are bounded by rig.timeout inside, so
# silence that long means the outer kernel itself is stuck) or reports a
# soft lockup, dumping its state first. The sleeps must not hold run-rig.sh's stdout open.
watch_qemu() {
  local pid=$1 waited=0 quiet=0 size last=-1 why=
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5 </dev/null >/dev/null 2>&1
    waited=$((waited + 5))
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if [[ $size == "$last" ]]; then quiet=$((quiet + 5)); else quiet=0 last=$size; fi
    if ((waited >= timeout_s)); then
      why="the outer VM did not finish within ${timeout_s}s"
    elif ((quiet >= silence_s)); then
      why="no console output for ${silence_s}s: the outer VM is hung"
    elif grep -aq 'BUG: soft lockup' "$log" 2>/dev/null; then
      # A locked-up outer kernel repeats this line, which is not silence.
      why="the outer kernel reports a soft lockup: the outer VM is hung"
    else
      continue
    fi
    : >"$monitor.timedout"
    outer_dump "$why"
    kill "$pid" 2>/dev/null
    sleep 10 </dev/null >/dev/null 2>&1
    kill -KILL "$pid" 2>/dev/null
    return
  done
}

echo "[run-rig] job=$job timeout=${timeout_s}s log=$log"
echo "[run-rig] ${qemu[*]}"
start=$(date +%s%N)
set +e
# --kill-after: if QEMU ignores SIGTERM, SIGKILL it shortly after.
# Only the interactive job reads the keyboard; the others must not take a
# terminal's input (or a CI runner's stdin).
stdin_src=/dev/null
[[ $job == linux-shell ]] && stdin_src=/dev/stdin
"${qemu[@]}" <"$stdin_src" > >(tee "$log") 2>&1 &
qemu_pid=$!
watch_qemu "$qemu_pid" &
watchdog=$!
wait "$qemu_pid"
qemu_rc=$?
kill "$watchdog" 2>/dev/null
wait 2>/dev/null
timed_out=0
[[ ! -e $monitor.timedout ]] || timed_out=1
rm -f "$monitor.in" "$monitor.out" "$monitor.timedout"
set -e
elapsed_ms=$((($(date +%s%N) - start) / 1000000))

# The console carries \r\n line ends, and firmware escape sequences may
# precede the first line on the same line, so match anywhere in a line.
echo "[run-rig] qemu exit=$qemu_rc wall_ms=$elapsed_ms"
((timed_out)) && echo "[run-rig] FAIL: timed out or hung (log: $log)"
failed=0
for j in "${rig_jobs[@]}"; do
  verdict=$(tr -d '\r' <"$log" | grep -aoE "RIG job=$j exit=[0-9]+ ms=[0-9]+" | tail -n1 || true)
  if [[ $verdict == *" exit=0 "* ]]; then
    echo "RESULT PASS rig/$j (${verdict##*ms=} ms)"
  else
    echo "RESULT FAIL rig/$j (${verdict:-no 'RIG job=$j exit=' line}; log: $log)"
    failed=1
  fi
done
if ((failed || timed_out)); then
  tr -d '\r' <"$log" | grep -aoE 'RIG kvm=.*' || true
  exit 1
fi
echo "[run-rig] PASS: $job"
