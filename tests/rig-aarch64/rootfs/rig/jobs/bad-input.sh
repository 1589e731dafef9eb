# bad-input: what an aarch64 node refuses, each with exit 1 and a message
# that says why, before any guest runs: an x86 bzImage as the kernel, more
# vCPUs than the GICv3 layout holds, more memory than the host has.
. /rig/lib.sh; . /rig/lib-aarch64.sh
fails=0
expect_refusal() {
  local what=$1 pattern=$2 out rc
  shift 2
  out=$(timeout 60 /usr/bin/vireo-vmm "$@" </dev/null 2>&1)
  rc=$?
  if [ "$rc" = 1 ] && echo "$out" | grep -qiE "$pattern"; then
    echo "RIG check=ok $what: exit 1: $out"
  else
    echo "RIG check=fail $what: exit $rc, want 1 and /$pattern/: $out"
    fails=$((fails + 1))
  fi
}
host_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
expect_refusal "x86 bzImage" "x86 bzImage" --kernel /guest/x86-bzImage --cpus 1 --memory 128M
expect_refusal "not a kernel" "not an arm64 Image" --kernel /guest/initramfs.cpio.gz --cpus 1 --memory 128M
expect_refusal "too many vCPUs" "vCPU" --kernel "$MIN_KERNEL" --cpus 300 --memory 128M
expect_refusal "too many vCPUs for the GIC" "GIC" --kernel "$MIN_KERNEL" --cpus 200 --memory 128M
expect_refusal "memory beyond the host" "memory" --kernel "$MIN_KERNEL" --cpus 1 --memory "$((host_mib * 4))M"
[ "$fails" = 0 ]
