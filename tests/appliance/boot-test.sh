#!/usr/bin/env bash
# Boot the appliance initramfs under QEMU TCG and check it end to end:
#   1. init mounts, loads modules, gets a DHCP lease from QEMU's user network,
#      starts the agent; GET /node from the host answers name=node1,
#      arch=x86_64, kvm kind=kvm_amd (TCG -cpu max emulates AMD-V);
#   2. `vireo node info` (the CLI) reads the same node;
#   3. the agent killed from the debug shell is restarted within 1 s;
#   4. QEMU's system_powerdown (ACPI power button) → orderly shutdown, QEMU
#      exits 0.
# Prints the timings; exits non-zero on the first failure.
#
#   tests/appliance/boot-test.sh [INITRAMFS]
#
# Environment: KERNEL (default /boot/vmlinuz-<release in INITRAMFS.kver>),
# HOST_PORT (18006), VIREO_CLI (the host build of `vireo`), BOOT_TIMEOUT (240 s),
# CONSOLE_LOG (a path to keep the guest's console log at).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
initrd=${1:-$repo/build/appliance/initramfs-x86_64.cpio.zst}
[[ -s $initrd ]] || { echo "boot-test: no $initrd (make initramfs)" >&2; exit 2; }
kver=$(cat "$initrd.kver" 2>/dev/null || uname -r)
kernel=${KERNEL:-/boot/vmlinuz-$kver}
port=${HOST_PORT:-18006}
cli=${VIREO_CLI:-$repo/target/x86_64-unknown-linux-musl/release/vireo}
boot_timeout=${BOOT_TIMEOUT:-240}

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-boot-test.XXXXXX")
con=$work/console.log
qemu_pid=
reader_pid=

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[boot-test +$(elapsed "$t0" "$(now)")s] $*"; }

