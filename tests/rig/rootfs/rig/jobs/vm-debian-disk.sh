# vm-debian-disk: the agent boots a Debian system disk (debootstrap minbase,
# Debian's kernel, systemd; tests/rig/build-debian-disk.sh) from the VM's own
# disk (GPT, ext4, /vmlinuz and /initrd.img read by the agent) to a login
# prompt; then `vireo vm shutdown` stops it through Ctrl-Alt-Del, and its
# console shows systemd's orderly shutdown. Needs /usr/bin/vireo-agent,
# /usr/bin/vireo and /guest/debian.qcow2 (make rig-vms puts them in).
. /rig/lib.sh
fail() { echo "RIG check=fail $*"; exit 1; }
# What a failed boot leaves to read: the VMM's command line and stderr
# (RUN/vms/UUID/vmm.log) and the console's last lines.
show_vm() {
  local d pid
  echo "RIG vm-debian-disk: the agent's log:"; tail -n 20 /tmp/agent.log | sed 's/^/  | /'
  for d in /run/vireo/vms/*/; do
    [ -d "$d" ] || continue
    echo "RIG vm-debian-disk: $d holds: $(ls "$d" | tr '\n' ' ')"
    [ ! -r "$d/vmm.log" ] || { echo "RIG vm-debian-disk: vmm.log:"; tail -n 20 "$d/vmm.log" | sed 's/^/  | /'; }
    pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$d/vmm.pid.json" 2>/dev/null)
    [ -z "$pid" ] || [ ! -r "/proc/$pid/cmdline" ] || echo "RIG vm-debian-disk: vmm args: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
  done
  echo "RIG vm-debian-disk: the console's last lines:"; vireo vm log debian 2>&1 | tr -d '\r' | tail -n 40 | sed 's/^/  | /'
}
for f in /usr/bin/vireo-agent /usr/bin/vireo /guest/debian.qcow2; do
  [ -e "$f" ] || fail "missing $f"
done
ip link set lo up
mkdir -p /var/lib/vireo/pools/local /run/vireo
mv /guest/debian.qcow2 /var/lib/vireo/pools/local/debian.qcow2
# An admin token for this run (docs/security.md); vireo reads VIREO_TOKEN.
export VIREO_TOKEN=rig-debian-$$-$(date +%s%N)
echo "$VIREO_TOKEN" >/tmp/admin-token
VIREO_STATE_DIR=/var/lib/vireo vireo-agent --listen 127.0.0.1:8006 --vmm /usr/bin/vireo-vmm \
  --run-dir /run/vireo --admin-token-file /tmp/admin-token >/tmp/agent.log 2>&1 &
export VIREO_HOST=127.0.0.1:8006
i=0
until vireo node info >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the agent did not answer: $(cat /tmp/agent.log)"
  sleep 0.1
done
start=$(rig_now_ms)
vireo vm define debian --disk local/debian.qcow2 --disk-boot 0 --memory 512M --vcpus 2 --start \
  >/tmp/start.txt 2>&1 || { cat /tmp/start.txt; show_vm; fail "define/start failed: $(tail -n 3 /tmp/start.txt)"; }
cat /tmp/start.txt
vireo vm show debian
# Wait for the login prompt (systemd's serial getty on ttyS0), showing the
# guest's newest console line every 30 s: the boot is slow under nested KVM
# in TCG, and a silent console would look like a hung rig to run-rig.sh.
# Lines that mean the boot cannot succeed end the wait at once. (Debian's
# kernel ignores the command line's virtio_mmio.device= words, "unknown
# parameter", and finds the disks in the ACPI tables instead.)
doomed="Gave up waiting for root|Kernel panic|drop to a shell|\(initramfs\)"
i=0
until vireo vm log debian --bytes 4096 | grep -q 'login:'; do
  i=$((i + 1)); [ $i -lt "$RIG_TIMEOUT" ] || { show_vm; fail "no login prompt within ${RIG_TIMEOUT}s"; }
  line=$(vireo vm log debian 2>/dev/null | tr -d '\r' | grep -Em1 "$doomed") &&
    { show_vm; fail "the guest cannot boot: '$line'"; }
  [ $((i % 30)) -ne 0 ] || echo "RIG guest console after ${i}s: $(vireo vm log debian --bytes 4096 | tr -d '\r' | grep -v '^$' | tail -n 1)"
  sleep 1
done
login_ms=$(( $(rig_now_ms) - start ))
echo "RIG debian login prompt after ${login_ms} ms"
vireo vm shutdown debian --timeout 180 | tee /tmp/shutdown.txt
vireo vm log debian | sed 's/^/  | /' | tail -60
grep -q "VM debian shut down" /tmp/shutdown.txt || fail "the shutdown was not graceful: $(cat /tmp/shutdown.txt)"
vireo vm show debian | grep -q '^state: *stopped' || fail "the VM is not stopped"
log=$(vireo vm log debian)
for want in 'root=PARTUUID=12345678-9abc-def0-1122-334455667788' 'reboot: Restarting system'; do
  echo "$log" | grep -q "$want" || fail "the console lacks '$want'"
done
echo "$log" | grep -Eq 'Reached target.*(Reboot|System Reboot)|System is rebooting|Stopped target' ||
  fail "no orderly systemd shutdown on the console"
echo "RIG check=ok ms_to_login=$login_ms graceful shutdown through Ctrl-Alt-Del"
