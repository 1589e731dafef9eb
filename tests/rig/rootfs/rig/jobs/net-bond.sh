# net-bond: bonds made by vireo-init from `vireo.bond=` (docs/networks.md),
# run as `vireo-init --net-only` in a node namespace whose two NICs are
# veths to a "switch" namespace (a bridge with a peer at 10.6.0.2).
#  - active-backup: the peer pings the node every 20 ms; the active link's
#    switch port goes down mid-run; lost pings counted (at most
#    MAX_LOST), the other link takes over and carries the next pings; with
#    both ports down nothing gets through (the control).
#  - balance-rr: pings answered, the replies spread over both links.
#  - 802.3ad: the bond is made in that mode.
#  - stored settings (node-network.json, what PUT /node/network keeps on
#    VIREO-DATA, through --settings): an active-backup bond with VLAN 10
#    on it under vmbr0; the switch reaches the node only on VLAN 10 (its
#    untagged address gets no answer).
. /rig/lib.sh
. /rig/net-lib.sh
PINGS=300 MAX_LOST=25

# node_and_switch NODE SWITCH: NODE's nic0, nic1 are veths to SWITCH's
# bridge br0 (ports sw0, sw1), which has 10.6.0.2/24.
node_and_switch() {
  net_ns "$1" "$2"
  $IP -n "$2" link add br0 type bridge
  for i in 0 1; do
    $IP link add "nic$i" type veth peer name "sw$i" || fail "veth nic$i"
    $IP link set "nic$i" netns "$1"
    $IP link set "sw$i" netns "$2"
    $IP -n "$2" link set "sw$i" master br0 up
  done
  $IP -n "$2" addr add 10.6.0.2/24 dev br0
  $IP -n "$2" link set br0 up
}
bond_file() { $IP netns exec "$1" cat "/sys/class/net/$2/bonding/$3"; }

# --- active-backup ---
node_and_switch node sw
$IP netns exec node vireo-init --net-only "vireo.bond=bond0:active-backup:nic0,nic1 vireo.ip=10.6.0.1/24" ||
  fail "vireo-init --net-only (active-backup)"
mode=$(bond_file node bond0 mode)
echo "RIG bond0: mode=$mode slaves=$(bond_file node bond0 slaves) active=$(bond_file node bond0 active_slave)"
[ "$mode" = "active-backup 1" ] || fail "bond0 mode is $mode"
[ "$(bond_file node bond0 slaves)" = "nic0 nic1" ] || fail "bond0 links: $(bond_file node bond0 slaves)"
[ "$(basename "$($IP netns exec node readlink /sys/class/net/bond0/master)")" = vmbr0 ] ||
  fail "bond0 is not the port of vmbr0"
net_reachable sw 10.6.0.1 || fail "the node is not reachable over bond0"
got=$(net_ping sw 10.6.0.1 20)
[ "$got" = 20 ] || fail "before the failure: $got/20 pings answered"

active=$(bond_file node bond0 active_slave)
other=nic1; [ "$active" = nic1 ] && other=nic0
$IP netns exec sw busybox ping -q -c $PINGS -i 0.02 -W 2 10.6.0.1 >/tmp/bond-ping.out 2>&1 &
pinger=$!
sleep 1.5
$IP -n sw link set "sw${active#nic}" down
cut=$(rig_now_ms)
for _ in $(seq 50); do [ "$(bond_file node bond0 active_slave)" = "$other" ] && break; sleep 0.05; done
echo "RIG active link $active down; active now $(bond_file node bond0 active_slave) after <= $(( $(rig_now_ms) - cut )) ms"
wait $pinger
received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/bond-ping.out)
echo "RIG active-backup failover: sent=$PINGS received=$received lost=$((PINGS - received)) (pings 20 ms apart)"
[ -n "$received" ] && [ $((PINGS - received)) -le $MAX_LOST ] || fail "lost $((PINGS - ${received:-0})) of $PINGS pings"
tx0=$(net_tx node "$other")
got=$(net_ping sw 10.6.0.1 50)
sent=$(( $(net_tx node "$other") - tx0 ))
echo "RIG after the failover: $got/50 answered, $sent frames out of $other"
[ "$got" = 50 ] && [ "$sent" -ge 50 ] || fail "the backup link does not carry the traffic"
$IP -n sw link set "sw${other#nic}" down
got=$(net_ping sw 10.6.0.1 10)
echo "RIG both links down: $got/10 answered"
[ "$got" = 0 ] || fail "pings answered with both links down"