cleanup() {
  [[ -n ${CONSOLE_LOG:-} && -f $con ]] && cp "$con" "$CONSOLE_LOG"
  [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null || true
  [[ -n $reader_pid ]] && kill "$reader_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "boot-test: FAIL: $*" >&2
  echo "----- last console lines -----" >&2
  tail -n 60 "$con" >&2 || true
  exit 1
}

qemu_alive() { kill -0 "$qemu_pid" 2>/dev/null; }

# Waits until the console log matches the extended regex $1 (timeout $2 s).
wait_console() {
  local deadline=$((SECONDS + $2))
  until grep -qE "$1" "$con"; do
    qemu_alive || fail "QEMU exited while waiting for /$1/"
    ((SECONDS < deadline)) || fail "timed out after $2 s waiting for /$1/ on the console"
    sleep 0.2
  done
}

# Sends one line to the guest's serial console (the debug shell).
type_line() { printf '%s\n' "$1" >"$work/con.in"; }

# Sends one command to the QEMU monitor's Unix socket.
monitor() {
  python3 - "$work/mon" "$1" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(0.2)
s.sendall(sys.argv[2].encode() + b"\n")
time.sleep(0.3)
s.close()
EOF
}

[[ -r $kernel ]] || fail "kernel $kernel not readable"
if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
  fail "something already answers on 127.0.0.1:$port (set HOST_PORT)"
fi

# The serial console through two FIFOs (QEMU reads con.in, writes con.out),
# so the test can both read the log and type into the debug shell.
mkfifo "$work/con.in" "$work/con.out"
cat "$work/con.out" >"$con" &
reader_pid=$!
# Held open so QEMU never sees EOF on the console input between commands.
exec 3<>"$work/con.in"

t0=$(now)
qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 1024 -smp 2 \
  -kernel "$kernel" -initrd "$initrd" \
  -append "console=ttyS0 vireo.hostname=node1 vireo.debug=shell panic=-1" \
  -nic "user,hostfwd=tcp:127.0.0.1:$port-:8006" \
  -display none -no-reboot \
  -chardev "pipe,id=con,path=$work/con" -serial chardev:con \
  -monitor "unix:$work/mon,server=on,wait=off" &
qemu_pid=$!
log "QEMU started (pid $qemu_pid): $kernel + $(basename "$initrd")"

# --- 1. first answer from the agent ---
deadline=$((SECONDS + boot_timeout))
# Short attempts: before the guest has its address, QEMU accepts the host
# side of the forwarded connection and the attempt hangs until its timeout.
until node=$(curl -sf --max-time 1 "http://127.0.0.1:$port/node"); do
  qemu_alive || fail "QEMU exited before the agent answered"
  ((SECONDS < deadline)) || fail "no answer on /node within $boot_timeout s"
  sleep 0.2
done
t_node=$(now)
log "GET /node: $node"
for want in '"name":"node1"' '"arch":"x86_64"' '"kind":"kvm_amd"' '"available":true'; do
  grep -qF "$want" <<<"$node" || fail "/node lacks $want"
done
curl -sf "http://127.0.0.1:$port/health" | grep -qF '"status":"ok"' || fail "/health"
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")
[[ $status == 404 ]] || fail "GET /nope answered $status, not 404"
grep -qE 'dhcp: lease 10\.0\.2\.15/24 gateway 10\.0\.2\.2' "$con" || fail "no DHCP lease line"
grep -qE 'modules loaded:.*e1000e' "$con" || fail "e1000e (QEMU q35's NIC) was not loaded"
grep -qE 'state: RAM ONLY' "$con" || fail "no RAM-only state message"

# --- 2. the CLI ---
if [[ -x $cli ]]; then
  "$cli" node info --host "127.0.0.1:$port" | tee "$work/cli.txt"
  grep -qE '^name: +node1$' "$work/cli.txt" || fail "vireo node info: wrong name"
  "$cli" node info --host "127.0.0.1:$port" --json | grep -qF '"kind": "kvm_amd"' || fail "vireo node info --json"
else
  log "skipping the CLI check: no $cli"
fi

# --- 3. agent restart ---
wait_console 'debug-shell started' 30
type_line ''
sleep 1
type_line 'kill -9 $(pidof vireo-agent); echo KILLED-AGENT'
t_kill=$(now)
wait_console 'vireo-agent exited \(signal SIGKILL\)' 30
# Guest-side delay: from init seeing the exit to the new agent's start, read
# from init's time-stamped console lines.
restart_delay() {
  # The shell's prompt may share a line with init's, so find the stamp anywhere.
  awk 'match($0, /\[ *[0-9]+\.[0-9]+\] vireo-init:/) { t = substr($0, RSTART + 1, RLENGTH); sub(/\].*/, "", t) }
       /vireo-agent exited \(signal SIGKILL\)/ { died = t }
       died && /vireo-agent started/ { printf "%.3f\n", t - died; exit }' "$con"
}
deadline=$((SECONDS + 10))
until restart=$(restart_delay) && [[ -n $restart ]]; do
  ((SECONDS < deadline)) || fail "the agent was not restarted within 10 s"
  sleep 0.2
done
awk -v r="$restart" 'BEGIN { exit !(r < 1.0) }' || fail "agent restart took $restart s (limit 1 s)"
until curl -sf --max-time 3 "http://127.0.0.1:$port/health" >/dev/null; do
  ((SECONDS < deadline)) || fail "the restarted agent does not answer"
  sleep 0.1
done
t_back=$(now)
log "agent restarted ${restart}s after it died (guest clock); answering again $(elapsed "$t_kill" "$t_back")s after the kill (host)"

# --- 4. power button ---
wait_console 'power button: watching' 5
t_off=$(now)
monitor system_powerdown
exit_deadline=$((SECONDS + 60))
while qemu_alive; do
  ((SECONDS < exit_deadline)) || fail "QEMU still running 60 s after system_powerdown"
  sleep 0.2
done
set +e
wait "$qemu_pid"
qemu_status=$?
set -e
qemu_pid=
t_exit=$(now)
[[ $qemu_status == 0 ]] || fail "QEMU exited with status $qemu_status"
for want in 'power button pressed' 'shutdown \(PowerOff\): stopping services' 'vireo-agent: stopped' 'shutdown: powering off'; do
  grep -qE "$want" "$con" || fail "console lacks /$want/"
done

echo
echo "== timings =="
guest_t() { grep -m1 -oE "\[ *[0-9.]+\] vireo-init: ($1)" "$con" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
echo "QEMU start -> first GET /node answer: $(elapsed "$t0" "$t_node") s (host clock)"
echo "kernel start -> init: $(guest_t 'Vireo init starting') s, coldplug done: $(guest_t 'modules loaded:') s, DHCP lease: $(guest_t 'dhcp: lease') s, agent started: $(guest_t 'vireo-agent started') s (guest clock)"
echo "agent killed -> restarted: $restart s (guest clock)"
echo "system_powerdown -> QEMU exit 0: $(elapsed "$t_off" "$t_exit") s"
echo "boot-test: PASS"
