# bench-boot: vireo-vmm against the QEMU reference (QEMU microvm on the same
# nested /dev/kvm, /usr/bin/qemu-ref-vmm) booting the same guest kernel
# (rig.guest=: min, the minimal kernel's ELF vmlinux through PVH, or debian,
# Debian's stock bzImage) and initramfs with the same command line, 512 MiB,
# on each vCPU count of rig.cpus= (default 1,4), rig.runs= launches each
# (default 10).
# Launches are interleaved, and the order of the two VMMs flips every launch,
# so that both see the same load on a shared host. Each launch is bounded
# (rig.timeout=); a failed one prints its output, a hung one the VMM's state.
#
# A VMM named NAME+WORD+WORD runs NAME with those words added to the guest
# command line, to measure what they change against NAME alone (e.g.
# rig.vmms=vireo,vireo+i8042.nokbd: what the keyboard costs).
#
# Prints per launch
#   RIG launch vmm=vireo cpus=1 i=3 ms_to_init=3012 teardown_ms=40
# and per VMM and vCPU count
#   RIG result vmm=vireo cpus=1 failed=0 runs=10 median=... min=... max=...
#   RIG teardown vmm=vireo cpus=1 runs=10 median=... min=... max=...
#   RIG exit vmm=vireo cpus=1 runs=10 median=... min=... max=...
#   RIG reset-exit vmm=vireo cpus=1 runs=10 ...   (rig.irqtrace=1: from the
#     guest's reset, i8042 0xFE or triple fault, to the VMM's main thread
#     entering the kernel's exit, on the rig kernel's trace clock: the VMM's
#     own share of the teardown, without the kernel's process teardown)
# ms_to_init is from launching the VMM to the guest's /init line;
# teardown_ms from the guest's "reboot: Restarting system" (its kernel's last
# line before the reset) to the VMM's exit; exit_ms from the /init line (the
# guest's init then reboots) to the VMM's exit.
. /rig/lib.sh
kernel=$(rig_guest_kernel) || { echo "RIG check=fail rig.guest=$RIG_GUEST: want min or debian"; exit 1; }
n=${RIG_RUNS:-10}
cpus_list=$(echo "$RIG_CPUS" | tr , ' ')
vmms=$(echo "$RIG_VMMS" | tr , ' ')
for v in $vmms; do
  p=$(rig_vmm_path "${v%%+*}") && [ -x "$p" ] ||
    { echo "RIG check=fail no VMM '$v' in this initramfs (qemu needs RIG_WITH_QEMU=1)"; exit 1; }
done
results=/tmp/bench-boot.results
: >$results

# bench_launch NAME CPUS I: one launch, recorded in $results.
bench_launch() {
  local name=$1 cpus=$2 i=$3 out=/tmp/bench-boot.out why
  VMM=$(rig_vmm_path "${name%%+*}")
  rig_vmm_run --kernel "$kernel" --initrd /guest/initramfs.cpio.gz \
    --cmdline "$RIG_GUEST_CMDLINE$(rig_vmm_args "$name")" --cpus "$cpus" --memory 512M --serial stdio >$out
  if why=$(rig_expect_guest "$cpus" 512); then
    echo "RIG launch vmm=$name cpus=$cpus i=$i ms_to_init=$RIG_INIT_MS teardown_ms=${RIG_TEARDOWN_MS:--1} exit_ms=${RIG_EXIT_MS:--1}${RIG_RESET_EXIT_MS:+ reset_exit_ms=$RIG_RESET_EXIT_MS}"
    echo "$name $cpus $RIG_INIT_MS ${RIG_TEARDOWN_MS:--1} ${RIG_EXIT_MS:--1} ${RIG_RESET_EXIT_MS:--1}" >>$results
    return 0
  fi
  echo "RIG launch vmm=$name cpus=$cpus i=$i failed: $why; its output:"
  sed 's/^/  | /' $out
  echo "RIG thp at the failure: $(rig_thp_counts)"
  echo "$name $cpus fail" >>$results
  return 1
}

i=1
while [ "$i" -le "$n" ]; do
  for cpus in $cpus_list; do
    order=$vmms
    [ $((i % 2)) = 0 ] && order=$(echo "$vmms" | awk '{ for (j = NF; j > 0; j--) printf "%s ", $j }')
    for v in $order; do
      bench_launch "$v" "$cpus" "$i"
    done
  done
  i=$((i + 1))
done

fails=0
for cpus in $cpus_list; do
  for v in $vmms; do
    f=$(grep -c "^$v $cpus fail" $results)
    fails=$((fails + f))
    echo "RIG result vmm=$v cpus=$cpus failed=$f $(awk -v v="$v" -v c="$cpus" '$1 == v && $2 == c && $3 != "fail" { print $3 }' $results | rig_stats)"
    echo "RIG teardown vmm=$v cpus=$cpus $(awk -v v="$v" -v c="$cpus" '$1 == v && $2 == c && $3 != "fail" && $4 >= 0 { print $4 }' $results | rig_stats)"
    echo "RIG exit vmm=$v cpus=$cpus $(awk -v v="$v" -v c="$cpus" '$1 == v && $2 == c && $3 != "fail" && $5 >= 0 { print $5 }' $results | rig_stats)"
    [ "$RIG_IRQTRACE" != 1 ] ||
      echo "RIG reset-exit vmm=$v cpus=$cpus $(awk -v v="$v" -v c="$cpus" '$1 == v && $2 == c && $3 != "fail" && $6 >= 0 { print $6 }' $results | rig_stats)"
  done
done
echo "RIG thp pages_collapsed=$(rig_thp_counts)"
[ "$fails" = 0 ]