# --- balance-rr: both links carry the replies ---
node_and_switch node2 sw2
$IP netns exec node2 vireo-init --net-only "vireo.bond=bond0:balance-rr:nic0,nic1 vireo.ip=10.6.0.1/24" ||
  fail "vireo-init --net-only (balance-rr)"
[ "$(bond_file node2 bond0 mode)" = "balance-rr 0" ] || fail "mode $(bond_file node2 bond0 mode)"
a0=$(net_tx node2 nic0); b0=$(net_tx node2 nic1)
got=$(net_ping sw2 10.6.0.1 100)
a=$(( $(net_tx node2 nic0) - a0 )); b=$(( $(net_tx node2 nic1) - b0 ))
echo "RIG balance-rr: $got/100 answered; frames out nic0=$a nic1=$b"
[ "$got" -ge 95 ] && [ "$a" -ge 30 ] && [ "$b" -ge 30 ] || fail "balance-rr does not spread the frames"

# --- 802.3ad ---
net_ns node3
for i in 0 1; do
  $IP link add "nic$i" type veth peer name "x$i" && $IP link set "nic$i" netns node3 || fail "veth nic$i"
done
$IP netns exec node3 vireo-init --net-only "vireo.bond=bond0:802.3ad:nic0,nic1 vireo.ip=10.6.0.1/24" ||
  fail "vireo-init --net-only (802.3ad)"
[ "$(bond_file node3 bond0 mode)" = "802.3ad 4" ] || fail "mode $(bond_file node3 bond0 mode)"
echo "RIG 802.3ad: bond0 links $(bond_file node3 bond0 slaves)"
# --- from the stored node settings: bond0, VLAN 10 on it, vmbr0 over that ---
node_and_switch node4 sw4
$IP -n sw4 link add link br0 name br0.10 type vlan id 10 || fail "switch VLAN 10"
$IP -n sw4 addr add 10.7.0.2/24 dev br0.10
$IP -n sw4 link set br0.10 up
cat >/tmp/node-network.json <<'JSON'
{"bonds": [{"name": "bond0", "mode": "active-backup", "links": ["nic0", "nic1"]}],
 "vlans": [{"link": "bond0", "id": 10}], "uplink": "bond0.10"}
JSON
$IP netns exec node4 vireo-init --net-only --settings /tmp/node-network.json "vireo.ip=10.7.0.1/24" ||
  fail "vireo-init --net-only --settings"
[ "$(bond_file node4 bond0 mode)" = "active-backup 1" ] || fail "stored bond0 mode $(bond_file node4 bond0 mode)"
vid=$($IP -n node4 -d -j link show bond0.10 | sed -n 's/.*"protocol":"802.1Q","id":\([0-9]*\).*/\1/p')
port=$(basename "$($IP netns exec node4 readlink /sys/class/net/bond0.10/master)")
echo "RIG stored settings: bond0 $(bond_file node4 bond0 slaves), bond0.10 VLAN id=$vid, master=$port"
[ "$vid" = 10 ] && [ "$port" = vmbr0 ] || fail "vmbr0 is not over VLAN 10 of bond0"
net_reachable sw4 10.7.0.1 || fail "the node is not reachable over VLAN 10 of its stored bond"
tagged=$(net_ping sw4 10.7.0.1 20)
$IP -n sw4 addr add 10.7.0.3/24 dev br0
untagged=$($IP netns exec sw4 busybox ping -q -c 5 -i 0.02 -W 1 -I br0 10.7.0.1 2>/dev/null |
  sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
echo "RIG stored settings: over VLAN 10 $tagged/20 answered, untagged ${untagged:-0}/5"
[ "$tagged" = 20 ] && [ "${untagged:-0}" = 0 ] || fail "VLAN 10 does not carry (only) the node's traffic"
echo "RIG check=ok net-bond"
