# net-vlan: two networks of the agent on VLANs 10 and 20 of one uplink
# (docs/networks.md). The uplink tr0 is a veth trunk to a "lan" namespace
# whose end carries VLAN sub-interfaces 10 and 20, each moved into a host
# namespace of its own (far10, far20). Every guest and far host has an
# address in the same subnet 10.9.0.0/24, so only the 802.1Q tag keeps them
# apart. Counted: frames sent within a VLAN all arrive; unicast frames sent
# straight to the MAC of a host on the other VLAN (a permanent neighbour
# entry, so no ARP is needed) arrive nowhere: the receiver's count of
# echo requests received does not move.
. /rig/lib.sh
. /rig/net-lib.sh
N=100

net_quiet ""
net_ns lan far10 far20
$IP link add tr0 type veth peer name trp || fail "veth trunk"
$IP link set trp netns lan
$IP link set tr0 up
$IP -n lan link set trp up
for vid in 10 20; do
  $IP -n lan link add link trp name "trp.$vid" type vlan id "$vid" || fail "VLAN $vid on the far side"
  $IP -n lan link set "trp.$vid" netns "far$vid"
done
$IP -n far10 addr add 10.9.0.21/24 dev trp.10 && $IP -n far10 link set trp.10 up
$IP -n far20 addr add 10.9.0.22/24 dev trp.20 && $IP -n far20 link set trp.20 up

net_agent
vireo net create v10 --kind bridge --uplink tr0 --vlan 10 || fail "net create v10: $(cat /tmp/net-agent.log)"
vireo net create v20 --kind bridge --uplink tr0 --vlan 20 || fail "net create v20"
grep -q "VID: 10" /proc/net/vlan/tr0.10 || fail "tr0.10 is not VLAN 10: $(cat /proc/net/vlan/tr0.10)"
grep -q "VID: 20" /proc/net/vlan/tr0.20 || fail "tr0.20 is not VLAN 20"
[ "$(basename "$(readlink /sys/class/net/tr0.10/master)")" = vr-v10 ] || fail "tr0.10 is not a port of vr-v10"
# A second network on VLAN 10 of tr0: refused, and nothing changes.
links_before=$($IP -o link | wc -l)
if err=$(vireo net create dup --kind bridge --uplink tr0 --vlan 10 2>&1); then fail "duplicate VLAN 10 accepted"; fi
echo "RIG duplicate VLAN refused: $err"
echo "$err" | grep -q "VLAN 10 on tr0 is used by network 'v10'" || fail "unclear error: $err"
[ "$($IP -o link | wc -l)" = "$links_before" ] || fail "the refused network changed the links"

net_guest g10 g10e 10.9.0.11/24 vr-v10
net_guest g20 g20e 10.9.0.12/24 vr-v20

# Same VLAN: a guest on each network reaches the far host of its VLAN
# across the trunk, and the guests' own addresses resolve there.
for vid in 10 20; do
  got=$(net_ping "g$vid" "10.9.0.2${vid%0}" $N)
  echo "RIG vlan=$vid same-vlan pings: $got/$N answered"
  [ "$got" = "$N" ] || fail "VLAN $vid: $got/$N pings answered within the VLAN"
done

# Other VLAN: unicast frames to the MAC of a host on the other VLAN.
# leak FROM_NS FROM_IF TO_NS TO_IF TO_IP: sends N, prints what arrived.
leak() {
  $IP -n "$1" neigh replace "$5" lladdr "$(net_mac "$3" "$4")" dev "$2" nud permanent
  local tx0 rx0 tx1 rx1
  tx0=$(net_tx "$1" "$2"); rx0=$(net_echos "$3")
  $IP netns exec "$1" busybox ping -q -c $N -i 0.01 -W 1 "$5" >/dev/null 2>&1
  sleep 0.5
  tx1=$(net_tx "$1" "$2"); rx1=$(net_echos "$3")
  echo "RIG $1 -> $3 ($5): sent=$((tx1 - tx0)) arrived=$((rx1 - rx0))"
  [ $((tx1 - tx0)) -ge $N ] || fail "$1 did not send its $N frames"
  [ $((rx1 - rx0)) = 0 ] || fail "$((rx1 - rx0)) frames crossed from $1 to $3"
}
# The control: the same method within a VLAN delivers every frame.
$IP -n g10 neigh replace 10.9.0.21 lladdr "$(net_mac far10 trp.10)" dev g10e nud permanent
rx0=$(net_echos far10)
$IP netns exec g10 busybox ping -q -c $N -i 0.01 -W 1 10.9.0.21 >/dev/null 2>&1
got=$(( $(net_echos far10) - rx0 ))
echo "RIG g10 -> far10 (same VLAN, unicast to its MAC): arrived=$got of $N"
[ "$got" -ge $N ] || fail "only $got/$N frames arrived within VLAN 10"
leak g10 g10e far20 trp.20 10.9.0.22
leak g20 g20e far10 trp.10 10.9.0.21
leak g10 g10e g20 g20e 10.9.0.12
leak g20 g20e g10 g10e 10.9.0.11
leak far10 trp.10 g20 g20e 10.9.0.12

# Deleting the networks takes their VLAN links away.
$IP link del g10e-p; $IP link del g20e-p
vireo net delete v10 || fail "net delete v10"
vireo net delete v20 || fail "net delete v20"
[ ! -e /sys/class/net/tr0.10 ] && [ ! -e /sys/class/net/tr0.20 ] || fail "VLAN links left behind"
kill "$NET_AGENT"
echo "RIG check=ok net-vlan"
