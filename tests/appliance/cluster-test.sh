#!/usr/bin/env bash
# The cluster on appliance nodes (issue 16, appliance tier): three x86_64
# appliance nodes booted together under QEMU TCG, each with QEMU's i6300esb
# watchdog and a small VIREO-DATA disk, their NICs on taps on one bridge in a
# network namespace of this host. The host side of that bridge (10.77.0.1)
# serves NFS (nfs-ganesha: this host's kernel has no nfsd) as the shared pool.
#   1. node 1's disk holds a cluster made by `vireo cluster create` (the
#      host's CLI, --dir on the disk's tree); nodes 2 and 3 join by
#      themselves from `vireo.cluster= vireo.join_token=` (zero-touch):
#      three nodes online in every node's table;
#   2. each node adds the NFS pool; HA VM a (the probe guest, its disk on NFS,
#      writing flushed generations: its console counter) starts on node 1,
#      HA VM b on node 3;
#   3. `vireo vm migrate a node2` while the host polls a's counter: the
#      counter goes on at node 2 from where it was (the gap is reported);
#      then VM p, the rig's minimal Linux guest on a bridge network over
#      each node's vmbr0, moves to node 2 while the host pings it every
#      10 ms: lost pings counted, p answers at node 2;
#   4. node 3's tap leaves the bridge: node 3 stops b (quorum lost), its
#      i6300esb resets it (a second kernel banner on its console), and only
#      then does a survivor start b; the tap is put back and node 3, back
#      from its state disk, rejoins and does not run b;
#   5. node 2's QEMU is killed: a restarts on node 1 or 3, exactly once (at
#      no poll do two nodes run it; the counter starts again on one node).
# A real corosync 3 node (Debian's, on the host side of the bridge) joins
# after the three and must list the right members after each step.
# Prints `RESULT PASS|FAIL appliance-cluster/CHECK` lines and the timings.
#
#   tests/appliance/cluster-test.sh [INITRAMFS]
#
# Environment: KERNEL (default /boot/vmlinuz-<INITRAMFS.kver>), VIREO_CLI
# (the static `vireo`), NODE_MEMORY (MiB, default 640: the agent keeps 384 for the node), BOOT_TIMEOUT (600 s),
# KEEP_LOGS (a directory to copy the consoles to).
# Needs root, iproute2, qemu-system-x86_64, nfs-ganesha + nfs-ganesha-vfs, iputils-ping
# (the last three installed when missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
initrd=$(realpath "${1:-$repo/target/build/appliance/initramfs-x86_64.cpio.zst}")
kver=$(cat "$initrd.kver" 2>/dev/null || uname -r)
kernel=${KERNEL:-/boot/vmlinuz-$kver}
cli=${VIREO_CLI:-$repo/target/x86_64-unknown-linux-musl/release/vireo}
memory=${NODE_MEMORY:-640}
boot_timeout=${BOOT_TIMEOUT:-600}
linux_guest=${LINUX_GUEST_DIR:-$repo/target/build/guest}
for f in "$initrd" "$kernel" "$cli" "$linux_guest/vmlinux" "$linux_guest/initramfs.cpio.gz"; do
  [[ -r $f ]] || { echo "cluster-test: missing $f (make initramfs guest-kernel guest-initramfs)" >&2; exit 2; }
done
# .ci/run installs these; run alone on another machine, the test does.
command -v ganesha.nfsd >/dev/null || apt-get install -y -q nfs-ganesha nfs-ganesha-vfs >/dev/null ||
  { echo "cluster-test: no ganesha.nfsd (apt-get install nfs-ganesha nfs-ganesha-vfs failed)" >&2; exit 2; }
# iputils' ping: 10 ms intervals and the summary line the migration check reads.
command -v ping >/dev/null || apt-get install -y -q iputils-ping >/dev/null ||
  { echo "cluster-test: no ping (apt-get install iputils-ping failed)" >&2; exit 2; }

