# shellcheck shell=bash
# The variables set here are read by the sourcing scripts; QEMU options
# carry commas.
# shellcheck disable=SC2034,SC2054
# Shell helpers for the appliance boot tests (sourced, not run): the
# per-architecture QEMU settings, starting QEMU with its serial console on
# FIFOs and its monitor on a Unix socket, waiting for the console and for the
# agent, and the power button.
#
# The sourcing script sets `test_name` (log prefix) first and may set
# `boot_timeout`; it calls `appliance_arch ARCH` before `start_qemu`.
# Environment: HOST_PORT (default: a free port), BOOT_TIMEOUT (240 s),
# CONSOLE_LOG (a path to keep the guest's console logs at).

boot_timeout=${BOOT_TIMEOUT:-240}
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-${test_name:-boot-test}.XXXXXX")
con=$work/console-1.log
qemu_pid=
reader_pid=
t0=

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[${test_name:-boot-test} +$(elapsed "${t0:-$(now)}" "$(now)")s] $*"; }

cleanup() {
  [[ -n ${CONSOLE_LOG:-} ]] && cat "$work"/console-*.log >"$CONSOLE_LOG" 2>/dev/null
  if [[ -n $qemu_pid ]]; then kill "$qemu_pid" 2>/dev/null || true; fi
  if [[ -n $reader_pid ]]; then kill "$reader_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "${test_name:-boot-test}: FAIL: $*" >&2
  echo "----- last console lines -----" >&2
  tail -n 60 "$con" >&2 || true
  exit 1
}

# Everything that differs per architecture:
#   qemu        QEMU and its machine
#   uefi_code   the UEFI firmware (OVMF / AAVMF) and its variable store
#   uefi_vars   template (see uefi_args)
#   tty         the serial console's name in the guest
#   kvm_kind    what /node must report as kvm.kind
#   nic_module  the module coldplug must load for QEMU's default NIC
appliance_arch() {
  arch=$1
  case $arch in
    x86_64)
      qemu=(qemu-system-x86_64 -machine q35,accel=tcg -cpu max)
      uefi_code=/usr/share/OVMF/OVMF_CODE_4M.fd uefi_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
      tty=ttyS0 kvm_kind=kvm_amd nic_module=e1000e
      ;;
    aarch64)
      # virtualization=on: the guest kernel starts at EL2, so its built-in
      # KVM comes up (without it: no /dev/kvm, kind none).
      qemu=(qemu-system-aarch64 -machine virt,virtualization=on,accel=tcg -cpu max)
      uefi_code=/usr/share/AAVMF/AAVMF_CODE.fd uefi_vars=/usr/share/AAVMF/AAVMF_VARS.fd
      tty=ttyAMA0 kvm_kind=kvm_arm64 nic_module=virtio_net
      ;;
    *) echo "${test_name:-boot-test}: unknown ARCH '$arch' (x86_64 or aarch64; set ARCH)" >&2; exit 2 ;;
  esac
  port=${HOST_PORT:-$(free_port)}
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    fail "something already answers on 127.0.0.1:$port (set HOST_PORT)"
  fi
}

# Sets uefi_opts: the firmware's code and a private copy of its variables.
uefi_args() {
  [[ -r $uefi_code && -r $uefi_vars ]] ||
    fail "no UEFI firmware $uefi_code (apt-get install ovmf / qemu-efi-aarch64)"
  cp "$uefi_vars" "$work/uefi-vars.fd"
  uefi_opts=(-drive "if=pflash,format=raw,readonly=on,file=$uefi_code"
    -drive "if=pflash,format=raw,file=$work/uefi-vars.fd")
}

# Sets cdrom_opts: $1 as a CD-ROM. q35 has a SATA CD drive; virt has no IDE
# or SATA, so there it is a SCSI CD on virtio-scsi.
cdrom_args() {
  case $arch in
    x86_64) cdrom_opts=(-cdrom "$1") ;;
    aarch64) cdrom_opts=(-device virtio-scsi-pci
      -drive "file=$1,if=none,id=cd,media=cdrom,format=raw,readonly=on" -device scsi-cd,drive=cd) ;;
  esac
}

# A TCP port nobody listens on now, so parallel tests do not collide on the
# forward (QEMU refuses to start when its hostfwd port is taken).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

qemu_alive() { kill -0 "$qemu_pid" 2>/dev/null; }

# Waits until the console log matches the extended regex $1 (timeout $2 s).
wait_console() {
  local deadline=$((SECONDS + $2))
  until grep -qaE "$1" "$con"; do
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

# Starts the node: $1 = console log name, the rest = QEMU arguments that say
# what to boot. The serial console goes through two FIFOs (QEMU reads con.in,
# writes con.out), so the test can both read the log and type into the debug
# shell. The agent's port 8006 is forwarded to 127.0.0.1:$port.
start_qemu() {
  local name=$1
  shift
  con=$work/console-$name.log
  rm -f "$work/con.in" "$work/con.out" "$work/mon"
  mkfifo "$work/con.in" "$work/con.out"
  cat "$work/con.out" >"$con" &
  reader_pid=$!
  # Held open so QEMU never sees EOF on the console input between commands.
  exec 3<>"$work/con.in"
  t0=$(now)
  "${qemu[@]}" -m 1024 -smp 2 \
    -nic "user,hostfwd=tcp:127.0.0.1:$port-:8006" \
    -display none -no-reboot \
    -chardev "pipe,id=con,path=$work/con" -serial chardev:con \
    -monitor "unix:$work/mon,server=on,wait=off" "$@" &
  qemu_pid=$!
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

# /node must carry these name, arch and KVM (available, kind) values.
check_node() {
  local want
  for want in "\"name\":\"$1\"" "\"arch\":\"$arch\"" "\"kind\":\"$kvm_kind\"" '"available":true'; do
    grep -qF "$want" <<<"$node" || fail "/node lacks $want: $node"
  done
}

# Presses the power button and waits for QEMU to exit 0; sets $t_off_s.
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
    grep -qaE "$want" "$con" || fail "console lacks /$want/"
  done
  log "powered off: QEMU exited 0 ${t_off_s}s after system_powerdown"
}

# The guest-clock time of init's first console line matching $1.
guest_t() { grep -am1 -oE "\[ *[0-9.]+\] vireo-init: ($1)" "$con" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
