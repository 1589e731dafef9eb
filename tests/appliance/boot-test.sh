#!/usr/bin/env bash
# Boot the appliance initramfs under QEMU TCG and check it end to end, on
# x86_64 (q35) or aarch64 (virt at EL2), whichever the archive is built for:
#   1. init mounts, loads modules, gets a DHCP lease from QEMU's user network,
#      starts the agent; GET /node from the host answers name=node1, the
#      archive's arch and its KVM: kvm_amd on x86_64 (TCG -cpu max emulates
#      AMD-V), kvm_arm64 on aarch64 (virtualization=on: the kernel starts at
#      EL2);
#   2. `vireo node info` (the CLI) reads the same node;
#   3. /sbin/modprobe (vireo-init) loads modules, also for the kernel's
#      request_module(); a NAT network's masquerade rule is in nft's ruleset;
#      a VM started through the API runs jailed (uid/gid, PID namespace,
#      root, cgroup and its memory.max read in the debug shell); the agent
#      killed from the debug shell is restarted within 1 s;
#   4. QEMU's system_powerdown (the ACPI power button; on aarch64 virt, a
#      GPIO key) → orderly shutdown, QEMU exits 0;
#   5. a second boot with a static address (vireo.ip=), no debug shell and an
#      ext4 disk labelled VIREO-DATA (virtio-blk): the disk is mounted as
#      persistent state and left clean by the orderly shutdown; on x86_64
#      kvm_amd is loaded with kvm_amd.vgif=0 from the command line and POST
#      /selftest/vmm has vireo-vmm boot the probe guest inside the node, then
#      (?guest=linux) the rig's minimal Linux guest, added to this boot's
#      initramfs; on aarch64 (no probe: it is an x86_64 program) the plain
#      POST boots the aarch64 rig's minimal arm64 guest under kvm_arm64;
#   6. a third boot with a truncated module (ahci.ko on x86_64,
#      virtio_mmio.ko on aarch64) and a modules.dep entry whose
#      file is missing: both logged, the node boots and answers; the static
#      address from the kernel's ip= option;
#   7. aarch64 only: a fourth boot on virt without virtualization=on (EL1):
#      /node reports KVM available false, kind none.
# Prints the timings; exits non-zero on the first failure.
#
#   tests/appliance/boot-test.sh [INITRAMFS]
#
# Environment: ARCH (default: from the archive's name, initramfs-ARCH.*),
# KERNEL (default /boot/vmlinuz-<release in INITRAMFS.kver>; aarch64: the one
# unpacked in ARM64_ROOT, default target/build/debian-arm64, by `make
# initramfs APPLIANCE_ARCH=aarch64`), HOST_PORT (default: a free port),
# VIREO_CLI (the host build of `vireo`), LINUX_GUEST_DIR (bzImage and
# initramfs.cpio.gz of the rig's guest, default target/build/guest), BOOT_TIMEOUT (240 s), CONSOLE_LOG (a
# path to keep the guest's console log at).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
initrd=${1:-$repo/target/build/appliance/initramfs-x86_64.cpio.zst}
[[ -s $initrd ]] || { echo "boot-test: no $initrd (make initramfs)" >&2; exit 2; }
initrd=$(realpath "$initrd")
kver=$(cat "$initrd.kver" 2>/dev/null || uname -r)
arch=${ARCH:-$(basename "$initrd" | sed -nE 's/^initramfs-([a-z0-9_]+)\..*/\1/p')}
cli=${VIREO_CLI:-$repo/target/x86_64-unknown-linux-musl/release/vireo}
linux_guest=${LINUX_GUEST_DIR:-$repo/target/build/guest}
guest_kernel=bzImage
# aarch64: the aarch64 rig's minimal guest (make guest-kernel-arm64 guest-initramfs-arm64).
[[ $arch == aarch64 ]] && linux_guest=${LINUX_GUEST_DIR:-$repo/target/build/guest-arm64} guest_kernel=Image
boot_timeout=${BOOT_TIMEOUT:-240}

# shellcheck source=tests/appliance/lib.sh
. "$here/lib.sh"
port=${HOST_PORT:-$(free_port)}
appliance_arch "$arch"
test_init boot-test