# shellcheck source=tests/appliance/lib.sh
. "$here/lib.sh" # now, elapsed, the x86_64 QEMU command
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-cluster-test.XXXXXX")
ns=vireo-capp-$$
net=10.77.0
token_admin=$API_TOKEN
t0=$(now)
declare -A qemu_of=()
failed=0

log() { echo "[cluster-test +$(elapsed "$t0" "$(now)")s] $*"; }
pass() { echo "RESULT PASS appliance-cluster/$1"; }
# A failed check ends the test (later checks build on it).
fail() {
  echo "RESULT FAIL appliance-cluster/$1: $2"
  for n in 1 2 3; do
    echo "----- node $n console (last 25 lines) -----" >&2
    tail -n 25 "$work/console-$n.log" 2>/dev/null | tr -d '\r' >&2 || true
  done
  failed=1
  exit 1
}

cleanup() {
  set +e
  for n in "${!qemu_of[@]}"; do kill "${qemu_of[$n]}" 2>/dev/null; done
  # Everything left in the namespace is this test's (QEMUs, ganesha).
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null; done
  [[ -s $work/poller.pid ]] && kill "$(cat "$work/poller.pid")" 2>/dev/null
  sleep 1
  if [[ -n ${KEEP_LOGS:-} ]]; then
    mkdir -p "$KEEP_LOGS" && cp "$work"/console-*.log "$work"/ganesha.log "$KEEP_LOGS/" 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
  ((failed == 0)) || echo "cluster-test: FAIL"
}
trap cleanup EXIT
trap "exit 1" INT TERM

