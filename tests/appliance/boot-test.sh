#!/usr/bin/env bash
# Boot the appliance initramfs under QEMU TCG and check it end to end, on
# x86_64 (q35) or aarch64 (virt at EL2), whichever the archive is built for:
#   1. init mounts, loads modules, gets a DHCP lease from QEMU's user network,
#      starts the agent; GET /node from the host answers name=node1, the
#      archive's arch and its KVM: kvm_amd on x86_64 (TCG -cpu max emulates
#      AMD-V), kvm_arm64 on aarch64 (virtualization=on starts the kernel at
#      EL2);
#   2. `vireo node info` (the CLI) reads the same node;
#   3. /sbin/modprobe (vireo-init) loads modules, also for the kernel's
#      request_module(); the agent killed from the debug shell is restarted
#      within 1 s;
#   4. QEMU's system_powerdown (the ACPI power button; on aarch64 virt, a
#      GPIO key) → orderly shutdown, QEMU exits 0;
#   5. a second boot with a static address (vireo.ip=), no debug shell and an
#      ext4 disk labelled VIREO-DATA (virtio-blk): the disk is mounted as
#      persistent state and left clean by the orderly shutdown.
# Prints the timings; exits non-zero on the first failure.
#
#   tests/appliance/boot-test.sh [INITRAMFS]
#
# Environment: ARCH (default: from the archive's name, initramfs-ARCH.*),
# KERNEL (default /boot/vmlinuz-<release in INITRAMFS.kver>; aarch64: the one
# in ARM64_ROOT, default target/build/debian-arm64, see `make initramfs
# APPLIANCE_ARCH=aarch64`), HOST_PORT (18006; aarch64 18016), VIREO_CLI (the
# host build of `vireo`), BOOT_TIMEOUT (240 s), CONSOLE_LOG (a path to keep
# the guest's console log at).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
initrd=${1:-$repo/target/build/appliance/initramfs-x86_64.cpio.zst}
[[ -s $initrd ]] || { echo "boot-test: no $initrd (make initramfs)" >&2; exit 2; }
kver=$(cat "$initrd.kver" 2>/dev/null || uname -r)
arch=${ARCH:-$(basename "$initrd" | sed -nE 's/^initramfs-([a-z0-9_]+)\..*/\1/p')}

# Everything that differs per architecture.
#   qemu        QEMU and its machine
#   tty         the serial console's name in the guest
#   kvm_kind    what /node must report as kvm.kind
#   nic_module  the module coldplug must load for QEMU's default NIC
case $arch in
  x86_64)
    qemu=(qemu-system-x86_64 -machine q35,accel=tcg -cpu max)
    tty=ttyS0 kvm_kind=kvm_amd nic_module=e1000e
    kernel=${KERNEL:-/boot/vmlinuz-$kver}
    port=${HOST_PORT:-18006}
    ;;
  aarch64)
    # virtualization=on: the guest kernel starts at EL2, so its built-in
    # KVM comes up (without it: no /dev/kvm, kind none).
    qemu=(qemu-system-aarch64 -machine virt,virtualization=on,accel=tcg -cpu max)
    tty=ttyAMA0 kvm_kind=kvm_arm64 nic_module=virtio_net
    kernel=${KERNEL:-${ARM64_ROOT:-$repo/target/build/debian-arm64}/boot/vmlinuz-$kver}
    port=${HOST_PORT:-18016}
    ;;
  *) echo "boot-test: unknown ARCH '$arch' (x86_64 or aarch64; set ARCH)" >&2; exit 2 ;;
esac
cli=${VIREO_CLI:-$repo/target/x86_64-unknown-linux-musl/release/vireo}
boot_timeout=${BOOT_TIMEOUT:-240}

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-boot-test.XXXXXX")
con=$work/console-1.log
qemu_pid=
reader_pid=

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[boot-test +$(elapsed "$t0" "$(now)")s] $*"; }

