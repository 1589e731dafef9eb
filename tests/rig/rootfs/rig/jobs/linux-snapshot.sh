# linux-snapshot (both rigs): the minimal guest on 2 vCPUs counting seconds
# (vireo.ticks=12: "VIREO-TICK i up=S") is paused after tick 3, snapshotted
# (vCPU registers, interrupt controllers and timers — GICv3 on aarch64 —,
# devices, memory), its VMM killed, and restored by a new vireo-vmm: the
# count goes on from where it stopped (no tick lost or repeated, uptime never
# back, no second boot), the guest ends after tick 12 (power-off on aarch64,
# reset on x86_64) and the restored VMM exits 0.
. /rig/lib.sh
[ -f /rig/lib-aarch64.sh ] && . /rig/lib-aarch64.sh
ctl=/usr/bin/vireo-vmm-ctl
rm -rf /tmp/snap /tmp/a.sock
echo "RIG vmm: $VMM ... --cpus 2 --memory 256M --api-socket /tmp/a.sock (vireo.ticks=12)"
"$VMM" --kernel "$MIN_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$RIG_GUEST_CMDLINE vireo.ticks=12" \
  --cpus 2 --memory 256M --serial stdio --api-socket /tmp/a.sock </dev/null >/tmp/a.out 2>&1 &
pid=$!
if ! rig_wait_for /tmp/a.out 'VIREO-TICK 3 ' "$RIG_TIMEOUT"; then
  cat /tmp/a.out; kill -9 "$pid"; echo "RIG check=fail the guest never reached tick 3"; exit 1
fi
t0=$(rig_now_ms)
"$ctl" --api-socket /tmp/a.sock pause || { kill -9 "$pid"; echo "RIG check=fail pause"; exit 1; }
"$ctl" --api-socket /tmp/a.sock snapshot /tmp/snap || { kill -9 "$pid"; cat /tmp/a.out; echo "RIG check=fail snapshot"; exit 1; }
t1=$(rig_now_ms)
kill -9 "$pid"; wait "$pid" 2>/dev/null
cat /tmp/a.out
before=$(rig_last_tick /tmp/a.out)
echo "RIG snapshot after tick $before in $((t1 - t0)) ms: $(du -sk /tmp/snap | cut -f1) KiB on disk ($(ls /tmp/snap | tr '\n' ' '))"
echo "RIG vmm: $VMM --restore /tmp/snap"
timeout "$RIG_TIMEOUT" "$VMM" --restore /tmp/snap --serial stdio </dev/null >/tmp/b.out 2>&1
rc=$?
cat /tmp/b.out
if [ "$rc" != 0 ]; then echo "RIG check=fail restored vmm exit=$rc"; exit 1; fi
if grep -q VIREO-GUEST-INIT /tmp/b.out; then echo "RIG check=fail the restored guest booted again"; exit 1; fi
n=$(rig_ticks_continuous /tmp/a.out /tmp/b.out) || { echo "RIG check=fail ticks: $n"; exit 1; }
[ "$n" = 12 ] || { echo "RIG check=fail $n ticks, want 12"; exit 1; }
echo "RIG check=ok snapshot after tick $before, restored, ticks 1..12 continuous, vmm exit 0"
