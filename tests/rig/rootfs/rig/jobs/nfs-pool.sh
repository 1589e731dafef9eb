# nfs-pool: a storage pool on an NFS export served by the kernel's nfsd from
# another network namespace (docs/storage.md). The agent mounts the export
# (vireo pool add --nfs), a volume is created on it, and the probe guest
# writes and reads back 8 MiB on it under vireo-vmm. Then, while the probe
# rewrites its disk in flushed generations, the link to the server goes
# down: the guest must get an I/O error (the soft mount's timeouts), and the
# agent must keep answering (its pool list within 10 s, /health at once).
# Needs the rig built by make test-rig (RIG_TEST_EXTRA) or `make rig-nfs-test` (nfsd, nfsv4 and veth
# modules; rpc.nfsd, rpc.mountd, exportfs, ip, vireo-agent and vireo).
. /rig/lib.sh
IP=/usr/sbin/ip
fail() { echo "RIG check=fail $*"; exit 1; }

mkdir -p /run /var/lib/nfs /export
# The agent listens on the rig's loopback, which /init leaves down.
$IP link set lo up
# --- the server: its own network namespace, nfsd v4 only (no rpcbind) ---
$IP netns add srv || fail "ip netns add"
$IP link add vc type veth peer name vs || fail "veth"
$IP link set vs netns srv
$IP addr add 10.88.0.1/24 dev vc
$IP link set vc up
$IP netns exec srv sh -c '
  ip=/usr/sbin/ip
  $ip link set lo up && $ip addr add 10.88.0.2/24 dev vs && $ip link set vs up
  mount -t tmpfs -o size=256m export /export
  mount -t tmpfs nfsstate /var/lib/nfs
  mkdir -p /var/lib/nfs/v4recovery /proc/fs/nfsd
  mount -t nfsd nfsd /proc/fs/nfsd
  : >/var/lib/nfs/etab; : >/var/lib/nfs/rmtab
  # Short lease and grace: the first OPEN waits for the grace period.
  echo 10 >/proc/fs/nfsd/nfsv4leasetime; echo 10 >/proc/fs/nfsd/nfsv4gracetime
  exportfs -o rw,no_root_squash,insecure,no_subtree_check,fsid=0 10.88.0.0/24:/export
  # Kernels built without NFSv2 (CONFIG_NFSD_V2 unset, as newer Debian
  # ones are) refuse "-N 2" with "Unsupported version": then -N 3 alone.
  rpc.mountd -N 2 -N 3 --no-udp
  rpc.nfsd -N 2 -N 3 --no-udp 4 2>/dev/null || rpc.nfsd -N 3 --no-udp 4
' || fail "starting nfsd in the server namespace"
echo "RIG nfs server up: $($IP netns exec srv cat /proc/fs/nfsd/versions)"

# --- the agent and the pool ---
# An admin token for this run (docs/security.md); vireo reads VIREO_TOKEN.
export VIREO_TOKEN=rig-nfs-$$-$(date +%s%N)
echo "$VIREO_TOKEN" >/tmp/admin-token
vireo-agent --listen 127.0.0.1:8006 --state-dir /tmp/state --run-dir /run/vireo \
  --vmm /usr/bin/vireo-vmm --admin-token-file /tmp/admin-token >/tmp/agent.log 2>&1 &
agent=$!
auth="Authorization: Bearer $VIREO_TOKEN"
for _ in $(seq 50); do wget -q --header "$auth" -O /dev/null http://127.0.0.1:8006/health && break; sleep 0.2; done
vireo pool add nfs1 --nfs 10.88.0.2:/ --options timeo=10,retrans=1 || fail "pool add: $(cat /tmp/agent.log)"
vireo pool list
vireo vol create nfs1/disk.qcow2 --size 32M || fail "vol create"
disk=/run/vireo/pools/nfs1/disk.qcow2
start=$(rig_now_ms)
rig_vmm_run --kernel /guest/probe.elf --memory 64M --serial stdio --cmdline "probe.blk=write:5:8" \
  --disk "path=$disk,format=qcow2" >/tmp/write.out
grep -q "PROBE blk write mib=8 ok" /tmp/write.out || fail "probe write on NFS: $(grep -E 'blk|done' /tmp/write.out)"
rig_vmm_run --kernel /guest/probe.elf --memory 64M --serial stdio --cmdline "probe.blk=read:5:8" \
  --disk "path=$disk,format=qcow2" >/tmp/read.out
grep -q "PROBE blk read mib=8 ok" /tmp/read.out || fail "probe read on NFS: $(grep -E 'blk|done' /tmp/read.out)"
echo "RIG nfs write+read 8 MiB ok in $(( $(rig_now_ms) - start )) ms"
vireo vol list nfs1

# --- the export goes away under a writing guest ---
timeout 240 vireo-vmm --kernel /guest/probe.elf --memory 64M --serial stdio \
  --cmdline "probe.blk=stress:9:32" --disk "path=$disk,format=qcow2" \
  </dev/null >/tmp/stress.out 2>/tmp/stress.err &
vmm=$!
for _ in $(seq 300); do grep -q "stress gen=2" /tmp/stress.out && break; sleep 0.2; done
grep -q "stress gen=2" /tmp/stress.out || fail "the stress workload did not start: $(tail -3 /tmp/stress.out)"
$IP link set vc down
cut=$(rig_now_ms)
echo "RIG link to the NFS server down"
t0=$(rig_now_ms)
wget -q --header "$auth" -O /tmp/health http://127.0.0.1:8006/health || fail "the agent does not answer /health"
health_ms=$(( $(rig_now_ms) - t0 ))
t0=$(rig_now_ms)
timeout 30 vireo pool list --json >/tmp/pools.json || fail "vireo pool list failed or hung"
list_ms=$(( $(rig_now_ms) - t0 ))
grep -q '"available": false' /tmp/pools.json || fail "the dead pool is listed as available: $(cat /tmp/pools.json)"
[ "$list_ms" -le 10000 ] || fail "pool list took $list_ms ms"
wait $vmm
vmm_rc=$?
guest_ms=$(( $(rig_now_ms) - cut ))
cat /tmp/stress.out | tail -5
tail -5 /tmp/stress.err
grep -q "ioerr" /tmp/stress.out || fail "the guest saw no I/O error (vmm exit $vmm_rc): $(tail -2 /tmp/stress.out)"
echo "RIG nfs export gone: guest I/O error, VMM exit $vmm_rc after $guest_ms ms; /health $health_ms ms, pool list $list_ms ms"
kill $agent
umount -f /run/vireo/pools/nfs1 2>/dev/null || umount -l /run/vireo/pools/nfs1 2>/dev/null
echo "RIG check=ok nfs pool: probe write/read over NFS, export gone -> guest ioerr, agent answering"