cleanup() {
  [[ -n ${CONSOLE_LOG:-} ]] && cat "$work"/console-*.log >"$CONSOLE_LOG" 2>/dev/null
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

# Boots the node: $1 = console log name, $2 = extra kernel command line,
# the rest = extra QEMU arguments. The serial console goes through two FIFOs
# (QEMU reads con.in, writes con.out), so the test can both read the log and
# type into the debug shell.
boot() {
  local name=$1 append=$2
  shift 2
  con=$work/console-$name.log
  rm -f "$work/con.in" "$work/con.out" "$work/mon"
  mkfifo "$work/con.in" "$work/con.out"
  cat "$work/con.out" >"$con" &
  reader_pid=$!
  # Held open so QEMU never sees EOF on the console input between commands.
  exec 3<>"$work/con.in"
  t0=$(now)
  "${qemu[@]}" -m 1024 -smp 2 \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=$tty panic=-1 $append" \
    -nic "user,hostfwd=tcp:127.0.0.1:$port-:8006" \
    -display none -no-reboot \
    -chardev "pipe,id=con,path=$work/con" -serial chardev:con \
    -monitor "unix:$work/mon,server=on,wait=off" "$@" &
  qemu_pid=$!
  log "QEMU started (pid $qemu_pid): $(basename "$kernel") + $(basename "$initrd"), $append"
}

# Polls GET /node until it answers; sets $node and $t_node. Short attempts:
# before the guest has its address, QEMU accepts the host side of the
# forwarded connection and an attempt hangs until its timeout.
wait_node() {
  local deadline=$((SECONDS + boot_timeout))
  until node=$(curl -sf --max-time 1 "http://127.0.0.1:$port/node"); do
    qemu_alive || fail "QEMU exited before the agent answered"
    ((SECONDS < deadline)) || fail "no answer on /node within $boot_timeout s"
    sleep 0.2
  done
  t_node=$(now)
  log "GET /node: $node"
}

# Presses the ACPI power button and waits for QEMU to exit 0; sets $t_off_s.
power_down() {
  wait_console 'power button: watching' 10
  local t_off deadline=$((SECONDS + 60)) status
  t_off=$(now)
  monitor system_powerdown
  while qemu_alive; do
    ((SECONDS < deadline)) || fail "QEMU still running 60 s after system_powerdown"
    sleep 0.2
  done
  set +e
  wait "$qemu_pid"
  status=$?
  set -e
  qemu_pid=
  t_off_s=$(elapsed "$t_off" "$(now)")
  kill "$reader_pid" 2>/dev/null || true
  exec 3>&-
  [[ $status == 0 ]] || fail "QEMU exited with status $status"
  for want in 'power button pressed' 'shutdown \(PowerOff\): stopping services' 'vireo-agent: stopped' 'shutdown: powering off'; do
    grep -qE "$want" "$con" || fail "console lacks /$want/"
  done
  log "powered off: QEMU exited 0 ${t_off_s}s after system_powerdown"
}

guest_t() { grep -m1 -oE "\[ *[0-9.]+\] vireo-init: ($1)" "$con" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }

# --- 1. first boot: DHCP, debug shell, no disk ---
boot 1 "vireo.hostname=node1 vireo.debug=shell"
wait_node
for want in '"name":"node1"' "\"arch\":\"$arch\"" "\"kind\":\"$kvm_kind\"" '"available":true'; do
  grep -qF "$want" <<<"$node" || fail "/node lacks $want"
done
curl -sf "http://127.0.0.1:$port/health" | grep -qF '"status":"ok"' || fail "/health"
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")
[[ $status == 404 ]] || fail "GET /nope answered $status, not 404"
grep -qE 'dhcp: lease 10\.0\.2\.15/24 gateway 10\.0\.2\.2' "$con" || fail "no DHCP lease line"
grep -qE "modules loaded:.*$nic_module" "$con" || fail "$nic_module (QEMU's default NIC) was not loaded"
grep -qE 'state: RAM ONLY' "$con" || fail "no RAM-only state message"

# --- 2. the CLI ---
if [[ -x $cli ]]; then
  "$cli" node info --host "127.0.0.1:$port" | tee "$work/cli.txt"
  grep -qE '^name: +node1$' "$work/cli.txt" || fail "vireo node info: wrong name"
  json=$("$cli" node info --host "127.0.0.1:$port" --json) || fail "vireo node info --json failed"
  grep -qF "\"kind\": \"$kvm_kind\"" <<<"$json" || fail "vireo node info --json: $json"
else
  log "skipping the CLI check: no $cli"
fi

# --- 3. agent restart ---
wait_console 'debug-shell started' 30
type_line ''
sleep 1
# /sbin/modprobe is vireo-init: by hand, then through the kernel's own
# request_module() ("rtnl-link-bond" → bonding; a name other than bond0,
# which the module creates itself). Markers are computed so the
# shell's echo of the command line cannot match them.
type_line '/sbin/modprobe -q -- 8021q && grep -q "^8021q " /proc/modules && echo MODPROBE-$((40+2))'
wait_console '^MODPROBE-42' 30
type_line 'ip link add vbond1 type bond && grep -q "^bonding " /proc/modules && echo AUTOLOAD-$((40+2))'
wait_console '^AUTOLOAD-42' 30
log "modprobe: by hand and through request_module()"
type_line 'kill -9 $(pidof vireo-agent)'
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
power_down
boot1_node=$(elapsed "$t0" "$t_node")
boot1_times="init $(guest_t 'Vireo init starting') s, coldplug done $(guest_t 'modules loaded:') s, agent started $(guest_t 'vireo-agent started') s, DHCP lease $(guest_t 'dhcp: lease') s"
boot1_off=$t_off_s

# --- 5. second boot: static address, no shell, a VIREO-DATA disk ---
disk=$work/data.img
truncate -s 64M "$disk"
mkfs.ext4 -q -L VIREO-DATA "$disk"
boot 2 "vireo.hostname=node2 vireo.ip=10.0.2.15/24,10.0.2.2" \
  -drive "file=$disk,format=raw,if=none,id=data" -device virtio-blk-pci,drive=data
wait_node
grep -qF '"name":"node2"' <<<"$node" || fail "/node of the second boot lacks name node2"
grep -qE 'network: static 10\.0\.2\.15/24 gateway 10\.0\.2\.2 on vmbr0' "$con" || fail "no static address line"
grep -qE 'state: /dev/vda \(VIREO-DATA\) mounted on /var/lib/vireo: persistent' "$con" || fail "state disk not mounted"
grep -qE 'debug-shell|debug shell' "$con" && fail "a debug shell started without vireo.debug=shell"
grep -qE 'cannot load' "$con" && fail "a module failed to load: $(grep -m1 'cannot load' "$con")"
boot2_node=$(elapsed "$t0" "$t_node")
power_down
dumpe2fs -h "$disk" 2>/dev/null | grep -qE '^Filesystem state: +clean$' || fail "the state disk was not left clean"
log "state disk clean after shutdown"

echo
echo "== timings =="
echo "boot 1 (DHCP): QEMU start -> first GET /node answer: $boot1_node s (host clock); guest clock: $boot1_times"
echo "boot 2 (static, state disk): QEMU start -> first GET /node answer: $boot2_node s (host clock)"
echo "agent killed -> restarted: $restart s (guest clock)"
echo "system_powerdown -> QEMU exit 0: $boot1_off s (boot 1), $t_off_s s (boot 2)"
echo "boot-test: PASS"