nsx() { ip netns exec "$ns" "$@"; }
addr() { echo "$net.1$1"; }
# api NODE METHOD PATH [BODY]: the body of node NODE's answer (fails on HTTP
# errors, still printing the body: the agent's reason). API_MAX_TIME: seconds
# for a slow call (default 8).
api() {
  local body=()
  [[ $# -ge 4 ]] && body=(-H 'Content-Type: application/json' -d "$4")
  nsx curl -s --fail-with-body --cacert "$ca" --connect-timeout 2 --max-time "${API_MAX_TIME:-8}" -X "$2" \
    -H "Authorization: Bearer $token_admin" "${body[@]}" "https://$(addr "$1"):8006$3"
}
vireo() { nsx env VIREO_TOKEN="$token_admin" VIREO_CA="$ca" "$cli" "$@"; }
# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.3
  done
}
console_has() { grep -qaE "$2" "$work/console-$1.log"; }
# How many times node N's kernel started (its banner on the console).
boots() { grep -ac 'Linux version' "$work/console-$1.log" || true; }

# --- the network: a bridge, three taps, the host side at .1 ---
ip netns add "$ns"
nsx ip link set lo up
nsx ip link add br0 type bridge
nsx ip addr add "$net.1/24" dev br0
nsx ip link set br0 up
for n in 1 2 3; do
  nsx ip tuntap add dev "tap$n" mode tap
  nsx ip link set "tap$n" master br0 up
done

# --- NFS from the host side: nfs-ganesha, NFSv4 only, the export at / ---
mkdir -p "$work/export" "$work/recovery"
cat >"$work/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 4; NFS_Port = 2049; Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; }
NFSV4 { Graceless = true; Lease_Lifetime = 10; RecoveryRoot = "$work/recovery"; }
EXPORT { Export_Id = 1; Path = "$work/export"; Pseudo = "/"; Protocols = 4; Transports = TCP;
         Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
EOF
nsx ganesha.nfsd -f "$work/ganesha.conf" -L "$work/ganesha.log" -p "$work/ganesha.pid" -N NIV_WARN
wait_for 20 "ganesha on 2049" nsx bash -c "ss -ltn | grep -q ':2049 '" || fail nfs "ganesha does not listen: $(tail -5 "$work/ganesha.log")"
# 4 MiB of stress writes and, past them, the probe's owner stamp (docs/probe.md).
for vm in a b; do truncate -s $(((4 << 20) + 4096)) "$work/export/$vm.raw"; done
# The rig's minimal Linux guest, booted from the shared pool (VM p, pinged
# while it migrates).
cp "$linux_guest/vmlinux" "$work/export/guest-vmlinux"
cp "$linux_guest/initramfs.cpio.gz" "$work/export/guest-initrd"
log "NFS (ganesha) serves $work/export at $net.1:/"

# --- node 1's state disk holds the new cluster; 2 and 3 join by themselves ---
mkdir -p "$work/seed1"
created=$(VIREO_CLUSTER_DIR=$work/seed1/cluster "$cli" cluster create capp \
  --name node1 --addr "$(addr 1)" --token-ms 1000) || fail create "vireo cluster create failed"
join_token=$(sed -nE 's/.*--token (vireo1-[0-9a-f]+).*/\1/p' <<<"$created")
[[ -n $join_token ]] || fail create "no token in: $created"
# The agents of a cluster serve HTTPS with certificates from its CA (made by create).
ca=$work/seed1/cluster/tls/ca.crt
for n in 1 2 3; do
  truncate -s 32M "$work/data$n.img"
  seed=()
  [[ $n == 1 ]] && seed=(-d "$work/seed1")
  mkfs.ext4 -q -L VIREO-DATA "${seed[@]}" "$work/data$n.img"
done

# boot_node N: QEMU for node N in the namespace (its tap, its disk, an
# i6300esb). No -no-reboot: a watchdog reset boots the node again.
boot_node() {
  local n=$1 append="console=ttyS0 panic=-1 vireo.hostname=node$n vireo.ip=$(addr "$n")/24,$net.1"
  append+=" vireo.admin_token=$token_admin kvm_amd.vgif=0"
  [[ $n != 1 ]] && append+=" vireo.cluster=$(addr 1) vireo.join_token=$join_token"
  # Not through nsx: $! must be QEMU's pid (ip netns exec execs it), for kill -9.
  ip netns exec "$ns" "${qemu[@]}" -m "$memory" -smp 1 -display none \
    -kernel "$kernel" -initrd "$initrd" -append "$append" \
    -netdev "tap,id=n0,ifname=tap$n,script=no,downscript=no" -device "e1000e,netdev=n0,mac=52:54:00:77:00:1$n" \
    -drive "file=$work/data$n.img,format=raw,if=none,id=data" -device virtio-blk-pci,drive=data \
    -device i6300esb -serial "file:$work/console-$n.log" -monitor none \
    -qmp "unix:$work/qmp-$n.sock,server=on,wait=off" </dev/null &
  qemu_of[$n]=$!
  qmp_events "$work/qmp-$n.sock" "$work/events-$n.log" &
}
# qmp_events SOCKET FILE: QEMU's events (WATCHDOG: the i6300esb fired, the
# moment of the reset) with the host's time, one a line.
qmp_events() {
  python3 - "$1" "$2" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
for _ in range(200):
    try:
        s.connect(sys.argv[1])
        break
    except OSError:
        time.sleep(0.1)
f = s.makefile("rw")
f.readline()
f.write('{"execute": "qmp_capabilities"}\n')
f.flush()
with open(sys.argv[2], "a") as out:
    for line in f:
        m = json.loads(line)
        if "event" in m:
            out.write(f"{time.time():.3f} {m['event']} {json.dumps(m.get('data', {}))}\n")
            out.flush()
PY
}
t_boot=$(now)
for n in 1 2 3; do boot_node "$n"; done
log "3 nodes booting (QEMU TCG, ${memory} MiB, 1 vCPU each)"

# --- 1. zero-touch join ---
nodes_online() {
  local want=$1 node=$2
  api "$node" GET /cluster/nodes | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
online = [n for n in nodes if n.get("state") == "online"]
sys.exit(0 if len(online) == int(sys.argv[1]) else 1)' "$want"
}
wait_for "$boot_timeout" "3 nodes online" nodes_online 3 1 || fail join "node 1 does not see 3 online nodes"
t_joined=$(now)
for n in 2 3; do
  wait_for 60 "3 nodes on node $n" nodes_online 3 "$n" || fail join "node $n does not see 3 online nodes"
  console_has "$n" 'cluster: joining through' || fail join "node $n did not join from its command line"
done
join_s=$(elapsed "$t_boot" "$t_joined")
log "3 nodes online ${join_s}s after the QEMUs started (boot + join); vireo cluster nodes:"
vireo cluster nodes --host "https://$(addr 1)" | sed 's/^/  | /'
for n in 1 2 3; do
  grep -aE 'modules loaded:' "$work/console-$n.log" | grep -q i6300esb || fail watchdog "node $n did not load i6300esb"
done
pass join
for n in 1 2 3; do
  join_line=$(grep -a -m1 -oE 'joined cluster.*' "$work/console-$n.log" || true)
  [[ -n $join_line ]] && log "node $n: $join_line"
done

# --- the real corosync 3 node: the host side (.1) joins like any node ---
# node_id NAME: its node id in node 1's table.
node_id() {
  api 1 GET /cluster/nodes | python3 -c '
import json, sys
print(next(n["id"] for n in json.load(sys.stdin) if n["name"] == sys.argv[1]))' "$1"
}
# real_view: the node ids corosync-quorumtool lists on the real node.
real_view() {
  nsx corosync-quorumtool -s 2>/dev/null |
    awk '/^Membership information/ { m = 1 } m && $1 ~ /^[0-9]+$/ { print $1 }' | sort -n | xargs
}
real_view_is() { [[ $(real_view) == "$1" ]]; }
# expect_real_view WHEN NAME...: the real node sees exactly these nodes.
real_ok=
expect_real_view() {
  [[ -n $real_ok ]] || return 0
  local when=$1 want n
  shift
  want=$(for n in "$@"; do node_id "$n"; done | sort -n | xargs)
  wait_for 60 "real view" real_view_is "$want" ||
    fail real-corosync "$when: corosync-quorumtool on the real node lists '$(real_view)', not '$want'"
  log "real corosync node, $when: members $want"
}
if command -v corosync >/dev/null; then
  real_dir=$work/real
  joined=$(vireo cluster join "$(addr 1)" --token "$join_token" --dir "$real_dir" --name real --addr "$net.1") ||
    fail real-corosync "vireo cluster join for the real node failed"
  # corosync logs and keeps its state in its own directory.
  printf '\nlogging {\n    to_logfile: yes\n    logfile: %s\n    to_stderr: no\n    to_syslog: no\n}\n' \
    "$real_dir/corosync.log" >>"$real_dir/corosync.conf"
  printf '\nsystem {\n    state_dir: %s\n    sched_rr: no\n    move_to_root_cgroup: no\n}\n' \
    "$real_dir" >>"$real_dir/corosync.conf"
  # corosync's pid and lock files live at fixed paths under /run.
  nsx sh -c 'mount -t tmpfs none /run && exec corosync -f -c "$1"' sh "$real_dir/corosync.conf" \
    >"$real_dir/output.log" 2>&1 </dev/null &
  log "real corosync $(corosync -v | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1): $joined"
  real_ok=1
  expect_real_view "after the joins" node1 node2 node3 real
  pass real-corosync-join
else
  echo "RESULT SKIP appliance-cluster/real-corosync: corosync is not installed"
fi

# --- 2. the NFS pool and two HA VMs ---
# Mounting the export takes a TCG node a while: a longer wait than other calls.
for n in 1 2 3; do
  answer=$(API_MAX_TIME=90 api "$n" POST /pools "{\"name\":\"shared\",\"kind\":\"nfs\",\"server\":\"$net.1\",\"export\":\"/\",\"options\":\"timeo=20,retrans=2\"}") ||
    fail nfs-pool "node $n could not add the NFS pool: ${answer:-no answer}; its pools: $(api "$n" GET /pools)"
done
pass nfs-pool
define_vm() {
  local n=$1 vm=$2 seed=$3
  api "$n" POST /vms "{\"name\":\"$vm\",\"memory_mib\":32,\"ha\":true,
    \"boot\":{\"kind\":\"kernel\",\"kernel\":\"/usr/lib/vireo/probe.elf\",\"cmdline\":\"probe.blk=stress:$seed:4\"},
    \"disks\":[{\"volume\":\"shared/$vm.raw\"}]}" >/dev/null || fail define "node $n: defining $vm failed"
  api "$n" POST "/vms/$vm/start" >/dev/null || fail define "node $n: starting $vm failed"
}
# gen VM [NODE]: the VM's last stress generation on its console (any node's
# API: forwarded to the owner).
gen() {
  api "${2:-1}" GET "/vms/$1/log?bytes=4096" | tr -d '\r' | grep -aoE 'blk stress gen=[0-9]+' | tail -n1 | cut -d= -f2
}
gen_over() { local g; g=$(gen "$1" "${3:-1}") && [[ -n $g ]] && ((g > $2)); }
define_vm 1 a 7
define_vm 3 b 9
wait_for 120 "a writes" gen_over a 2 || fail define "a does not write its NFS disk on node 1"
wait_for 120 "b writes" gen_over b 2 3 || fail define "b does not write its NFS disk on node 3"
log "a on node 1 at generation $(gen a), b on node 3 at generation $(gen b 3)"
pass ha-vms-on-nfs

# owner VM: the node name that runs it, as node 1's table says.
owner() {
  api "${2:-1}" GET /cluster/vms | python3 -c '
import json, sys
for v in json.load(sys.stdin):
    if v["name"] == sys.argv[1] and v.get("state") == "running":
        print(v.get("node", ""))' "$1"
}
# running_on VM: the nodes (1..3, but those whose QEMU is gone and the one
# in $cut_off) whose own VM list has VM running.
cut_off=
running_on() {
  local n out=
  for n in 1 2 3; do
    [[ -n ${qemu_of[$n]:-} && $n != "$cut_off" ]] || continue
    api "$n" GET /vms 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if any(v["name"] == sys.argv[1] and v["state"] == "running" for v in json.load(sys.stdin)) else 1)' "$1" &&
      out+="$n"
  done
  echo "$out"
}

# poll VM FILE: every 0.25 s "host-time generation" of VM while it runs.
poll() {
  while :; do
    echo "$(now) $(gen "$1" 2>/dev/null || true)" >>"$2"
    sleep 0.25
  done
}
# The host-time between consecutive counter advances in FILE: the longest
# and the median ("LONGEST MEDIAN").
counter_gaps() {
  python3 - "$1" <<'PY'
import statistics, sys
seen, gaps = None, []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 2:
        continue
    t, g = float(f[0]), int(f[1])
    if seen is None or g > seen[1]:
        if seen is not None:
            gaps.append(t - seen[0])
        seen = (t, g)
print(f"{max(gaps):.2f} {statistics.median(gaps):.2f}" if gaps else "? ?")
PY
}

# --- a Linux guest on the LAN: a bridge network over each node's vmbr0 ---
lan_everywhere() { local n; for n in 1 2 3; do api "$n" GET /networks/lan >/dev/null || return 1; done; }
api 1 POST /networks '{"name":"lan","kind":"bridge","uplink":"vmbr0","cluster":true}' >/dev/null ||
  fail lan "node 1 could not define the network lan: $(api 1 GET /networks)"
wait_for 60 "lan on every node" lan_everywhere || fail lan "the network lan is not on every node"
guest_ip=$net.50
answer=$(api 1 POST /vms "{\"name\":\"p\",\"memory_mib\":96,
  \"boot\":{\"kind\":\"kernel\",\"kernel\":\"shared/guest-vmlinux\",\"initrd\":\"shared/guest-initrd\",
    \"cmdline\":\"console=ttyS0 reboot=k panic=-1 quiet vireo.netidle=$guest_ip/24\"},
  \"nics\":[{\"network\":\"lan\"}]}") || fail lan "node 1: defining the Linux guest p failed: $answer"
answer=$(API_MAX_TIME=60 api 1 POST /vms/p/start) || fail lan "node 1: starting p failed: $answer"
pings() { nsx ping -c 1 -W 1 "$guest_ip"; }
wait_for 120 "p answers pings" pings ||
  fail lan "the Linux guest p does not answer pings; its console: $(api 1 GET '/vms/p/log?bytes=2048' | tr -d '\r' | tail -n 5)"
log "Linux guest p on node 1 answers pings at $guest_ip"
pass linux-guest-on-lan

# --- 3. live migration a: node 1 -> node 2 under the counter's poll ---
poll a "$work/poll-migrate" &
echo $! >"$work/poller.pid"
sleep 3
before=$(gen a)
t_mig=$(now)
mig_out=$(vireo vm migrate a node2 --host "https://$(addr 1)" 2>&1) || fail migrate "vireo vm migrate failed: $mig_out"
mig_s=$(elapsed "$t_mig" "$(now)")
echo "$mig_out" | tail -n 2 | sed 's/^/  | /'
wait_for 60 "a writes on node 2" gen_over a $((before + 2)) 2 || fail migrate "a does not go on writing at node 2"
sleep 2
kill "$(cat "$work/poller.pid")"
: >"$work/poller.pid"
[[ $(owner a) == node2 ]] || fail migrate "the cluster says a runs on '$(owner a)', not node2"
[[ $(running_on a) == 2 ]] || fail migrate "a runs on nodes '$(running_on a)' after the migration"
# A live migration: the counter went on from where it was, never back to 1.
after_first=$(api 2 GET "/vms/a/log?bytes=262144" | tr -d '\r' | grep -aoE 'blk stress gen=[0-9]+' | head -n1 | cut -d= -f2)
((after_first >= before)) || fail migrate "a's counter on node 2 starts at $after_first, below $before (restarted, not migrated)"
read -r mig_gap gen_period < <(counter_gaps "$work/poll-migrate")
mig_downtime=$(sed -nE 's/.*downtime ([0-9.]+ ms).*/\1/p' <<<"$mig_out")
log "migration: ${mig_s}s (CLI), VMM downtime $mig_downtime; counter $before -> first at node 2 $after_first; longest counter gap seen by the host poll (0.25 s + API) ${mig_gap}s (median between generations ${gen_period}s)"
pass migrate-live

# --- 3b. live migration of p: node 1 -> node 2 while the host pings it every 10 ms ---
# Not through nsx: $! must be ping's pid (ip netns exec execs it) for its
# SIGINT summary.
ip netns exec "$ns" ping -i 0.01 -W 1 "$guest_ip" >"$work/ping-migrate" 2>&1 &
ping_pid=$!
sleep 2
t_pmig=$(now)
pmig_out=$(vireo vm migrate p node2 --host "https://$(addr 1)" 2>&1) || fail migrate-pinged "vireo vm migrate p failed: $pmig_out"
pmig_s=$(elapsed "$t_pmig" "$(now)")
sleep 3
kill -INT "$ping_pid"
wait "$ping_pid" || true
[[ $(running_on p) == 2 ]] || fail migrate-pinged "p runs on nodes '$(running_on p)' after the migration"
wait_for 10 "p answers at node 2" pings || fail migrate-pinged "p does not answer pings after moving to node 2"
read -r sent got < <(sed -nE 's/^([0-9]+) packets transmitted, ([0-9]+) received.*/\1 \2/p' "$work/ping-migrate")
[[ -n ${sent:-} ]] || fail migrate-pinged "no ping summary: $(tail -n 3 "$work/ping-migrate")"
lost=$((sent - got))
pmig_downtime=$(sed -nE 's/.*downtime ([0-9.]+ ms).*/\1/p' <<<"$pmig_out")
# The slowest reply: the pings sent during the switch-over, answered late.
rtt_max=$(sed -nE 's|^rtt min/avg/max/mdev = [0-9.]+/[0-9.]+/([0-9.]+)/.*|\1 ms|p' "$work/ping-migrate")
# The replies' sequence numbers that never came back, as runs "first-last".
missing=$(sed -nE 's/.*icmp_seq=([0-9]+) .*/\1/p' "$work/ping-migrate" | python3 -c '
import sys
seen = sorted(int(l) for l in sys.stdin)
gaps = [(a + 1, b - 1) for a, b in zip(seen, seen[1:]) if b - a > 1]
print(" ".join(f"{x}-{y}" if x != y else str(x) for x, y in gaps) or "none")')
log "migration of the pinged Linux guest: ${pmig_s}s (CLI), VMM downtime $pmig_downtime; pings every 10 ms: $sent sent, $lost lost (missing sequence numbers: $missing), slowest reply ${rtt_max:-?}"
# Each ping is a 10 ms slot: what is lost is the switch-over (paused, then
# the MAC announced from node 2), so far fewer than the run's pings.
((got > 0 && lost * 2 < sent)) || fail migrate-pinged "$lost of $sent pings lost"
pass migrate-pinged

# --- 4. node 3 cut off: it stops b, its watchdog resets it, b moves ---
boots3=$(boots 3)
t_cut=$(now)
nsx ip link set tap3 nomaster
cut_off=3
log "node 3 cut off (tap3 out of the bridge)"
wait_for 60 "node 3 stops b" console_has 3 "quorum lost: stopping HA VM 'b'" || fail fence-stop "node 3 did not stop b"
t_stop=$(now)
boots_more() { (($(boots 3) > boots3)); }
b_elsewhere() { local r; r=$(running_on b) && [[ $r == 1 || $r == 2 ]]; }
t_banner= t_b=
deadline=$((SECONDS + 180))
while [[ -z $t_banner || -z $t_b ]]; do
  ((SECONDS < deadline)) || fail watchdog-reset "after 180 s: node 3 booting again ${t_banner:-no}, b elsewhere ${t_b:-no}"
  [[ -z $t_banner ]] && boots_more && t_banner=$(now)
  [[ -z $t_b ]] && b_elsewhere && t_b=$(now)
  sleep 0.3
done
# The reset itself: QEMU's WATCHDOG event (the console shows the new boot
# only after the firmware and the kernel's decompression).
t_fired=$(awk '$2 == "WATCHDOG" { print $1; exit }' "$work/events-3.log" 2>/dev/null)
[[ -n $t_fired ]] || fail watchdog-reset "node 3 boots again, but QEMU reported no WATCHDOG event: $(cat "$work/events-3.log" 2>/dev/null)"
reset_s=$(elapsed "$t_cut" "$t_fired")
banner_s=$(elapsed "$t_cut" "$t_banner")
b_s=$(elapsed "$t_cut" "$t_b")
stop_s=$(elapsed "$t_cut" "$t_stop")
log "node 3: stopped b ${stop_s}s after the cut; i6300esb fired (QEMU: $(grep -m1 WATCHDOG "$work/events-3.log" | cut -d' ' -f3-)) after ${reset_s}s; its console shows the new boot after ${banner_s}s; b running on node $(running_on b) after ${b_s}s"
grep -aE "took over HA VM 'b'" "$work"/console-[12].log | sed 's/^/  | /'
# Exactly one copy: node 3 stopped b and was reset before a survivor ran it.
awk -v r="$t_fired" -v b="$t_b" -v s="$t_stop" 'BEGIN { exit !(s < b && r < b) }' ||
  fail watchdog-reset "b ran on a survivor ${b_s}s after the cut, before node 3 stopped it (${stop_s}s) or was reset (${reset_s}s)"
pass watchdog-reset
wait_for 60 "b writes on the survivor" gen_over b 1 1 || fail fence-takeover "b does not write on its new node"
pass fence-takeover
expect_real_view "node 3 cut off" node1 node2 real
# Back on the network: node 3 boots from its state disk into the cluster
# and does not run b (another node owns it now).
nsx ip link set tap3 master br0
cut_off=
wait_for "$boot_timeout" "node 3 back" nodes_online 3 1 || fail rejoin "node 3 did not come back after its reset"
sleep 3
[[ $(running_on b) =~ ^[12]$ ]] || fail rejoin "b runs on nodes '$(running_on b)' once node 3 is back"
log "node 3 back in the cluster $(elapsed "$t_cut" "$(now)")s after the cut; b on node $(running_on b) only"
pass rejoin-after-reset
expect_real_view "node 3 back" node1 node2 node3 real

# --- 5. node 2's QEMU killed: a restarts on node 1 or 3, exactly once ---
t_kill=$(now)
kill -9 "${qemu_of[2]}"
wait "${qemu_of[2]}" 2>/dev/null || true
unset 'qemu_of[2]'
log "node 2's QEMU killed"
twice=
deadline=$((SECONDS + 120))
until r=$(running_on a) && [[ $r == 1 || $r == 3 ]] && gen_over a 0 "$r"; do
  [[ ${#r} -gt 1 ]] && twice=$r
  ((SECONDS < deadline)) || fail failover "a not running on node 1 or 3 120 s after node 2 died (on '$r')"
  sleep 0.3
done
t_over=$(now)
fail_s=$(elapsed "$t_kill" "$t_over")
new=$r
[[ -z $twice ]] || fail failover "a ran on nodes $twice at once"
for _ in 1 2 3 4 5; do
  r=$(running_on a)
  [[ $r == "$new" ]] || fail failover "a runs on nodes '$r' (took over by node $new)"
  sleep 1
done
log "failover: a runs on node $new (generation $(gen a "$new")) ${fail_s}s after node 2's QEMU was killed; on one node only at every poll"
pass failover-exactly-once
expect_real_view "node 2 dead" node1 node3 real
[[ -n $real_ok ]] && pass real-corosync-membership

# --- the disks' owner stamps: no guest on a surviving node met a second writer ---
stamped=0
for n in 1 3; do
  for vm in a b; do
    text=$(API_MAX_TIME=20 api "$n" GET "/vms/$vm/log?bytes=1048576" 2>/dev/null) || continue
    grep -aq "PROBE blk owner=" <<<"$text" && stamped=$((stamped + 1))
    ! grep -aq "second writer" <<<"$text" ||
      fail owner-stamps "node $n: $vm's guest saw a second writer: $(grep -a 'second writer' <<<"$text" | head -n1)"
  done
done
((stamped >= 1)) || fail owner-stamps "no running guest stamped its disk"
log "owner stamps: $stamped running guests stamped their disks, none saw a second writer"
pass owner-stamps

echo
echo "== timings (QEMU TCG nodes, $memory MiB, 1 vCPU; nested KVM for the probe) =="
echo "3 QEMUs started -> 3 nodes online in node 1's table (boot + zero-touch join): $join_s s"
echo "live migration a node1 -> node2: CLI $mig_s s, VMM downtime $mig_downtime, longest counter gap (host poll) $mig_gap s (median between generations $gen_period s)"
echo "live migration of the pinged Linux guest p node1 -> node2: CLI $pmig_s s, VMM downtime $pmig_downtime, $lost of $sent pings (10 ms apart) lost, slowest reply ${rtt_max:-?}"
echo "node 3 cut off -> b stopped there: $stop_s s; -> its i6300esb fired: $reset_s s (new boot on its console: $banner_s s); -> b running on a survivor: $b_s s"
echo "node 2 killed -> a running on node $new: $fail_s s"
echo "cluster-test: PASS"
