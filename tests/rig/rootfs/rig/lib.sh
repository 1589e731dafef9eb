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

# rig_vmm_run ARGS... : run the VMM once, bounded by rig.timeout= seconds,
# stdin from /dev/null (the VMM must not put the console into raw mode), and
# pass its output through, noting when the guest's lines arrive. A launch
# that outlives the bound is not just killed: the watchdog first prints what
# the VMM was doing (rig_dump_vmm), so a hang leaves something to read.
# Afterwards:
#   RIG_VMM_RC      exit code of the VMM (137: killed by the watchdog)
#   RIG_INIT_MS     ms from launch to the VIREO-GUEST-INIT line ("" if none)
#   RIG_INIT_LINE   that line, from "VIREO-GUEST-INIT" on ("" if none)
#   RIG_EXIT_MS     ms from the VIREO-GUEST-INIT line to the VMM's exit (the
#                   guest's own reboot, its kernel's device shutdown, then
#                   the teardown below) ("" if no line)
#   RIG_TEARDOWN_MS ms from the guest kernel's "reboot: Restarting system"
#                   (printed just before it resets the machine) to the
#                   VMM's exit ("" if the guest never said it)
#   RIG_RESET_EXIT_MS  with rig.irqtrace=1: ms from the guest's reset (its
#                   write of 0xFE to the i8042, or a triple fault) to the
#                   VMM's main thread entering the kernel's exit
#                   (sched_process_exit: its own work done, before its files
#                   are closed and the process's memory torn down), both on
#                   the rig kernel's trace clock ("" if not traced)
#   RIG_HUNG        1 if the watchdog had to kill the VMM
#   RIG_CAD_MS      ms from launch to the guest's VIREO-GUEST-CAD line
# Optional: RIG_ON_LINE=PATTERN and RIG_ON_LINE_DO=COMMAND run COMMAND (eval)
# once, when a line of the VMM's output contains PATTERN (both are cleared
# afterwards).
rig_vmm_run() {
  local res=/tmp/rig-vmm-run.$$ dump=/tmp/rig-vmm-dump.$$ start api
  rm -f "$res" "$dump"
  # vireo-vmm always gets an API socket, so a hung launch's dump can ask it
  # for its devices' registers (GET /vm).
  api=$(rig_api_socket "$@")
  case "$VMM $*" in *vireo-vmm*--api-socket*) ;; *vireo-vmm*) set -- "$@" --api-socket "$api" ;; esac
  echo "RIG vmm: $VMM $*"
  [ ! -w $RIG_TRACE/trace ] || : >$RIG_TRACE/trace
  [ ! -w $RIG_RESET_TRACE/trace ] || : >$RIG_RESET_TRACE/trace
  start=$(rig_now_ms)
  # The pipeline's reader runs in a subshell, so results go through a file.
  {
    "$VMM" "$@" </dev/null 2>&1 &
    pid=$!
    echo "$pid" >"$res.pid"
    rig_watchdog "$pid" "$RIG_TIMEOUT" "$dump" "$api" </dev/null >/dev/null 2>&1 &
    wd=$!
    wait "$pid"
    rc=$?
    # A VMM that exits while the watchdog dumps it leaves a partial dump.
    kill "$wd" 2>/dev/null
    echo "RIG-VMM-RC=$rc"
  } | rig_read_vmm_output "$start" "$res"
  RIG_VMM_RC=255 RIG_INIT_MS='' RIG_INIT_LINE='' RIG_TEARDOWN_MS='' RIG_HUNG=0 RIG_CAD_MS=''
  RIG_EXIT_MS=''
  RIG_ON_LINE='' RIG_ON_LINE_DO=''
  # shellcheck source=/dev/null
  [ -f "$res" ] && . "$res"
  RIG_RESET_EXIT_MS=$(rig_reset_exit_ms "$(cat "$res.pid" 2>/dev/null)")
  rm -f "$res" "$res.pid"
  if [ -e "$dump" ] || [ -e "$dump.part" ]; then
    RIG_HUNG=1
    echo "RIG launch hung: still running after ${RIG_TIMEOUT}s; the VMM's state then:"
    cat "$dump" "$dump.part" 2>/dev/null
    rm -f "$dump" "$dump.part"
  fi
  rig_flight_recorder_print
}

