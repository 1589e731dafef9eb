# shellcheck shell=dash disable=SC2034 # busybox ash; RIG_* are used by the jobs
# Shared helpers for rig jobs (sourced by /init and by /rig/jobs/*.sh).
# Runs under busybox ash inside the outer rig VM.

# Milliseconds since boot, from /proc/uptime (10 ms resolution). Busybox date
# has no %N; reading /proc/uptime with the read builtin costs no fork, which
# matters when each fork is emulated.
rig_now_ms() {
  local up _rest
  read -r up _rest </proc/uptime
  # "123.45": the fraction always has two digits. Prefix it with 1 so that a
  # leading zero ("0.05") is not read as an octal number.
  echo $(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 ))
}

VMM=${VMM:-/usr/bin/vireo-vmm}
RIG_CR=$(printf '\r')

# rig_vmm_run ARGS... : run the VMM once with a timeout (rig.timeout=),
# stdin from /dev/null (the VMM must not put the console into raw mode),
# and pass its output through, noting when the guest's VIREO-GUEST-INIT line
# arrives. Afterwards:
#   RIG_VMM_RC    exit code of the VMM (124/143: killed by the timeout)
#   RIG_INIT_MS   ms from launch to the VIREO-GUEST-INIT line ("" if none)
#   RIG_INIT_LINE that line, from "VIREO-GUEST-INIT" on ("" if none)
rig_vmm_run() {
  local res=/tmp/rig-vmm-run.$$ start
  rm -f "$res"
  echo "RIG vmm: $VMM $*"
  start=$(rig_now_ms)
  # The pipeline's reader runs in a subshell, so results go through a file.
  { timeout "$RIG_TIMEOUT" "$VMM" "$@" </dev/null 2>&1; echo "RIG-VMM-RC=$?"; } |
  while IFS= read -r line; do
    line=${line%"$RIG_CR"}
    case $line in
      *RIG-VMM-RC=*)
        # The VMM's last output may lack a newline, so the marker can end
        # a line of guest output: print that part, then note the code.
        [ -z "${line%RIG-VMM-RC=*}" ] || echo "${line%RIG-VMM-RC=*}"
        echo "RIG_VMM_RC=${line##*RIG-VMM-RC=}" >>"$res"
        continue ;;
      *VIREO-GUEST-INIT*)
        # Take the time first, then do the slower work.
        t=$(rig_now_ms)
        echo "RIG_INIT_MS=$((t - start))" >>"$res"
        echo "RIG_INIT_LINE='VIREO-GUEST-INIT${line#*VIREO-GUEST-INIT}'" >>"$res" ;;
    esac
    echo "$line"
  done
  RIG_VMM_RC=255 RIG_INIT_MS='' RIG_INIT_LINE=''
  # shellcheck source=/dev/null
  [ -f "$res" ] && . "$res"
  rm -f "$res"
}

# rig_expect_guest CPUS MEM_MIB : after rig_vmm_run, check that the VMM
# exited 0, the guest reported CPUS online CPUs, and its MemTotal is the
# memory it was given less what the kernel keeps for itself (at most 15%).
# Prints one RIG line; returns 0/1.
rig_expect_guest() {
  local want=$1 mem_mib=$2 mem_kb
  if [ -z "$RIG_INIT_LINE" ]; then
    echo "RIG check=fail no VIREO-GUEST-INIT line (vmm exit=$RIG_VMM_RC)"
    return 1
  fi
  case " $RIG_INIT_LINE " in
    *" cpus=$want "*) ;;
    *) echo "RIG check=fail want cpus=$want, guest said: $RIG_INIT_LINE"; return 1 ;;
  esac
  mem_kb=${RIG_INIT_LINE#*mem_kb=}
  mem_kb=${mem_kb%% *}
  if [ "$mem_kb" -gt $((mem_mib * 1024)) ] || [ "$mem_kb" -lt $((mem_mib * 1024 * 85 / 100)) ]; then
    echo "RIG check=fail want MemTotal within 85-100% of ${mem_mib} MiB, guest said: $RIG_INIT_LINE"
    return 1
  fi
  if [ "$RIG_VMM_RC" != 0 ]; then
    echo "RIG check=fail vmm exit=$RIG_VMM_RC after the guest's line"
    return 1
  fi
  echo "RIG check=ok ms_to_init=$RIG_INIT_MS $RIG_INIT_LINE"
}

# The guest command line of the Linux jobs: serial console, reset through the
# i8042 on reboot (the VMM exits on it), reboot at once on panic, and quiet,
# because every console byte crosses two levels of emulation (rig.verbose=1
# drops it to see where a guest stops).
RIG_GUEST_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
[ "${RIG_VERBOSE:-0}" = 1 ] && RIG_GUEST_CMDLINE="console=ttyS0 reboot=k panic=-1"
