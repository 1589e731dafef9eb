# bench-net: what a user of a Linux guest sees of the network: TCP
# throughput both ways and TCP request rate between the minimal Linux guest
# (virtio-net on a tap) and the rig host, under vireo-vmm and under QEMU
# microvm with its virtio-net backend in QEMU (vhost=off) and in the rig
# kernel (vhost=on). The guest runs iperf3 and sockperf as clients
# (vireo.netbench=, tests/rig/build-guest-initramfs.sh with
# GUEST_NET_TOOLS=1); their servers run here, on the tap's address.
# rig.runs= rounds (default 3 from `make bench`), the VMMs' order rotating
# every round so that all three see the same load; rig.secs= seconds per
# measurement (default 5).
#
# Prints per launch
#   RIG net vmm=vireo i=1 tx_mbps=812 rx_mbps=640 rr_per_s=9100
# and per VMM the medians
#   RIG net-result vmm=vireo runs=3 failed=0 tx_mbps=.. rx_mbps=.. rr_per_s=..
. /rig/lib.sh
n=${RIG_RUNS:-3}
rig_console_quiet
secs=$(sed -n 's/.*rig\.secs=\([0-9]*\).*/\1/p' /proc/cmdline)
secs=${secs:-5}
initrd=/guest/initramfs-net.cpio.gz
[ -s $initrd ] || { echo "RIG check=fail no $initrd (build the rig with make rig-bench-initramfs)"; exit 1; }
for tool in /usr/bin/qemu-ref-vmm /usr/bin/iperf3 /usr/bin/sockperf; do
  [ -x $tool ] || { echo "RIG check=fail no $tool (rig built without RIG_WITH_QEMU=1)"; exit 1; }
done
[ -e /dev/vhost-net ] || { echo "RIG check=fail no /dev/vhost-net (vhost_net not among the rig's modules)"; exit 1; }

tunctl -t vtap0 >/dev/null
ip addr add 10.0.3.1/24 dev vtap0
ip link set vtap0 up
ip link set lo up
iperf3 -s -D -B 10.0.3.1 --logfile /tmp/iperf3-server.log -I /tmp/iperf3-server.pid
sockperf server --tcp -i 10.0.3.1 -p 11111 >/tmp/sockperf-server.log 2>&1 &
sockperf_pid=$!
results=/tmp/bench-net.results
: >$results

# net_launch NAME I: one guest under VMM NAME, its figures into $results.
net_launch() {
  local name=$1 i=$2 out=/tmp/bench-net.out figures
  VMM=/usr/bin/vireo-vmm QEMU_REF_VHOST=off
  case $name in
    qemu) VMM=/usr/bin/qemu-ref-vmm ;;
    qemu-vhost) VMM=/usr/bin/qemu-ref-vmm QEMU_REF_VHOST=on ;;
  esac
  export QEMU_REF_VHOST
  rig_vmm_run --kernel /guest/vmlinux --initrd $initrd \
    --cmdline "$RIG_GUEST_CMDLINE vireo.netbench=10.0.3.15/24,10.0.3.1,$secs" \
    --cpus 1 --memory 512M --serial stdio --net tap=vtap0,mac=02:76:69:72:65:01 >$out
  if ! figures=$(rig_netbench_figures $out); then
    echo "RIG net vmm=$name i=$i failed (vmm exit=$RIG_VMM_RC); its output:"
    sed 's/^/  | /' $out
    echo "$name fail" >>$results
    return 1
  fi
  echo "RIG net vmm=$name i=$i $figures"
  echo "$name $figures" >>$results
}

fails=0 i=1
while [ "$i" -le "$n" ]; do
  case $((i % 3)) in
    1) order="vireo qemu qemu-vhost" ;;
    2) order="qemu qemu-vhost vireo" ;;
    0) order="qemu-vhost vireo qemu" ;;
  esac
  for name in $order; do
    net_launch "$name" "$i" || fails=$((fails + 1))
  done
  i=$((i + 1))
done
kill $sockperf_pid 2>/dev/null
kill "$(cat /tmp/iperf3-server.pid)" 2>/dev/null
ip link del vtap0 2>/dev/null || tunctl -d vtap0 >/dev/null

# The median of one figure (tx_mbps, ...) of one VMM's runs.
net_median() { grep "^$1 " $results | rig_median "$2"; }
for name in vireo qemu qemu-vhost; do
  runs=$(awk -v vmm=$name '$1 == vmm && $2 != "fail"' $results | wc -l)
  failed=$(awk -v vmm=$name '$1 == vmm && $2 == "fail"' $results | wc -l)
  echo "RIG net-result vmm=$name runs=$runs failed=$failed tx_mbps=$(net_median $name tx_mbps)" \
    "rx_mbps=$(net_median $name rx_mbps) rr_per_s=$(net_median $name rr_per_s)"
done
echo "RIG bench-net failed=$fails of $((n * 3))"
rig_console_loud
[ "$fails" = 0 ]