# The KVM keeper: a VM that exists for the whole rig boot, paused, with a
# vCPU whose local APIC the guest never enables. KVM flips static keys
# when the first VM appears or the last goes (preempt notifiers) and when
# a vCPU's APIC is software-disabled or enabled (a deferred key, flipped by
# a kworker a second later); each flip patches kernel text on every CPU
# (int3, then IPIs). Under QEMU's TCG such cross-CPU patching can leave
# both outer CPUs spinning at the patched site: on 2026-12-06 the outer VM
# locked up right after a 4-vCPU vireo-vmm launch, as QEMU's launch
# started (KVM destroying one VM while creating the next), both CPUs in
# finish_task_switch at the preempt-notifier branch, one in its int3
# handler. With a VM and a disabled APIC held, neither key changes again.
# RIG_KVM_KEEPER=0 (rig.keeper=0) leaves it out.
rig_kvm_keeper_start() {
  [ "${RIG_KVM_KEEPER:-1}" = 1 ] || return 0
  kernel=/guest/vmlinux
  [ -s $kernel ] || kernel=/guest/probe.elf
  [ -s $kernel ] || return 0
  vireo-vmm --paused --kernel $kernel --memory 64M --cpus 1 --serial none \
    </dev/null >/tmp/kvm-keeper.log 2>&1 &
  local pid=$! waited=0
  # The keys flip while the keeper builds its VM, and the deferred one a
  # second after its vCPU exists: a launch must not build a VM meanwhile
  # (on 2026-12-06 the first launch of a rig boot did, and the outer CPUs
  # locked up as above). So wait for its vCPU thread, then two seconds.
  until grep -qs '^vireo-vcpu-0$' /proc/$pid/task/*/comm; do
    kill -0 $pid 2>/dev/null && [ $waited -lt 300 ] || break
    sleep 0.1
    waited=$((waited + 1))
  done
  sleep 2
  echo "RIG kvm keeper pid=$pid ready_after_ms=$((waited * 100 + 2000))"
}

# The flight recorder: KVM tracepoints that stay on for every launch, cheap
# because they fire on rare events only: a vCPU shutting down (triple fault;
# SVM's exit 127, VMX's exit 2) with the guest RIP it had (the VMM cannot
# tell: on AMD, KVM resets the vCPU before it returns the exit), and every
# exception KVM injected into the guest. rig_vmm_run prints them when a
# launch had a shutdown. Started by /init once kvm is loaded.
RIG_TRACE=/sys/kernel/tracing
rig_flight_recorder_start() {
  [ -d $RIG_TRACE/events/kvm/kvm_exit ] || return 0
  echo 1024 >$RIG_TRACE/buffer_size_kb
  echo 'exit_reason == 127 || exit_reason == 2' >$RIG_TRACE/events/kvm/kvm_exit/filter
  echo 1 >$RIG_TRACE/events/kvm/kvm_exit/enable
  echo 1 >$RIG_TRACE/events/kvm/kvm_inj_exception/enable
}

rig_flight_recorder_print() {
  local line rip
  [ -r $RIG_TRACE/trace ] || return 0
  grep -qi 'reason.*shutdown\|reason.*triple' $RIG_TRACE/trace || return 0
  echo "RIG flight recorder: the guest shut a vCPU down (triple fault); KVM's record of this launch:"
  grep -v '^#' $RIG_TRACE/trace | tail -n 40 | while IFS= read -r line; do
    rip=$(echo "$line" | grep -o 'rip 0x[0-9a-f]*' | cut -d' ' -f2)
    echo "RIG flight: ${line#"${line%%[! ]*}"} ${rip:+$(rig_guest_symbol "$rip")}"
  done
}

# rig.thp=MODE sets the rig kernel's transparent huge page mode; and
# rig.khugepaged=fast lets khugepaged scan without pause, so that it
# collapses a VMM's 4 KiB-backed guest RAM into huge pages while the guest
# runs (each collapse makes KVM drop its nested mappings of that range): the
# experiments that tell a VMM's fault from THP under nested paging.
# rig.compact=fast compacts all memory five times a second (pages of guest
# RAM migrate under running guests, each a nested mapping dropped).
RIG_THP_DIR=/sys/kernel/mm/transparent_hugepage
rig_thp_setup() {
  [ -n "${RIG_THP:-}" ] && echo "$RIG_THP" >$RIG_THP_DIR/enabled
  if [ "${RIG_KHUGEPAGED:-}" = fast ]; then
    echo 0 >$RIG_THP_DIR/khugepaged/scan_sleep_millisecs
    echo 0 >$RIG_THP_DIR/khugepaged/alloc_sleep_millisecs
    echo 32768 >$RIG_THP_DIR/khugepaged/pages_to_scan
  fi
  if [ "${RIG_COMPACT:-}" = fast ]; then
    (while :; do echo 1 >/proc/sys/vm/compact_memory; sleep 0.2; done) </dev/null >/dev/null 2>&1 &
  fi
  echo "RIG thp: $(cat $RIG_THP_DIR/enabled) defrag: $(cat $RIG_THP_DIR/defrag)" \
    "khugepaged sleep_ms: $(cat $RIG_THP_DIR/khugepaged/scan_sleep_millisecs)"
}

# Huge pages khugepaged has made and pages migrated since boot.
rig_thp_counts() {
  echo "$(cat $RIG_THP_DIR/khugepaged/pages_collapsed 2>/dev/null)" \
    "$(grep -E '^(pgmigrate_success|thp_fault_alloc|thp_fault_fallback) ' /proc/vmstat | tr '\n' ' ')"
}

# rig.irqtrace=1: a second recorder, for a guest that hangs waiting for an
# event: KVM's interrupt events (IPIs sent and accepted, IOAPIC and PIC lines,
# EOIs, interrupts injected, halted vCPUs woken, hypercalls, async page
# faults) in a trace instance of their own, which rig_dump_vmm prints. Off by
# default: it costs every guest interrupt a few tracepoints.
RIG_IRQ_TRACE=$RIG_TRACE/instances/irq
rig_irq_recorder_start() {
  local e
  [ "${RIG_IRQTRACE:-0}" = 1 ] && [ -d $RIG_TRACE/events/kvm ] || return 0
  mkdir -p $RIG_IRQ_TRACE && echo 4096 >$RIG_IRQ_TRACE/buffer_size_kb || return 0
  for e in kvm_apic_ipi kvm_apic_accept_irq kvm_ioapic_set_irq kvm_pic_set_irq kvm_eoi kvm_pv_eoi \
    kvm_inj_virq kvm_vcpu_wakeup kvm_hypercall kvm_async_pf_not_present kvm_async_pf_ready \
    kvm_async_pf_completed kvm_async_pf_doublefault kvm_try_async_get_page; do
    [ -d $RIG_IRQ_TRACE/events/kvm/$e ] && echo 1 >$RIG_IRQ_TRACE/events/kvm/$e/enable
  done
  rig_reset_recorder_start
  echo "RIG irqtrace: on"
}

# With rig.irqtrace=1 also a recorder of each launch's end, read by
# rig_reset_exit_ms: the guest's reset (i8042 command 0xFE, or a vCPU shut
# down by a triple fault, as QEMU's guest resets) and process exits.
RIG_RESET_TRACE=$RIG_TRACE/instances/reset
rig_reset_recorder_start() {
  local ev=$RIG_RESET_TRACE/events
  mkdir -p $RIG_RESET_TRACE || return 0
  # One clock for all CPUs: the reset and the exit may be seen on different ones.
  echo global >$RIG_RESET_TRACE/trace_clock
  echo 'port == 0x64 && rw == 1' >$ev/kvm/kvm_pio/filter
  echo 'exit_reason == 127' >$ev/kvm/kvm_exit/filter
  echo 1 >$ev/kvm/kvm_pio/enable
  echo 1 >$ev/kvm/kvm_exit/enable
  echo 1 >$ev/sched/sched_process_exit/enable
}

# rig_reset_exit_ms PID: ms from the first guest reset of this launch to
# thread PID's sched_process_exit, on the trace clock; nothing when either
# is missing.
rig_reset_exit_ms() {
  [ -n "$1" ] && [ -r $RIG_RESET_TRACE/trace ] || return 0
  awk -v pid="$1" 'function ts(  i) { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) return $i + 0 }
    (/kvm_pio: pio_write at 0x64 .* val 0xfe/ || /kvm_exit:/) && reset == "" { reset = ts() }
    /sched_process_exit:/ && index($0, " pid=" pid " ") { gone = ts() }
    END { if (reset != "" && gone != "") printf "%d\n", (gone - reset) * 1000 + 0.5 }' $RIG_RESET_TRACE/trace
}

# The interrupt recorder's record (rig.irqtrace=1), frozen: its last events,
# then the last ones other than the LAPIC timer's (vector 236), which a hung
# guest keeps taking after the event it waits for was lost.
rig_dump_irq_trace() {
  local rec=/tmp/rig-irq-trace.$$
  [ -r $RIG_IRQ_TRACE/trace ] || return 0
  echo 0 >$RIG_IRQ_TRACE/tracing_on
  grep -v '^#' $RIG_IRQ_TRACE/trace >$rec
  echo "RIG dump: irqtrace: $(wc -l <$rec) events; the last 40:"
  tail -n 40 $rec | sed 's/^ */RIG dump: irq /'
  echo "RIG dump: irqtrace: the last 250 not of vector 236 (the LAPIC timer):"
  grep -v -E '(vec|vector|irq) 236([^0-9]|$)|kvm_vcpu_wakeup' $rec | tail -n 250 | sed 's/^ */RIG dump: irq /'
  rm -f $rec
  echo >$RIG_IRQ_TRACE/trace
  echo 1 >$RIG_IRQ_TRACE/tracing_on
}

