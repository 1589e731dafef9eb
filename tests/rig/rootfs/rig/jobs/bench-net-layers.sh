# bench-net-layers: what each kind of the agent's networks costs a Linux
# guest's TCP traffic, against a plain tap on a bridge made by hand. The
# guests run under vireo-vmm, defined and started through the agent; an
# "out" namespace behind a veth uplink (up0) stands for the LAN and the
# internet and runs iperf3 and sockperf servers. Per layer two paths:
#   outside  the guest to the namespace (through the uplink; masqueraded
#            for nat)
#   guest    the guest to a second guest on the same network, which runs the
#            servers itself (vireo.netserve=)
# Layers: tap (tap on a hand-made bridge with the uplink), bridge (`vireo net
# create --kind bridge --uplink up0`), nat (--kind nat, 10.0.5.0/24, out of
# up0), macvtap (--kind macvtap --mode bridge on up0). rig.rounds= rounds
# (default 1), rig.secs= seconds per measurement (default 5).
#
# Prints per run
#   RIG layer=nat path=outside i=1 tx_mbps=.. rx_mbps=.. rr_per_s=..
# and per layer and path the medians
#   RIG layer-result layer=nat path=outside runs=1 failed=0 tx_mbps=.. rx_mbps=.. rr_per_s=..
. /rig/lib.sh
. /rig/net-lib.sh
rig_console_quiet
n=$(sed -n 's/.*rig\.rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
n=${n:-1}
secs=$(sed -n 's/.*rig\.secs=\([0-9]*\).*/\1/p' /proc/cmdline)
secs=${secs:-5}
initrd=/guest/initramfs-net.cpio.gz
[ -s $initrd ] || fail "no $initrd (build the rig with make rig-bench-initramfs)"
results=/tmp/bench-layers.results
: >$results

net_quiet ""
net_ns out
$IP link add up0 type veth peer name up0p || fail "veth uplink"
$IP link set up0p netns out
$IP -n out addr add 192.168.77.2/24 dev up0p
$IP -n out link set up0p up
$IP link set up0 up
$IP netns exec out iperf3 -s -D -B 192.168.77.2 -I /tmp/out-iperf3.pid --logfile /tmp/out-iperf3.log
$IP netns exec out sockperf server --tcp -i 192.168.77.2 -p 11111 >/tmp/out-sockperf.log 2>&1 &
out_sockperf=$!
net_agent

# layer_vm NAME NIC CMDLINE-WORDS: define and start a 512 MiB, 1-vCPU guest.
layer_vm() {
  vireo vm define "$1" --kernel /guest/vmlinux --initrd $initrd --memory 512M --vcpus 1 \
    --cmdline "$RIG_GUEST_CMDLINE $3" --nic "$2" --on-reboot stop --start >/dev/null ||
    fail "define/start $1 ($2): $(tail -5 /tmp/net-agent.log)"
}

# layer_wait VM PATTERN: the VM's console log once it holds PATTERN; not
# once its VMM ended (the agent's "[vireo: the VMM ended ...]" line) or
# after 120 s.
layer_wait() {
  local i=0
  while [ $i -lt 600 ]; do
    vireo vm log "$1" --bytes 65536 >/tmp/layer-log 2>/dev/null
    grep -q "$2" /tmp/layer-log && return 0
    if grep -q "the VMM ended" /tmp/layer-log; then
      echo "RIG $1: its VMM ended before '$2'; the VM: $(vireo vm show "$1" 2>&1 | tr '\n' ' ')"
      return 1
    fi
    sleep 0.2
    i=$((i + 1))
  done
  echo "RIG $1: no '$2' within 120 s"
  return 1
}

layer_gone() {
  vireo vm destroy "$1" >/dev/null 2>&1
  vireo vm undefine "$1" >/dev/null 2>&1 || fail "undefine $1"
}

# layer_measure LAYER PATH I NIC ADDR PEER [GW]: one client guest's figures.
layer_measure() {
  local figures ok=0
  layer_vm client "$4" "vireo.netbench=$5,$6,$secs${7:+,$7}"
  layer_wait client "VIREO-NETBENCH" && figures=$(rig_netbench_figures /tmp/layer-log) && ok=1
  layer_gone client
  if [ $ok = 0 ]; then
    echo "RIG layer=$1 path=$2 i=$3 failed; the guest's console, then the node's links:"
    sed 's/^/  | /' /tmp/layer-log
    $IP -s -o link | grep -E ' (tb[12]|vr-|up0|br0|mv|vt)' | sed 's/^/  | /'
    echo "$1 $2 fail" >>$results
    return 1
  fi
  echo "RIG layer=$1 path=$2 i=$3 $figures"
  echo "$1 $2 $figures" >>$results
}

# layer_paths LAYER I CLIENT-NIC SERVER-NIC NET-PREFIX [GW]: both paths.
layer_paths() {
  layer_measure "$1" outside "$2" "$3" "$5.15/24" 192.168.77.2 "$6"
  layer_vm server "$4" "vireo.netserve=$5.16/24"
  layer_wait server "VIREO-NETSERVE ready" || fail "$1: the server guest did not come up"
  layer_measure "$1" guest "$2" "$3" "$5.15/24" "$5.16"
  layer_gone server
}

mac1=mac=02:76:69:72:65:11 mac2=mac=02:76:69:72:65:12
i=1
while [ "$i" -le "$n" ]; do
  # tap: two taps on a hand-made bridge with the uplink.
  $IP link add br0 type bridge && $IP link set up0 master br0 && $IP link set br0 up
  for t in tb1 tb2; do tunctl -t $t >/dev/null && $IP link set $t master br0 up; done
  layer_paths tap "$i" "tap=tb1,$mac1" "tap=tb2,$mac2" 192.168.77
  $IP link del tb1; $IP link del tb2; $IP link set up0 nomaster; $IP link del br0

  vireo net create lan --kind bridge --uplink up0 >/dev/null || fail "net create lan"
  layer_paths bridge "$i" "network=lan,$mac1" "network=lan,$mac2" 192.168.77
  vireo net delete lan >/dev/null || fail "net delete lan"

  $IP addr add 192.168.77.1/24 dev up0
  vireo net create nat1 --kind nat --subnet 10.0.5.0/24 --uplink up0 >/dev/null || fail "net create nat1"
  layer_paths nat "$i" "network=nat1,$mac1" "network=nat1,$mac2" 10.0.5 10.0.5.1
  vireo net delete nat1 >/dev/null || fail "net delete nat1"
  $IP addr del 192.168.77.1/24 dev up0

  vireo net create mv --kind macvtap --uplink up0 --mode bridge >/dev/null || fail "net create mv"
  layer_paths macvtap "$i" "network=mv,$mac1" "network=mv,$mac2" 192.168.77
  vireo net delete mv >/dev/null || fail "net delete mv"
  i=$((i + 1))
done
kill "$NET_AGENT" "$out_sockperf" "$(cat /tmp/out-iperf3.pid)" 2>/dev/null

# The median of one figure of one layer and path.
layer_median() { grep "^$1 $2 " $results | rig_median "$3"; }
for layer in tap bridge nat macvtap; do
  for path in outside guest; do
    runs=$(awk -v l=$layer -v p=$path '$1 == l && $2 == p && $3 != "fail"' $results | wc -l)
    failed=$(awk -v l=$layer -v p=$path '$1 == l && $2 == p && $3 == "fail"' $results | wc -l)
    echo "RIG layer-result layer=$layer path=$path runs=$runs failed=$failed" \
      "tx_mbps=$(layer_median $layer $path tx_mbps) rx_mbps=$(layer_median $layer $path rx_mbps)" \
      "rr_per_s=$(layer_median $layer $path rr_per_s)"
  done
done
fails=$(grep -c ' fail$' $results)
echo "RIG bench-net-layers failed=$fails"
rig_console_loud
[ "$fails" = 0 ]