# with_overlay INITRD DIR OUT: OUT = INITRD followed by an uncompressed
# archive of DIR. The kernel unpacks concatenated archives in order, later
# files replacing earlier ones, and reads the next archive only at a 4-byte
# aligned offset (zero bytes in between are skipped): pad the first one.
with_overlay() {
  cp "$1" "$3"
  truncate -s $(( ($(stat -c %s "$3") + 3) / 4 * 4 )) "$3"
  (cd "$2" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >>"$3"
}
# The module coldplug loads on this machine that boot 3 corrupts.
case $arch in
  x86_64)
    kernel=${KERNEL:-/boot/vmlinuz-$kver}
    corrupt_module=kernel/drivers/ata/ahci.ko
    ;;
  aarch64)
    kernel=${KERNEL:-${ARM64_ROOT:-$repo/target/build/debian-arm64}/boot/vmlinuz-$kver}
    corrupt_module=kernel/drivers/virtio/virtio_mmio.ko
    ;;
esac
[[ -r $kernel ]] || fail "kernel $kernel not readable"

# Boots the node from $kernel and $initrd: $1 = console log name, $2 = extra
# kernel command line, the rest = extra QEMU arguments.
boot() {
  local name=$1 append=$2
  shift 2
  start_qemu "$name" -kernel "$kernel" -initrd "$initrd" \
    -append "console=$tty panic=-1 vireo.admin_token=$API_TOKEN $append" -nic "$(user_nic)" "$@"
  log "QEMU started (pid $qemu_pid): $(basename "$kernel") + $(basename "$initrd"), $append"
}

# A VM started through the API runs jailed (docs/security.md, "Jailed VMs"):
# the agent's default --jail auto jails on a node that can, and the facts
# are read in the node's debug shell from /proc and /sys. The guest stays up
# until destroyed: the probe halted (probe.hold) on x86_64; on aarch64 the
# Linux guest's kernel without an initramfs, waiting after its panic.
jail_vm=jailcheck jail_mem_max_mib=200
# jail_guest_line: what the guest prints on its console once it runs.
case $arch in
  x86_64) jail_boot='"kernel":"/usr/lib/vireo/probe.elf","cmdline":"probe.hold"' jail_guest_line='PROBE start' ;;
  aarch64) jail_boot='"kernel":"/usr/lib/vireo/guest/Image","cmdline":"console=ttyS0 panic=0"' jail_guest_line='Linux version' ;;