# rig_read_vmm_output START RESULT_FILE: the reader side of rig_vmm_run.
rig_read_vmm_output() {
  local start=$1 res=$2 t reset_t='' init_t='' fired=''
  while IFS= read -r line; do
    line=${line%"$RIG_CR"}
    case $line in
      *RIG-VMM-RC=*)
        t=$(rig_now_ms)
        # The VMM's last output may lack a newline, so the marker can end
        # a line of guest output: print that part, then note the code.
        [ -z "${line%RIG-VMM-RC=*}" ] || echo "${line%RIG-VMM-RC=*}"
        echo "RIG_VMM_RC=${line##*RIG-VMM-RC=}" >>"$res"
        [ -z "$reset_t" ] || echo "RIG_TEARDOWN_MS=$((t - reset_t))" >>"$res"
        [ -z "$init_t" ] || echo "RIG_EXIT_MS=$((t - init_t))" >>"$res"
        continue ;;
      *VIREO-GUEST-INIT*)
        # Take the time first, then do the slower work.
        t=$(rig_now_ms)
        init_t=$t
        echo "RIG_INIT_MS=$((t - start))" >>"$res"
        echo "RIG_INIT_LINE='VIREO-GUEST-INIT${line#*VIREO-GUEST-INIT}'" >>"$res" ;;
      *"reboot: Restarting system"*)
        reset_t=$(rig_now_ms) ;;
      *VIREO-GUEST-CAD*)
        echo "RIG_CAD_MS=$(($(rig_now_ms) - start))" >>"$res" ;;
    esac
    echo "$line"
    if [ -n "${RIG_ON_LINE:-}" ] && [ -z "$fired" ]; then
      case $line in *"$RIG_ON_LINE"*) fired=1; eval "$RIG_ON_LINE_DO" ;; esac
    fi
  done
}

