# Shared helpers of the appliance tests (boot-test.sh, image-test.sh): a
# QEMU TCG node with its serial console on FIFOs, its monitor on a Unix
# socket and the agent's port 8006 forwarded to 127.0.0.1:$port.
#
# The sourcing script sets `port` and `boot_timeout`, then calls
# `test_init NAME` and, for a node other than x86_64, `appliance_arch ARCH`. Sets: work (scratch dir, removed at exit), con (the
# current console log), qemu_pid, t0 (QEMU start), node/t_node (wait_node),
# t_off_s (power_down).
# shellcheck shell=bash
# port and boot_timeout come from the sourcing script, which reads what the
# helpers set (t_node, node, t_off_s, ...); QEMU options carry commas.
# shellcheck disable=SC2154,SC2034,SC2054

test_name=appliance-test
# An admin token the node's agent accepts (vireo.admin_token= on the kernel
# command line, where a test boots a kernel directly); api_curl sends it.
API_TOKEN=vireo-appliance-test-$$-$RANDOM
api_curl() { curl -H "Authorization: Bearer $API_TOKEN" "$@"; }
qemu_pid=
reader_pid=

# Everything that differs per architecture (default x86_64):
#   qemu        QEMU and its machine
#   tty         the serial console's name in the guest
#   kvm_kind    what /node must report as kvm.kind
#   nic_module  the module coldplug loads for QEMU's default NIC
#   uefi_code, uefi_vars   the UEFI firmware and its variable store template
#   grub_efi    GRUB's UEFI platform (the PXE bundle's grub/PLATFORM/core.efi)
#   netboot_nic the NIC whose firmware driver netboots
appliance_arch() {
  arch=$1
  case $arch in
    x86_64)
      qemu=(qemu-system-x86_64 -machine q35,accel=tcg -cpu max)
      tty=ttyS0 kvm_kind=kvm_amd nic_module=e1000e grub_efi=x86_64-efi netboot_nic=e1000e
      uefi_code=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
      uefi_vars=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
      ;;
    aarch64)
      # virtualization=on: the guest kernel starts at EL2, so its built-in
      # KVM comes up (without it: no /dev/kvm, kind none). gic-version=3:
      # KVM's vGICv3, which vireo-vmm gives its guests, needs a GICv3 host
      # (virt's default is a GICv2).
      qemu=(qemu-system-aarch64 -machine virt,virtualization=on,gic-version=3,accel=tcg -cpu max)
      tty=ttyAMA0 kvm_kind=kvm_arm64 nic_module=virtio_net grub_efi=arm64-efi netboot_nic=virtio-net-pci
      uefi_code=${AAVMF_CODE:-/usr/share/AAVMF/AAVMF_CODE.fd}
      uefi_vars=${AAVMF_VARS:-/usr/share/AAVMF/AAVMF_VARS.fd}
      ;;
    *) echo "$test_name: unknown ARCH '$arch' (x86_64 or aarch64)" >&2; exit 2 ;;
  esac
}
appliance_arch "${arch:-x86_64}"

# Prints QEMU arguments for the UEFI firmware, with a scratch copy of its
# variables (UEFI writes its boot entries there).
uefi_args() {
  [[ -r $uefi_code && -r $uefi_vars ]] ||
    fail "no UEFI firmware $uefi_code (apt-get install ovmf / qemu-efi-aarch64)"
  cp "$uefi_vars" "$work/uefi-vars.fd"
  echo -drive "if=pflash,format=raw,readonly=on,file=$uefi_code" \
    -drive "if=pflash,format=raw,file=$work/uefi-vars.fd"
}

# Prints QEMU arguments that attach $1 as a CD-ROM. q35 has a SATA CD drive;
# virt has no IDE or SATA, so there a SCSI CD on virtio-scsi.
cdrom_args() {
  case $arch in
    x86_64) echo -cdrom "$1" ;;
    aarch64) echo -device virtio-scsi-pci -drive "file=$1,if=none,id=cd,media=cdrom,format=raw,readonly=on" \
      -device scsi-cd,drive=cd ;;
  esac
}

