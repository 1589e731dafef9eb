# bench-linux: boot linux-min-1 rig.runs=N times (default 5) and report the
# time from launching the VMM to the guest's VIREO-GUEST-INIT line for each
# run, then min/median/max. Single runs are noisy (two levels of emulation on
# a shared host): compare medians.
. /rig/lib.sh
n=${RIG_RUNS:-5}
fails=0 times=
i=1
while [ "$i" -le "$n" ]; do
  rig_vmm_run --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz \
    --cmdline "$RIG_GUEST_CMDLINE" --cpus 1 --memory 512M --serial stdio >/tmp/bench-run.log
  if rig_expect_guest 1 512 >/dev/null; then
    echo "RIG run=$i ms_to_init=$RIG_INIT_MS"
    times="$times $RIG_INIT_MS"
  else
    echo "RIG run=$i failed (vmm exit=$RIG_VMM_RC); its output:"
    cat /tmp/bench-run.log
    fails=$((fails + 1))
  fi
  i=$((i + 1))
done
if [ -n "$times" ]; then
  echo $times | tr ' ' '\n' | sort -n | awk '{ t[NR] = $1 }
    END { printf "RIG bench runs=%d min_ms=%d median_ms=%d max_ms=%d\n",
          NR, t[1], (NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2), t[NR] }'
fi
echo "RIG bench failed=$fails of $n"
[ "$fails" = 0 ]