# rig_api_socket ARGS...: the API socket of a VMM command line (the path
# after --api-socket), else a fresh path for one.
rig_api_socket() {
  while [ $# -gt 1 ]; do
    [ "$1" = --api-socket ] && { echo "$2"; return; }
    shift
  done
  echo "/tmp/rig-api.$$.sock"
}

# rig_watchdog PID SECONDS DUMP_FILE API_SOCKET: if PID still runs after
# SECONDS, write its state to DUMP_FILE and kill it. Checks once a second, so
# it ends soon after the VMM does; its output must not hold the VMM's pipe open.
rig_watchdog() {
  local pid=$1 left=$2 dump=$3 api=$4
  while [ "$left" -gt 0 ]; do
    sleep 1
    kill -0 "$pid" 2>/dev/null || return 0
    left=$((left - 1))
  done
  rig_dump_vmm "$pid" "$api" >"$dump.part" 2>&1
  mv "$dump.part" "$dump"
  kill -KILL "$pid" 2>/dev/null
}

# rig_dump_vmm PID [API_SOCKET]: what a VMM process is doing, for a launch
# that hangs: each thread's state, wait channel and kernel stack; the VM's
# KVM counters over one second (which exits still happen); the guest's exits
# over one second by reason and RIP (named from the guest kernel's symbols
# when /guest/System.map has them); and, from vireo-vmm's API, its devices'
# registers (a console or keyboard interrupt the guest waits for).
rig_dump_vmm() {
  local pid=$1 api=${2:-} t
  echo "RIG dump: pid $pid $(grep -E '^(State|Threads|VmRSS)' "/proc/$pid/status" | tr -s '\t\n' '  ')"
  for t in /proc/"$pid"/task/*; do
    echo "RIG dump: thread $(cat "$t/comm") tid=${t##*/} state=$(cut -d' ' -f3 "$t/stat") wchan=$(cat "$t/wchan" 2>/dev/null)"
    sed 's/^/RIG dump:     /' "$t/stack" 2>/dev/null
  done
  rig_dump_kvm_counters "$pid"
  rig_dump_guest_exits
  rig_dump_irq_trace
  if [ -S "$api" ] && command -v vireo-vmm-ctl >/dev/null; then
    echo "RIG dump: GET /vm: $(vireo-vmm-ctl --api-socket "$api" info 2>&1 | tr -s ' \n' ' ')"
  fi
}

