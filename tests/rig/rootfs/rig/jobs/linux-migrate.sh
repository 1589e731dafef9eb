# linux-migrate: the minimal Linux guest on 2 vCPUs with an ext4 filesystem
# on a qcow2 disk and a NIC on a bridge (vireo.ticks + vireo.tickdisk: a line
# written and synced every second) moves from one vireo-vmm to another
# (--incoming on a Unix socket; the image is shared, its lock handed over)
# while the rig host pings it every 10 ms. Passes when no ping is lost on
# the way, whatever the downtime (the requests that reach the source's tap
# while the guest is paused, and until the bridge learns the new port, are
# forwarded to the destination in the migration stream and answered late,
# not dropped: migration/forward.rs), the ticks go on without a gap or a
# repeat, the guest did not boot again, both VMMs exit 0 and e2fsck finds
# the filesystem clean at the end. Replies that reached the rig host but
# that busybox ping's own socket dropped (it asks for a 7 KiB receive
# buffer, ~11 replies: a stalled rig, or the late replies of a long pause
# arriving together, overflow it; /proc/net/raw counts them) are counted
# and printed apart: they were not lost by the network or the VMMs.
. /rig/lib.sh
ctl=/usr/bin/vireo-vmm-ctl
disk=/tmp/mig.qcow2
ticks=20
rm -f /tmp/src.sock /tmp/dst.sock /tmp/mig.sock "$disk"
/usr/bin/vireo-img create "$disk" 64M >/dev/null || { echo "RIG check=fail vireo-img create"; exit 1; }
# busybox: brctl for the bridge (its ip cannot make one).
brctl addbr br0 && ip addr add 10.0.2.1/24 dev br0 && ip link set br0 up
for tap in vtap0 vtap1; do
  tunctl -t "$tap" >/dev/null && brctl addif br0 "$tap" && ip link set "$tap" up
done
cleanup() {
  ip link set br0 down; brctl delbr br0
  tunctl -d vtap0 >/dev/null; tunctl -d vtap1 >/dev/null; rm -f "$disk"
}
echo "RIG vmm: $VMM --incoming unix:/tmp/mig.sock --net tap=vtap1 --api-socket /tmp/dst.sock"
"$VMM" --incoming unix:/tmp/mig.sock --serial stdio --api-socket /tmp/dst.sock --net tap=vtap1 \
  </dev/null >/tmp/dst.out 2>&1 &
dst=$!
echo "RIG vmm: $VMM ... --cpus 2 --memory 256M --disk $disk --net tap=vtap0 (vireo.ticks=$ticks)"
"$VMM" --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz --cpus 2 --memory 256M \
  --cmdline "$RIG_GUEST_CMDLINE vireo.ticks=$ticks vireo.tickdisk=10.0.2.15/24" \
  --disk "path=$disk,format=qcow2" --net tap=vtap0,mac=02:76:69:72:65:02 \
  --serial stdio --api-socket /tmp/src.sock </dev/null >/tmp/src.out 2>&1 &
src=$!
if ! rig_wait_for /tmp/src.out 'VIREO-TICK 3 ' "$RIG_TIMEOUT"; then
  cat /tmp/src.out /tmp/dst.out; kill -9 "$src" "$dst"; cleanup
  echo "RIG check=fail the guest never reached tick 3"; exit 1
fi
# 1000 echo requests, one each 10 ms; the migration starts half a second in.
# Each reply's line is kept (not -q): the sequence numbers that never came
# back say when in the migration a ping was lost.
ping_start=$(rig_now_ms)
ping -c 1000 -i 0.01 10.0.2.15 >/tmp/ping.out 2>&1 &
pinger=$!
# What ping's own socket dropped (its receive queue full: busybox ping asks
# for a 7 KiB buffer), sampled while it runs: /proc/net/raw's last column.
(while kill -0 "$pinger" 2>/dev/null; do
  sed -n '2,$s/.* \([0-9]*\) *$/\1/p' /proc/net/raw >/tmp/raw-drops.new && mv /tmp/raw-drops.new /tmp/raw-drops
  sleep 0.5
done) &
sleep 0.5
mig_start=$(rig_now_ms)
"$ctl" --api-socket /tmp/src.sock migrate unix:/tmp/mig.sock </dev/null 2>&1 |
  tr '\r' '\n' | tail -n 2 | tee /tmp/migrated.out
mig_end=$(rig_now_ms)
wait "$pinger"
rig_reap "$src"
src_rc=$RIG_REAP_RC
rig_reap "$dst"
dst_rc=$RIG_REAP_RC
cat /tmp/src.out /tmp/dst.out
grep -v ' bytes from ' /tmp/ping.out
cleanup
sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
got=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
missing=$(sed -n 's/.* seq=\([0-9]*\) .*/\1/p' /tmp/ping.out | sort -n -u |
  awk -v n="${sent:-0}" '{ seen[$1] = 1 } END { for (i = 0; i < n; i++) if (!(i in seen)) printf "%d ", i }')
lost=$((${sent:-0} - ${got:-0}))
dropped=0
for d in $(cat /tmp/raw-drops 2>/dev/null); do dropped=$((dropped + d)); done
on_the_way=$((lost - dropped))
echo "RIG pings sent=${sent:-?} received=${got:-?} lost=$lost (dropped by ping's own socket: $dropped," \
  "lost on the way: $on_the_way) missing seq: ${missing:-none}" \
  "(migration from $((mig_start - ping_start)) to $((mig_end - ping_start)) ms after the first ping)"
[ "$src_rc" = 0 ] || { echo "RIG check=fail source exit=$src_rc"; exit 1; }
[ "$dst_rc" = 0 ] || { echo "RIG check=fail destination exit=$dst_rc"; exit 1; }
grep -q VIREO-GUEST-INIT /tmp/dst.out && { echo "RIG check=fail the guest booted again on the destination"; exit 1; }
n=$(rig_ticks_continuous /tmp/src.out /tmp/dst.out) || { echo "RIG check=fail ticks: $n"; exit 1; }
[ "$n" = "$ticks" ] || { echo "RIG check=fail $n ticks, want $ticks"; exit 1; }
grep -q "VIREO-TICKDISK lines=$ticks fsck=clean" /tmp/dst.out ||
  { echo "RIG check=fail filesystem: $(grep VIREO-TICKDISK /tmp/dst.out || echo no VIREO-TICKDISK line)"; exit 1; }
down=$(sed -n 's/.* downtime \([0-9]*\)[.0-9]* ms.*/\1/p' /tmp/migrated.out)
[ -n "$sent" ] && [ -n "$down" ] && [ "$on_the_way" -le 0 ] ||
  { echo "RIG check=fail $on_the_way of ${sent:-?} pings lost on the way, downtime ${down:-?} ms"; exit 1; }
echo "RIG check=ok migrated after tick $(rig_last_tick /tmp/src.out), downtime $down ms; pings every 10 ms: $sent sent, $lost lost ($dropped dropped by ping's own socket, $on_the_way on the way); ticks 1..$ticks continuous, fsck clean, both vmm exit 0"
