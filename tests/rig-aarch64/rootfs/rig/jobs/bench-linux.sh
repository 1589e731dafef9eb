# bench-linux: rig.runs=N (default 5) boots of the minimal guest (1 vCPU,
# 512 MiB) under vireo-vmm; the time from launch to the guest's /init line.
. /rig/lib.sh; . /rig/lib-aarch64.sh
i=0 times=
while [ "$i" -lt "$RIG_RUNS" ]; do
  i=$((i + 1))
  rig_linux "$MIN_KERNEL" 1 512 >/tmp/bench.out || { cat /tmp/bench.out; exit 1; }
  echo "RIG run=$i ms_to_init=$RIG_INIT_MS"
  times="$times $RIG_INIT_MS"
done
echo "$times" | tr ' ' '\n' | grep . | sort -n | awk '{ t[NR] = $1 }
  END { printf "RIG bench runs=%d min_ms=%d median_ms=%d max_ms=%d\n", NR, t[1], t[int((NR + 1) / 2)], t[NR] }'