# KVM's per-VM counters (debugfs), twice one second apart: the ones that moved.
rig_dump_kvm_counters() {
  local vm f v snap=/tmp/rig-kvm-snap.$$
  for vm in /sys/kernel/debug/kvm/"$1"-*; do
    [ -d "$vm" ] || continue
    for f in "$vm"/*; do [ -f "$f" ] && read -r v <"$f" && echo "${f##*/} $v"; done >"$snap"
    sleep 1
    for f in "$vm"/*; do [ -f "$f" ] && read -r v <"$f" && echo "${f##*/} $v"; done |
      awk -v vm="${vm##*/}" 'NR == FNR { old[$1] = $2; next }
        ($2 - old[$1]) != 0 { printf "RIG dump: kvm %s %s +%d/s (now %d)\n", vm, $1, $2 - old[$1], $2 }' "$snap" -
    rm -f "$snap"
  done
}

# The guest's exits for one second, counted by reason and RIP (a hist
# trigger: no trace buffer to format, which would take seconds here).
rig_dump_guest_exits() {
  local ev=$RIG_TRACE/events/kvm/kvm_exit spec='hist:keys=exit_reason,guest_rip:sort=hitcount.descending'
  [ -d "$ev" ] || { echo "RIG dump: no kvm tracepoints"; return; }
  echo "!$spec" >>"$ev/trigger" 2>/dev/null
  echo "$spec" >>"$ev/trigger"
  sleep 1
  # Not the "# trigger info: hist:keys=...:vals=hitcount" header line.
  grep -v '^#' "$ev/hist" | grep 'hitcount' | head -n 12 | tr -d '{}:,' | while read -r _ reason _ rip _ n; do
    rip=$(printf '0x%x' "$rip")
    echo "RIG dump: exits $n/s reason=$(rig_exit_name "$reason") rip=$rip $(rig_guest_symbol "$rip")"
  done
  echo "!$spec" >>"$ev/trigger"
}

