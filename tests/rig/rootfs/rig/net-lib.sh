# shellcheck shell=dash
# Helpers for the network jobs (net-vlan, net-bond): network namespaces as
# stand-in guests and switches, and frame counts read from the kernel's
# per-interface counters. Needs iproute2's ip (busybox's has no netns).
IP=/usr/sbin/ip
# A failed job stops its agent too: the jobs after it in the same rig boot
# start their own on the same port.
fail() {
  echo "RIG check=fail $*"
  [ -n "${NET_AGENT:-}" ] && kill "$NET_AGENT" 2>/dev/null
  exit 1
}
# ip netns keeps its namespaces under /run/netns.
mkdir -p /run/netns

# IPv6 off in the namespace given (or the root one): no router or neighbour
# solicitations, MLD reports, so an interface's counters move only with the
# frames a check sends.
net_quiet() {
  local ns=$1
  set -- sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6'
  if [ -n "$ns" ]; then $IP netns exec "$ns" "$@"; else "$@"; fi
}

# net_ns NAME...: new namespaces, lo up, IPv6 off.
net_ns() {
  local ns
  for ns in "$@"; do
    $IP netns add "$ns" || fail "ip netns add $ns"
    net_quiet "$ns"
    $IP -n "$ns" link set lo up
  done
}

# net_guest NS IFACE ADDR BRIDGE: a stand-in guest: namespace NS with a
# veth IFACE (ADDR) whose peer IFACE-p is a port of BRIDGE on the node.
net_guest() {
  net_ns "$1"
  $IP link add "$2" type veth peer name "$2-p" || fail "veth $2"
  $IP link set "$2" netns "$1"
  $IP -n "$1" addr add "$3" dev "$2"
  $IP -n "$1" link set "$2" up
  $IP link set "$2-p" master "$4" up || fail "$2-p into $4"
}

# net_rx NS IFACE / net_tx NS IFACE: packets received / sent so far.
net_rx() { $IP netns exec "$1" cat "/sys/class/net/$2/statistics/rx_packets"; }
net_tx() { $IP netns exec "$1" cat "/sys/class/net/$2/statistics/tx_packets"; }

# net_echos NS: ICMP echo requests the namespace's IP layer has received
# (Icmp InEchos of /proc/net/snmp): only the frames a check sends, unlike
# an interface's counter, which also moves with ARP probes of earlier
# traffic.
net_echos() {
  $IP netns exec "$1" awk '/^Icmp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i } else print $c }' /proc/net/snmp
}

# net_mac NS IFACE
net_mac() { $IP netns exec "$1" cat "/sys/class/net/$2/address"; }

# net_ping NS ADDR COUNT: echo replies received (busybox ping, 20 ms apart).
net_ping() {
  $IP netns exec "$1" busybox ping -q -c "$3" -i 0.02 -W 2 "$2" 2>/dev/null |
    sed -n 's/.* \([0-9]*\) packets received.*/\1/p'
}

# net_reachable NS ADDR: waits (five tries, 2 s each) for one answer from ADDR, so
# that a count that follows measures the path, not its first moments (a
# bond choosing its active link, a bridge port coming up, ARP).
net_reachable() {
  local i=0
  while [ "$(net_ping "$1" "$2" 1)" != 1 ]; do
    i=$((i + 1))
    [ $i -lt 5 ] || return 1
  done
}

# net_agent: vireo-agent on the rig's loopback; VIREO_TOKEN for the CLI.
net_agent() {
  $IP link set lo up
  export VIREO_TOKEN=rig-net-$$
  echo "$VIREO_TOKEN" >/tmp/net-token
  mkdir -p /run/vireo
  vireo-agent --listen 127.0.0.1:8006 --state-dir /tmp/net-state --run-dir /run/vireo/net \
    --vmm /usr/bin/vireo-vmm --admin-token-file /tmp/net-token >/tmp/net-agent.log 2>&1 &
  NET_AGENT=$!
  for _ in $(seq 50); do
    wget -q --header "Authorization: Bearer $VIREO_TOKEN" -O /dev/null http://127.0.0.1:8006/health && return 0
    sleep 0.2
  done
  fail "the agent did not answer: $(cat /tmp/net-agent.log)"
}
