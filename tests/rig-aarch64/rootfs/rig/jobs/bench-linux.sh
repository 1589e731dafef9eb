# bench-linux: rig.runs=N (default 5) boots of the minimal guest (1 vCPU,
# 512 MiB) under vireo-vmm, then (when the rig carries it: make
# bench-rig-aarch64) the same kernel and initramfs under QEMU -M virt with
# KVM; the time from launch to the guest's /init line, each run and the
# min/median/max of each VMM.
. /rig/lib.sh; . /rig/lib-aarch64.sh
qemu=/usr/bin/qemu-system-aarch64

# bench NAME CONSOLE: RIG_RUNS boots with $VMM; prints the summary line.
bench() {
  local name=$1 i=0 times=
  shift 2
  while [ "$i" -lt "$RIG_RUNS" ]; do
    i=$((i + 1))
    rig_vmm_run "$@" >/tmp/bench.out
    rig_expect_guest 1 512 >>/tmp/bench.out || { cat /tmp/bench.out; return 1; }
    echo "RIG run=$i vmm=$name ms_to_init=$RIG_INIT_MS"
    times="$times $RIG_INIT_MS"
  done
  echo "$times" | tr ' ' '\n' | grep . | sort -n | awk -v name="$name" '{ t[NR] = $1 }
    END { printf "RIG bench vmm=%s runs=%d min_ms=%d median_ms=%d max_ms=%d\n", name, NR, t[1], t[int((NR + 1) / 2)], t[NR] }'
}

VMM=/usr/bin/vireo-vmm
set -- --kernel "$MIN_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$RIG_GUEST_CMDLINE" \
  --cpus 1 --memory 512M --serial stdio
bench vireo-vmm ttyS0 "$@" | tee /tmp/bench-vireo || exit 1
if [ -x "$qemu" ]; then
  VMM=$qemu
  set -- -M virt,accel=kvm,gic-version=3 -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
    -display none -monitor none -serial stdio -no-reboot \
    -kernel "$MIN_KERNEL" -initrd "$GUEST_INITRD" -append "console=ttyAMA0 panic=-1 quiet"
  bench qemu ttyAMA0 "$@" | tee /tmp/bench-qemu || exit 1
  v=$(sed -n 's/.*median_ms=\([0-9]*\).*/\1/p' /tmp/bench-vireo | tail -n1)
  q=$(sed -n 's/.*median_ms=\([0-9]*\).*/\1/p' /tmp/bench-qemu | tail -n1)
  echo "RIG bench ratio vireo/qemu=$(awk -v v="$v" -v q="$q" 'BEGIN { printf "%.2f", v / q }') (medians $v ms / $q ms)"
fi