# rig_exit_name CODE: the name of an AMD SVM exit code (the rig's KVM is
# kvm_amd) that a guest shows often; others stay numbers.
rig_exit_name() {
  case $1 in
    96) echo INTR ;; 100) echo VINTR ;; 114) echo CPUID ;; 119) echo PAUSE ;; 120) echo HLT ;;
    123) echo IOIO ;; 124) echo MSR ;; 127) echo SHUTDOWN ;; 1024) echo NPF ;; *) echo "$1" ;;
  esac
}

# rig_guest_symbol 0xADDR: "symbol+0xoff" from /guest/System.map (nm -n).
rig_guest_symbol() {
  [ -r /guest/System.map ] || return 0
  # Only the low 32 bits are compared: awk's numbers are doubles, and the
  # kernel's text lies within one 4 GiB window anyway.
  awk -v want="$1" 'function hex(s,  i, c, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
      if (length(s) > 8) s = substr(s, length(s) - 7)
      for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
      return v }
    BEGIN { w = hex(want) }
    { a = hex($1); if (a > w) exit; best = $3; off = w - a }
    END { if (best != "") printf "%s+0x%x", best, off }' /guest/System.map
}

# rig_boot_cad KERNEL CPUS: boots KERNEL like the other Linux jobs, but with
# vireo.cad (the guest's busybox init reboots on Ctrl-Alt-Del) and an API
# socket; once init is up, PUT /vm/ctrl-alt-del types it. Then
# rig_expect_guest, and rig_expect_cad for the reboot. With a VMM that has
# no vireo-vmm-ctl beside it (the QEMU reference), a plain boot.
RIG_API_SOCKET=/tmp/rig-vm.sock
rig_boot_cad() {
  local kernel=$1 cpus=$2
  rm -f /tmp/rig-cad.answer
  if ! command -v vireo-vmm-ctl >/dev/null; then
    rig_vmm_run --kernel "$kernel" --initrd /guest/initramfs.cpio.gz \
      --cmdline "$RIG_GUEST_CMDLINE" --cpus "$cpus" --memory 512M --serial stdio
    return
  fi
  RIG_ON_LINE=VIREO-CAD-READY
  RIG_ON_LINE_DO="vireo-vmm-ctl --api-socket $RIG_API_SOCKET ctrl-alt-del >/tmp/rig-cad.answer 2>&1 && echo accepted >>/tmp/rig-cad.answer"
  rig_vmm_run --kernel "$kernel" --initrd /guest/initramfs.cpio.gz \
    --cmdline "$RIG_GUEST_CMDLINE vireo.cad" --cpus "$cpus" --memory 512M --serial stdio \
    --api-socket "$RIG_API_SOCKET"
}

# rig_expect_cad: after rig_boot_cad, check that the API took the keys
# (204), the guest's init saw Ctrl-Alt-Del and rebooted, and the VMM exited
# 0 on that reset. Prints one RIG line; returns 0/1 (0 when skipped).
rig_expect_cad() {
  command -v vireo-vmm-ctl >/dev/null || { echo "RIG check=skipped ctrl-alt-del (no vireo-vmm-ctl)"; return 0; }
  if ! grep -qx accepted /tmp/rig-cad.answer 2>/dev/null; then
    echo "RIG check=fail PUT /vm/ctrl-alt-del: $(cat /tmp/rig-cad.answer 2>/dev/null || echo never sent)"
    return 1
  fi
  if [ -z "$RIG_CAD_MS" ]; then
    echo "RIG check=fail the guest's init never saw Ctrl-Alt-Del (no VIREO-GUEST-CAD line)"
    return 1
  fi
  if [ "$RIG_VMM_RC" != 0 ]; then
    echo "RIG check=fail vmm exit=$RIG_VMM_RC after Ctrl-Alt-Del"
    return 1
  fi
  echo "RIG check=ok ctrl-alt-del: the guest rebooted at ms=$RIG_CAD_MS, vmm exit=0"
}