# A TCP port nobody listens on now. QEMU refuses to start when its hostfwd
# port is taken, which happens when tests run side by side.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[$test_name +$(elapsed "$t0" "$(now)")s] $*"; }

test_init() {
  test_name=$1
  work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-$test_name.XXXXXX")
  con=$work/console-none.log
  t0=$(now)
  trap cleanup EXIT
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; then
    fail "something already answers on 127.0.0.1:$port (set HOST_PORT)"
  fi
}

stop_qemu() {
  [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  [[ -n $reader_pid ]] && kill "$reader_pid" 2>/dev/null
  qemu_pid=
  reader_pid=
  exec 3>&- || true
}

cleanup() {
  [[ -n ${CONSOLE_LOG:-} ]] && cat "$work"/console-*.log >"$CONSOLE_LOG" 2>/dev/null
  stop_qemu || true
  rm -rf "$work"
}

# Each boot (start_qemu → power_down) is one test in `make test`'s count
# (tests/ci/run-tiers.sh reads the RESULT lines).
fail() {
  echo "$test_name: FAIL: $*" >&2
  echo "RESULT FAIL $test_name/$arch/${boot_name:-setup}: $*"
  echo "----- last console lines ($con) -----" >&2
  tail -n 60 "$con" >&2 || true
  exit 1
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
  python3 - "$work/mon" "$1" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(0.2)
s.sendall(sys.argv[2].encode() + b"\n")
time.sleep(0.3)
s.close()
PY
}

# Starts QEMU ("${qemu[@]}": q35 or virt, TCG, -cpu max; 1 GiB, 2 CPUs) with the
# serial console on two FIFOs (QEMU reads con.in, writes con.out), so the
# test can both read the log and type into the debug shell. $1: console log
# name; the rest: QEMU arguments for the boot medium and the network.
start_qemu() {
  local name=$1
  shift
  boot_name=$name
  con=$work/console-$name.log
  rm -f "$work/con.in" "$work/con.out" "$work/mon"
  mkfifo "$work/con.in" "$work/con.out"
  cat "$work/con.out" >"$con" &
  reader_pid=$!
  # Held open so QEMU never sees EOF on the console input between commands.
  exec 3<>"$work/con.in"
  t0=$(now)
  "${qemu[@]}" -m 1024 -smp 2 \
    -display none -no-reboot \
    -chardev "pipe,id=con,path=$work/con" -serial chardev:con \
    -monitor "unix:$work/mon,server=on,wait=off" "$@" &
  qemu_pid=$!
}

# The user network with the agent's port forwarded (QEMU's DHCP: 10.0.2.15).
user_nic() { echo "user,hostfwd=tcp:127.0.0.1:$port-:8006"; }

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

# Checks that $node has every string given.
node_has() {
  local want
  for want in "$@"; do
    grep -qF "$want" <<<"$node" || fail "/node lacks $want: $node"
  done
}

# Presses the power button (ACPI; a GPIO key on virt booted with a device
# tree) and waits for QEMU to exit 0; sets $t_off_s.
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
  reader_pid=
  exec 3>&-
  [[ $status == 0 ]] || fail "QEMU exited with status $status"
  for want in 'power button pressed' 'shutdown \(PowerOff\): stopping services' 'vireo-agent: stopped' 'shutdown: powering off'; do
    grep -qaE "$want" "$con" || fail "console lacks /$want/"
  done
  log "powered off: QEMU exited 0 ${t_off_s}s after system_powerdown"
  echo "RESULT PASS $test_name/$arch/$boot_name"
}

# The guest-clock stamp of init's first console line matching $1.
guest_t() { grep -a -m1 -oE "\[ *[0-9.]+\] vireo-init: ($1)" "$con" | sed -E 's/^\[ *([0-9.]+)\].*/\1/'; }
