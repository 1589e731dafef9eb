# linux-migrate: a minimal arm64 guest on 2 vCPUs counting seconds
# (vireo.ticks=12) moves from one vireo-vmm to another (--incoming on a
# Unix socket) after tick 3: the source exits 0 once the destination runs
# the guest, the count goes on there without a gap or a repeat, and the
# destination exits 0 when the guest powers off after tick 12.
. /rig/lib.sh; . /rig/lib-aarch64.sh
ctl=/usr/bin/vireo-vmm-ctl
rm -f /tmp/src.sock /tmp/dst.sock /tmp/mig.sock
# Its own API socket: the source's path is taken on this same host.
echo "RIG vmm: $VMM --incoming unix:/tmp/mig.sock --api-socket /tmp/dst.sock"
"$VMM" --incoming unix:/tmp/mig.sock --serial stdio --api-socket /tmp/dst.sock </dev/null >/tmp/dst.out 2>&1 &
dst=$!
echo "RIG vmm: $VMM ... --cpus 2 --memory 256M --api-socket /tmp/src.sock (vireo.ticks=12)"
"$VMM" --kernel "$MIN_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$RIG_GUEST_CMDLINE vireo.ticks=12" \
  --cpus 2 --memory 256M --serial stdio --api-socket /tmp/src.sock </dev/null >/tmp/src.out 2>&1 &
src=$!
if ! rig_wait_for /tmp/src.out 'VIREO-TICK 3 ' "$RIG_TIMEOUT"; then
  cat /tmp/src.out /tmp/dst.out; kill -9 "$src" "$dst"; echo "RIG check=fail the guest never reached tick 3"; exit 1
fi
"$ctl" --api-socket /tmp/src.sock migrate unix:/tmp/mig.sock </dev/null 2>&1 | tr '\r' '\n' | tail -n 3
rig_reap "$src"
src_rc=$RIG_REAP_RC
echo "RIG source exit=$src_rc"
cat /tmp/src.out
# The destination runs on until the guest powers off after tick 12.
rig_reap "$dst"
dst_rc=$RIG_REAP_RC
echo "RIG destination exit=$dst_rc"
cat /tmp/dst.out
[ "$src_rc" = 0 ] || { echo "RIG check=fail source exit=$src_rc"; exit 1; }
[ "$dst_rc" = 0 ] || { echo "RIG check=fail destination exit=$dst_rc"; exit 1; }
grep -q VIREO-GUEST-INIT /tmp/dst.out && { echo "RIG check=fail the guest booted again on the destination"; exit 1; }
n=$(rig_ticks_continuous /tmp/src.out /tmp/dst.out) || { echo "RIG check=fail ticks: $n"; exit 1; }
[ "$n" = 12 ] || { echo "RIG check=fail $n ticks, want 12"; exit 1; }
echo "RIG check=ok migrated after tick $(rig_last_tick /tmp/src.out), ticks 1..12 continuous, both vmm exit 0"