# rig_expect_guest CPUS MEM_MIB : after rig_vmm_run, check that the VMM
# exited 0, the guest reported CPUS online CPUs, and its MemTotal is the
# memory it was given less what the kernel keeps for itself (at most 15%).
# Prints one RIG line; returns 0/1.
rig_expect_guest() {
  local want=$1 mem_mib=$2 mem_kb
  if [ "${RIG_HUNG:-0}" = 1 ]; then
    echo "RIG check=fail the launch outlived rig.timeout=${RIG_TIMEOUT}s (vmm exit=$RIG_VMM_RC)"
    return 1
  fi
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
# The minimal guest (the aarch64 rig's lib-aarch64.sh names its own).
MIN_KERNEL=/guest/vmlinux
GUEST_INITRD=/guest/initramfs.cpio.gz
[ "${RIG_VERBOSE:-0}" = 1 ] && RIG_GUEST_CMDLINE="console=ttyS0 reboot=k panic=-1"

# rig_vmm_path NAME: the binary behind a VMM name of rig.vmms=: vireo is the
# VMM under test, qemu the reference (QEMU microvm on the same /dev/kvm,
# present when the initramfs was built with RIG_WITH_QEMU=1), any other NAME
# /usr/bin/vireo-vmm-NAME (other builds put in with RIG_EXTRA_DIR, e.g. to
# measure what each change bought, interleaved in one rig boot).
rig_vmm_path() {
  case $1 in
    vireo) echo /usr/bin/vireo-vmm ;;
    qemu) echo /usr/bin/qemu-ref-vmm ;;
    qemu-kirq) echo /usr/bin/qemu-ref-vmm-kirq ;;
    *) [ -x "/usr/bin/vireo-vmm-$1" ] && echo "/usr/bin/vireo-vmm-$1" ;;
  esac
}

# rig_guest_kernel: the kernel rig.guest= names: min (the minimal kernel's
# ELF vmlinux, PVH entry; the default) or debian (Debian's stock bzImage).
rig_guest_kernel() {
  case ${RIG_GUEST:-min} in
    min) echo /guest/vmlinux ;;
    debian) echo /guest/debian-vmlinuz ;;
    *) return 1 ;;
  esac
}

# rig_vmm_args NAME: for NAME+WORD+WORD, " WORD WORD" (guest command line
# words bench-boot adds for that VMM name); else nothing.
rig_vmm_args() {
  case $1 in *+*) echo " ${1#*+}" | tr + ' ' ;; esac
}

# rig_stats: numbers on stdin, one a line -> "runs= median= min= max=".
rig_stats() {
  sort -n | awk '{ t[NR] = $1 }
    END { if (NR == 0) { print "runs=0"; exit }
          m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
          printf "runs=%d median=%d min=%d max=%d\n", NR, m, t[1], t[NR] }'
}

# rig_median KEY: the median of the KEY=VALUE words of the lines on stdin
# (lines without one are skipped), or nothing.
rig_median() {
  awk -v key="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, key) == 1) print substr($i, length(key) + 1) }' |
    rig_stats | sed -n 's/.*median=\([0-9]*\).*/\1/p'
}

# rig_console_quiet / rig_console_loud: the rig kernel's messages off the
# console while a bench runs (KVM's "Unhandled WRMSR" at every guest boot
# would land in the middle of its result lines), then back as they were.
rig_console_quiet() {
  RIG_PRINTK_WAS=$(cat /proc/sys/kernel/printk)
  echo 1 >/proc/sys/kernel/printk
}
rig_console_loud() {
  [ -z "${RIG_PRINTK_WAS:-}" ] || echo "$RIG_PRINTK_WAS" >/proc/sys/kernel/printk
}