esac
# jail_fact KEY: the rest of the debug shell's last "JAIL-42 KEY ..." line.
jail_fact() { grep -a "^JAIL-42 $1 " "$con" | tail -n1 | tr -d '\r' | cut -d' ' -f3-; }
# The agent's own word at its start: "VMMs run jailed (PATH)" or "VMMs run
# unjailed: why" (a line kernel messages may split, so only shown on failure).
jail_fail() { fail "$* (agent: $(grep -a -m1 -oE 'VMMs run .*' "$con" || echo 'no jail line'))"; }
check_jailed_vm() {
  api_curl -sf --max-time 30 -H 'Content-Type: application/json' -o /dev/null \
    -d "{\"name\":\"$jail_vm\",\"memory_mib\":64,\"limits\":{\"memory_max_mib\":$jail_mem_max_mib},\"boot\":{\"kind\":\"kernel\",$jail_boot}}" \
    "http://127.0.0.1:$port/vms" || fail "POST /vms ($jail_vm) failed"
  local answer
  answer=$(api_curl -s --max-time 60 -X POST -w ' %{http_code}' "http://127.0.0.1:$port/vms/$jail_vm/start") ||
    jail_fail "POST /vms/$jail_vm/start: no answer"
  [[ ${answer##* } == 2?? ]] || jail_fail "POST /vms/$jail_vm/start answered: $answer"
  local info jailer_pid uuid
  info=$(api_curl -sf --max-time 10 "http://127.0.0.1:$port/vms/$jail_vm") || fail "GET /vms/$jail_vm failed"
  read -r jailer_pid uuid < <(python3 -c 'import json, sys; v = json.load(sys.stdin); print(v["pid"], v["uuid"])' <<<"$info") ||
    fail "GET /vms/$jail_vm: no pid: $info"
  # The VMM is the jailer's child. Markers are computed, so the shell's
  # echo of a command line cannot match them. Kernel messages stay off the
  # console meanwhile (still in dmesg): one could split a line read here.
  type_line "L=\$(cut -f1 /proc/sys/kernel/printk); dmesg -n 1; J=$jailer_pid; m=JAIL-\$((40+2)); i=0; until P=\$(grep -l \"^PPid:.\$J\$\" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3) && [ -n \"\$P\" ] || [ \$i -ge 50 ]; do sleep 0.2; i=\$((i+1)); done; echo \"\$m pid \$P \$(cat /proc/\$P/comm)\""
  type_line 'echo "$m ids $(grep -E "^(Uid|Gid):" /proc/$P/status | tr "\t\n" "  " | tr -s " ")"'
  type_line 'echo "$m ns vmm=$(readlink /proc/$P/ns/pid) init=$(readlink /proc/1/ns/pid) $(grep NSpid: /proc/$P/status | tr "\t" " " | tr -s " ")"'
  type_line 'echo "$m root $(ls /proc/$P/root | tr "\n" " ")"; echo "$m hostroot $(ls / | tr "\n" " ")"'
  type_line 'c=$(cut -d: -f3 /proc/$P/cgroup); echo "$m cgroup $c agent=$(cut -d: -f3 /proc/$(pidof vireo-agent)/cgroup) memory.max=$(cat /sys/fs/cgroup$c/memory.max)"'
  wait_console '^JAIL-42 cgroup ' 30
  local pid ids ns root hostroot cgroup
  pid=$(jail_fact pid) ids=$(jail_fact ids) ns=$(jail_fact ns) root=$(jail_fact root)
  hostroot=$(jail_fact hostroot) cgroup=$(jail_fact cgroup)
  log "jailed VMM: pid $pid (child of the jailer, pid $jailer_pid)"
  log "jailed VMM: $ids"
  log "jailed VMM: $ns"
  log "jailed VMM: root: $root (the node's: $hostroot)"
  log "jailed VMM: cgroup $cgroup"
  [[ $pid =~ ^[0-9]+\ vireo-vmm$ ]] || jail_fail "no vireo-vmm child of the jailer $jailer_pid: '$pid'"
  [[ $ids =~ ^Uid:(\ [1-9][0-9]*){4}\ Gid:(\ [1-9][0-9]*){4}\ ?$ ]] || jail_fail "the VMM runs with uid/gid 0: $ids"
  [[ $ns =~ ^vmm=(pid:\[[0-9]+\])\ init=(pid:\[[0-9]+\])\ NSpid:\ [0-9]+\ 1$ ]] &&
    [[ ${BASH_REMATCH[1]} != "${BASH_REMATCH[2]}" ]] || jail_fail "the VMM is not PID 1 of a PID namespace of its own: $ns"
  [[ -n $root && $root != "$hostroot" && " $root " != *" init "* ]] || jail_fail "the VMM's root is the node's: $root"
  local want=$((jail_mem_max_mib << 20))
  [[ $cgroup =~ ^(/[^ ]*/$uuid)\ agent=([^ ]*)\ memory.max=$want$ ]] && [[ ${BASH_REMATCH[1]} != "${BASH_REMATCH[2]}" ]] ||
    jail_fail "the VMM is not in a cgroup of its own (…/$uuid) with memory.max $want: $cgroup"
  # The guest runs in there: its console line in the VM's log.
  local deadline=$((SECONDS + 60)) guest_log=
  until grep -qaF "$jail_guest_line" <<<"$guest_log"; do
    ((SECONDS < deadline)) || fail "the jailed VM's guest printed no '$jail_guest_line' in 60 s: ${guest_log: -1000}"
    sleep 0.5
    guest_log=$(api_curl -s --max-time 10 "http://127.0.0.1:$port/vms/$jail_vm/log?bytes=4096")
  done
  log "jailed VM's console: $(grep -a -m1 -F "$jail_guest_line" <<<"$guest_log" | tr -d '\r')"
  # Destroyed, the VM leaves neither its jailer nor its cgroup behind.
  api_curl -sf --max-time 30 -X POST -o /dev/null "http://127.0.0.1:$port/vms/$jail_vm/destroy" ||
    fail "POST /vms/$jail_vm/destroy failed"
  type_line 'i=0; while [ -d /sys/fs/cgroup$c ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; [ -d /sys/fs/cgroup$c ] && echo "$m after kept" || echo "$m after gone"'
  wait_console '^JAIL-42 after ' 30
  type_line 'dmesg -n $L'
  [[ $(jail_fact after) == gone ]] || fail "the VM's cgroup is still there 20 s after destroy"
  log "jailed VM destroyed: its cgroup removed"
}

# The rig's minimal Linux guest (make guest-kernel guest-initramfs; aarch64:
# guest-kernel-arm64 guest-initramfs-arm64) rides in an overlay at
# /usr/lib/vireo/guest, where POST /selftest/vmm?guest=linux looks for it
# (boot 2; boot 1 too on aarch64, for the jailed VM); the shipped image has
# no Linux guest.
[[ -s $linux_guest/$guest_kernel && -s $linux_guest/initramfs.cpio.gz ]] ||
  fail "no Linux guest in $linux_guest (make guest-kernel guest-initramfs, or the -arm64 ones)"
mkdir -p "$work/guest-overlay/usr/lib/vireo/guest"
cp "$linux_guest/$guest_kernel" "$linux_guest/initramfs.cpio.gz" "$work/guest-overlay/usr/lib/vireo/guest/"
initrd_plain=$initrd
initrd_with_guest=$work/initrd-with-guest
with_overlay "$initrd_plain" "$work/guest-overlay" "$initrd_with_guest"

# --- 1. first boot: DHCP, debug shell, no disk ---
[[ $arch == aarch64 ]] && initrd=$initrd_with_guest
boot 1 "vireo.hostname=node1 vireo.debug=shell"
initrd=$initrd_plain
wait_node
node_has '"name":"node1"' "\"arch\":\"$arch\"" "\"kind\":\"$kvm_kind\"" '"available":true'
curl -sf "http://127.0.0.1:$port/health" | grep -qF '"status":"ok"' || fail "/health"
status=$(api_curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope")
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
  echo "RESULT SKIP boot-test/$arch/cli: no $cli (build it: cargo build -p vireo-cli)"
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
# /dev/net/tun before anything loaded tun (init makes modules.devname's
# nodes), and opening it loads the module: the agent makes VM taps there.
type_line 'test -c /dev/net/tun && { cat /dev/net/tun 2>/dev/null; test -d /sys/module/tun; } && echo TUN-$((40+2))'
wait_console '^TUN-42' 30 || fail "no /dev/net/tun, or opening it did not load tun"
log "/dev/net/tun: there at boot, tun loaded on first open"
# A NAT network: the agent makes its bridge and its nftables rules with the
# node's own nft (a glibc program shipped with its libraries), and the
# ruleset the kernel holds then masquerades the network's subnet.
nat=$(api_curl -s --max-time 30 -w ' %{http_code}' -H 'Content-Type: application/json' \
  -d '{"name":"natlab","kind":"nat","subnet":"10.88.0.0/24"}' "http://127.0.0.1:$port/networks") ||
  fail "POST /networks (nat): no answer"
[[ ${nat##* } == 201 ]] || fail "POST /networks (nat) answered: $nat"
type_line 'nft list ruleset | grep -q "10.88.0.0/24.*masquerade" && echo NFT-$((40+2))'
wait_console '^NFT-42' 30 || fail "no masquerade rule for the NAT network in the node's ruleset"
log "NAT network: bridge and masquerade rule made through the node's nft"
check_jailed_vm
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
# kvm_amd.vgif=0: QEMU 7.2's TCG emulation of AMD's virtual GIF is
# unreliable under nested KVM (tests/rig/README.md); init passes the option.
initrd=$initrd_with_guest
boot 2 "vireo.hostname=node2 vireo.ip=10.0.2.15/24,10.0.2.2 kvm_amd.vgif=0" \
  -drive "file=$disk,format=raw,if=none,id=data" -device virtio-blk-pci,drive=data
initrd=$initrd_plain
wait_node
grep -qF '"name":"node2"' <<<"$node" || fail "/node of the second boot lacks name node2"
grep -qE 'network: static 10\.0\.2\.15/24 gateway 10\.0\.2\.2 on vmbr0' "$con" || fail "no static address line"
grep -qE 'state: /dev/vda \(VIREO-DATA\) mounted on /var/lib/vireo: persistent' "$con" || fail "state disk not mounted"
grep -qE 'debug-shell|debug shell' "$con" && fail "a debug shell started without vireo.debug=shell"
grep -qE 'cannot load' "$con" && fail "a module failed to load: $(grep -m1 'cannot load' "$con")"
boot2_node=$(elapsed "$t0" "$t_node")
if [[ $arch == x86_64 ]]; then
  # vireo-vmm inside the node boots the probe guest through the nested
  # /dev/kvm (kvm_amd under TCG's emulated AMD-V), asked through the agent.
  grep -qaE 'modules: kvm_amd loaded with vgif=0' "$con" || fail "kvm_amd was not loaded with vgif=0"
  t_self=$(now)
  selftest=$(api_curl -s -X POST --max-time 150 "http://127.0.0.1:$port/selftest/vmm") || fail "POST /selftest/vmm: no answer"
  selftest_s=$(elapsed "$t_self" "$(now)")
  echo "$selftest" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\n".join("  | " + l for l in r["serial"].splitlines()))
lines = r["serial"].splitlines()
for want in ("PROBE start boot=pvh", "PROBE cmdline vireo selftest", "PROBE cpus online=2", "PROBE done ok"):
    assert want in lines, "the probe did not print " + repr(want) + ": " + json.dumps(r)
assert r["exit_status"] == 0 and r["ok"] is True, json.dumps(r)
' || fail "the VMM selftest failed: $selftest"
  log "vireo-vmm booted the probe inside the node (2 vCPUs, 64M): ${selftest_s}s through the API"
  # A Linux guest too: the kernel boots under nested KVM, /init sees both vCPUs.
  t_self=$(now)
  selftest=$(api_curl -s -X POST --max-time 200 "http://127.0.0.1:$port/selftest/vmm?guest=linux") ||
    fail "POST /selftest/vmm?guest=linux: no answer"
  linux_s=$(elapsed "$t_self" "$(now)")
  echo "$selftest" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\n".join("  | " + l for l in r["serial"].splitlines() if "VIREO" in l or "Linux version" in l))
assert any(l.startswith("VIREO-GUEST-INIT cpus=2 ") for l in r["serial"].splitlines()), json.dumps(r)[-2000:]
assert r["exit_status"] == 0 and r["ok"] is True, json.dumps(r)[-2000:]
' || fail "the Linux guest selftest failed: ${selftest: -2000}"
  log "vireo-vmm booted a Linux guest inside the node (2 vCPUs, 256M) to /init and its reset: ${linux_s}s through the API"
  if [[ -x $cli ]]; then
    VIREO_TOKEN=$API_TOKEN "$cli" node selftest --host "127.0.0.1:$port" | tee "$work/selftest.txt" || fail "vireo node selftest failed"
    grep -qE '^selftest: ok \(exit status 0, ' "$work/selftest.txt" || fail "vireo node selftest: no ok line"
  fi
else
  # aarch64: no probe (an x86_64 program), so the default selftest is the
  # Linux guest: vireo-vmm inside the node, under kvm_arm64 at EL2.
  t_self=$(now)
  selftest=$(api_curl -s -X POST --max-time 200 "http://127.0.0.1:$port/selftest/vmm") ||
    fail "POST /selftest/vmm: no answer"
  selftest_s=$(elapsed "$t_self" "$(now)")
  echo "$selftest" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\n".join("  | " + l for l in r["serial"].splitlines() if "VIREO" in l or "Linux version" in l))
assert any(l.startswith("VIREO-GUEST-INIT cpus=2 ") for l in r["serial"].splitlines()), json.dumps(r)[-2000:]
assert r["exit_status"] == 0 and r["ok"] is True, json.dumps(r)[-2000:]
' || fail "the Linux guest selftest failed: ${selftest: -2000}"
  log "vireo-vmm booted the arm64 Linux guest inside the node (2 vCPUs, 256M) to /init and its reset: ${selftest_s}s through the API"
fi
power_down
dumpe2fs -h "$disk" 2>/dev/null | grep -qE '^Filesystem state: +clean$' || fail "the state disk was not left clean"
log "state disk clean after shutdown"

# --- 6. third boot: a corrupt and a missing module, the kernel's ip= ---
# The kernel unpacks concatenated archives in order, later files replacing
# earlier ones: an overlay archive after the real one swaps in a truncated
# $corrupt_module (loaded by coldplug: q35's SATA controller, virt's
# virtio-mmio transports) and a modules.dep
# whose tun entry names a file that is not there (tun asked for by
# vireo.modules=). Static address in the kernel's own ip= format.
overlay=$work/overlay
mkdir -p "$overlay"
(cd "$overlay" && zstd -qdc "$initrd" | cpio --quiet -id \
  "lib/modules/$kver/modules.dep" "lib/modules/$kver/$corrupt_module")
ko=$overlay/lib/modules/$kver/$corrupt_module
[[ -s $ko ]] || fail "no $corrupt_module in $initrd"
corrupt_name=$(basename "$corrupt_module" .ko)
truncate -s 4096 "$ko"
sed -i 's|^kernel/drivers/net/tun\.ko:|kernel/drivers/net/missing/tun.ko:|' "$overlay/lib/modules/$kver/modules.dep"
grep -q '^kernel/drivers/net/missing/tun.ko:' "$overlay/lib/modules/$kver/modules.dep" || fail "no tun entry in modules.dep"
broken_initrd=$work/initrd-broken-modules
with_overlay "$initrd" "$overlay" "$broken_initrd"
initrd_good=$initrd
initrd=$broken_initrd
boot 3 "vireo.modules=tun ip=10.0.2.15::10.0.2.2:255.255.255.0:node3::off"
initrd=$initrd_good
wait_node
node_has '"name":"node3"' "\"kind\":\"$kvm_kind\""
grep -qaE "coldplug: $corrupt_name: " "$con" || fail "no log line for the truncated $corrupt_name.ko"
grep -qaE 'modules: cannot load tun: .*(No such file|not found)' "$con" || fail "no log line for the missing tun module file"
grep -qaE 'network: static 10\.0\.2\.15/24 gateway 10\.0\.2\.2 on vmbr0' "$con" || fail "no static address line (ip=)"
log "corrupt module: $(grep -a -m1 -oE "coldplug: $corrupt_name: .*" "$con")"
log "missing module: $(grep -a -m1 -oE 'modules: cannot load tun: .*' "$con")"
boot3_node=$(elapsed "$t0" "$t_node")
power_down

# --- 7. aarch64 only: no EL2, so no KVM ---
# Without virtualization=on the kernel starts at EL1: KVM cannot come up,
# and /node must say so rather than report a kind it does not have.
if [[ $arch == aarch64 ]]; then
  qemu_el2=("${qemu[@]}")
  # shellcheck disable=SC2054 # QEMU options carry commas.
  qemu=(qemu-system-aarch64 -machine virt,accel=tcg -cpu max)
  boot 4 "vireo.hostname=node4"
  qemu=("${qemu_el2[@]}")
  wait_node
  node_has '"name":"node4"' '"kvm":{"available":false,"kind":"none"}'
  boot4_node=$(elapsed "$t0" "$t_node")
  power_down
fi

echo
echo "== timings =="
echo "boot 1 (DHCP): QEMU start -> first GET /node answer: $boot1_node s (host clock); guest clock: $boot1_times"
echo "boot 2 (static, state disk): QEMU start -> first GET /node answer: $boot2_node s (host clock)"
echo "boot 3 (ip=, a corrupt and a missing module): QEMU start -> first GET /node answer: $boot3_node s (host clock)"
if [[ $arch == aarch64 ]]; then
  echo "boot 4 (EL1, no KVM): QEMU start -> first GET /node answer: $boot4_node s (host clock)"
fi
if [[ $arch == x86_64 ]]; then
  echo "POST /selftest/vmm (vireo-vmm boots the probe, nested KVM under TCG): $selftest_s s"
  echo "POST /selftest/vmm?guest=linux (vireo-vmm boots Linux to /init and its reset): $linux_s s"
else
  echo "POST /selftest/vmm (vireo-vmm boots arm64 Linux to /init, nested KVM under TCG): $selftest_s s"
fi
echo "agent killed -> restarted: $restart s (guest clock)"
echo "system_powerdown -> QEMU exit 0: $boot1_off s (boot 1), $t_off_s s (boot 2)"
echo "boot-test: PASS"