# rig_netbench_figures FILE: the figures of the guest's VIREO-NETBENCH line
# in FILE ("tx_mbps=.. rx_mbps=.. rr_per_s=.."); fails when there is no
# such line or one of its tools failed.
rig_netbench_figures() {
  local line
  line=$(grep -o 'VIREO-NETBENCH.*' "$1" | tr -d "$RIG_CR")
  case " $line " in
    "  " | *"=fail "*) return 1 ;;
  esac
  echo "${line#VIREO-NETBENCH }"
}

# KVM exit histograms (tracepoint hist triggers): by exit reason, port I/O by
# port, MSR by index, MMIO by address, exits to the VMM by reason, and the
# guest RIPs that exit most.
RIG_HISTS="kvm_exit:exit_reason kvm_exit:guest_rip kvm_pio:port,rw kvm_msr:ecx,write kvm_mmio:gpa,type kvm_userspace_exit:reason"

# rig_hist_clear: start (or restart from zero) the histograms.
rig_hist_clear() {
  local h
  [ -d $RIG_TRACE/events/kvm ] || return 0
  for h in $RIG_HISTS; do
    echo "hist:keys=${h#*:}:sort=hitcount.descending:size=4096" >>"$RIG_TRACE/events/kvm/${h%%:*}/trigger" 2>/dev/null
    echo "hist:keys=${h#*:}:sort=hitcount.descending:size=4096:clear" >>"$RIG_TRACE/events/kvm/${h%%:*}/trigger"
  done
}

# rig_hist_print TAG: the histograms since rig_hist_clear, "RIG hist TAG ..."
# (the 25 largest entries of each, and its total).
rig_hist_print() {
  local h
  [ -d $RIG_TRACE/events/kvm ] || { echo "RIG hist $1 no kvm tracepoints"; return 0; }
  for h in $RIG_HISTS; do
    grep -E 'hitcount|Hits:' "$RIG_TRACE/events/kvm/${h%%:*}/hist" | grep -v '^#' | head -n 26 |
      sed "s/^/RIG hist $1 ${h%%:*} /"
  done
}

# rig_wait_for FILE PATTERN SECONDS: wait until FILE has a line matching
# PATTERN (grep -E); returns 1 on timeout.
rig_wait_for() {
  local file=$1 pattern=$2 left=$(($3 * 10))
  while [ "$left" -gt 0 ]; do
    grep -qE "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
    left=$((left - 1))
  done
  return 1
}

# rig_last_tick FILE: the number of the last "VIREO-TICK i" line in FILE (0 if none).
rig_last_tick() {
  local n
  n=$(tr -d '\r' <"$1" | sed -n 's/.*VIREO-TICK \([0-9]*\).*/\1/p' | tail -n1)
  echo "${n:-0}"
}

# rig_ticks_continuous FILE...: every VIREO-TICK line of the files, in
# order, counts 1, 2, 3, ... with no gap or repeat, and uptime never goes
# back. Prints the count; returns 1 (with the reason) otherwise.
rig_ticks_continuous() {
  cat "$@" | tr -d '\r' | sed -n 's/.*VIREO-TICK \([0-9]*\) up=\([0-9.]*\).*/\1 \2/p' |
    awk '{ if ($1 != NR) { print "tick " NR " is " $1; bad = 1; exit 1 }
           if ($2 + 0 < last) { print "uptime went back at tick " $1; bad = 1; exit 1 }
           last = $2 + 0 }
         END { if (!bad) print NR }'
}

# rig_reap PID: waits for the background process PID at most RIG_TIMEOUT
# seconds (then kills it); sets RIG_REAP_RC to its exit code or "timeout".
rig_reap() {
  local left=$RIG_TIMEOUT
  while kill -0 "$1" 2>/dev/null && [ "$left" -gt 0 ]; do sleep 1; left=$((left - 1)); done
  if kill -0 "$1" 2>/dev/null; then
    kill -9 "$1"
    wait "$1" 2>/dev/null
    RIG_REAP_RC=timeout
    return
  fi
  wait "$1"
  RIG_REAP_RC=$?
}
