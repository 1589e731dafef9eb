#!/usr/bin/env bash
# Summarise a profile-boot console log (tests/rig/rootfs/rig/jobs/profile-boot.sh):
# per VMM, the medians over its launches of
#   - launch -> /init (ms, measured by the rig) and the guest's own clock at
#     "Run /init" and at the end of the i8042 driver's initcall;
#   - the slowest initcalls (initcall_debug), beside the other VMM's figure;
#   - KVM exits by reason, port, MSR, MMIO address and guest RIP;
# and, for each VMM's first launch, the largest gaps between kernel log lines.
#
#   tests/rig/boot-profile.sh target/build/rig/profile-boot-latest.log [VMLINUX]
#
# The minimal guest kernel has no kallsyms, so its initcall_debug lines name
# functions by address; VMLINUX (default $BUILD/guest/vmlinux) names them.
set -euo pipefail

log=${1:?usage: $0 PROFILE-BOOT-CONSOLE-LOG [VMLINUX]}
vmlinux=${2:-${BUILD:-target/build}/guest/vmlinux}
[[ -r $log ]] || { echo "cannot read $log" >&2; exit 1; }
symbols=$(mktemp)
trap 'rm -f "$symbols"' EXIT
[[ ! -r $vmlinux ]] || nm "$vmlinux" | awk '$2 ~ /^[Tt]$/ { print $1, $3 }' >"$symbols"

tr -d '\r' <"$log" | awk -v symbols="$symbols" '
BEGIN { while ((getline line < symbols) > 0) { split(line, f, " "); sym["0x" f[1]] = f[2] } }
function named(s) { return (s in sym) ? sym[s] : s }
function field(s, key,   m) {
  if (match(s, key "=[^ ]*")) return substr(s, RSTART + length(key) + 1, RLENGTH - length(key) - 1)
  return ""
}
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j > 0 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  if (n == 0) return -1
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# SVM exit codes (arch/x86/include/uapi/asm/svm.h) that a boot shows.
function svm(c) {
  if (c == 96) return "INTR"; if (c == 97) return "NMI"; if (c == 100) return "VINTR"
  if (c == 110) return "RDTSC"; if (c == 114) return "CPUID"; if (c == 116) return "IRET"
  if (c == 119) return "PAUSE"; if (c == 120) return "HLT"; if (c == 121) return "INVLPG"
  if (c == 123) return "IOIO"; if (c == 124) return "MSR"; if (c == 127) return "SHUTDOWN"
  if (c == 129) return "VMMCALL"; if (c == 135) return "RDTSCP"; if (c == 137) return "WBINVD"
  if (c == 141) return "XSETBV"; if (c == 1024) return "NPF"; if (c == 1025) return "AVIC_IPI"
  if (c == 1026) return "AVIC_NOACCEL"; if (c >= 64 && c < 96) return sprintf("EXCP_%d", c - 64)
  if (c < 16) return sprintf("READ_CR%d", c); if (c < 32) return sprintf("WRITE_CR%d", c - 16)
  return c
}
/RIG profile begin vmm=/ { vmm = field($0, "vmm"); vmms[vmm] = 1; run = vmm "#" field($0, "i"); runs[vmm]++; prev = -1; next }
/RIG profile end vmm=/ { ms = field($0, "ms_to_init"); if (ms != "") init_ms[vmm] = init_ms[vmm] " " ms
  td = field($0, "teardown_ms"); if (td != "" && td >= 0) down_ms[vmm] = down_ms[vmm] " " td; next }
/VIREO-DMESG-BEGIN/ { indmesg = 1; next }
/VIREO-DMESG-END/ { indmesg = 0; next }
indmesg && /^\[ *[0-9]+\.[0-9]+\]/ {
  ts = substr($0, 2, index($0, "]") - 2) + 0; text = substr($0, index($0, "]") + 2)
  if (prev >= 0 && runs[vmm] == 1) { gapn[vmm]++; gap[vmm, gapn[vmm]] = sprintf("%8.3f s  %9.3f -> %-60.60s (after: %.50s)", ts - prev, prev, text, prevtext) ; gapv[vmm, gapn[vmm]] = ts - prev }
  prev = ts; prevtext = text
  if (text ~ /^Run \/init as init process/) runinit[vmm] = runinit[vmm] " " ts
  if (match(text, /^initcall [^ +]+/)) {
    name = named(substr(text, 10, RLENGTH - 9))
    if (match(text, /after [0-9]+ usecs/)) { us = substr(text, RSTART + 6, RLENGTH - 11); calls[vmm, name] = calls[vmm, name] " " us; names[name] = 1
      if (name == "i8042_init") i8042_end[vmm] = i8042_end[vmm] " " ts }
  }
  next
}
/^RIG hist vmm=/ && /hitcount:/ {
  split($3, a, "="); v = a[2]; ev = $5
  key = $0; sub(/^.*\{ */, "", key); sub(/ *\}.*$/, "", key); gsub(/  +/, " ", key)
  if (ev == "kvm_exit" && match(key, /exit_reason: *[0-9]+/)) { c = key; sub(/.*: */, "", c); key = "exit_reason: " svm(c + 0) }
  hc = $0; sub(/.*hitcount: */, "", hc)
  hits[v, ev, key] = hits[v, ev, key] " " hc; hkeys[ev, key] = 1; events[ev] = 1
  next
}
END {
  n = 0; for (v in vmms) order[++n] = v
  if (n == 0) { print "no profile-boot launches in this log"; exit 1 }
  # vireo first when present.
  for (i = 1; i <= n; i++) if (order[i] == "vireo" && i != 1) { t = order[1]; order[1] = order[i]; order[i] = t }
  printf "%-44s", "median over launches"; for (i = 1; i <= n; i++) printf " %12s", order[i]; print ""
  printf "%-44s", "launches"; for (i = 1; i <= n; i++) printf " %12d", runs[order[i]]; print ""
  printf "%-44s", "launch -> /init line (ms, rig clock)"; for (i = 1; i <= n; i++) printf " %12d", median(init_ms[order[i]]); print ""
  printf "%-44s", "guest clock at Run /init (s)"; for (i = 1; i <= n; i++) printf " %12.3f", median(runinit[order[i]]); print ""
  printf "%-44s", "guest clock at i8042_init end (s)"; for (i = 1; i <= n; i++) printf " %12.3f", median(i8042_end[order[i]]); print ""
  printf "%-44s", "reset -> VMM exit (ms)"; for (i = 1; i <= n; i++) printf " %12d", median(down_ms[order[i]]); print ""
  print "\nslowest initcalls (median usecs; sorted by the first VMM):"
  m = 0
  for (name in names) { d = median(calls[order[1], name]); if (d < 0) d = 0; byd[++m] = d; byn[m] = name }
  for (i = 2; i <= m; i++) { t = byd[i]; tn = byn[i]; for (j = i - 1; j > 0 && byd[j] < t; j--) { byd[j + 1] = byd[j]; byn[j + 1] = byn[j] } byd[j + 1] = t; byn[j + 1] = tn }
  for (i = 1; i <= m && i <= 20; i++) { printf "  %-42s", byn[i]; for (k = 1; k <= n; k++) printf " %12d", median(calls[order[k], byn[i]]); print "" }
  for (ev in events) {
    printf "\nKVM %s (median hits per launch):\n", ev
    c = 0; delete ek; delete ed
    for (hk in hkeys) { split(hk, p, SUBSEP); if (p[1] != ev) continue; tot = 0
      for (k = 1; k <= n; k++) { x = median(hits[order[k], ev, p[2]]); if (x > tot) tot = x }
      ek[++c] = p[2]; ed[c] = tot }
    for (i = 2; i <= c; i++) { t = ed[i]; tn = ek[i]; for (j = i - 1; j > 0 && ed[j] < t; j--) { ed[j + 1] = ed[j]; ek[j + 1] = ek[j] } ed[j + 1] = t; ek[j + 1] = tn }
    for (i = 1; i <= c && i <= 15; i++) { printf "  %-42.42s", ek[i]; for (k = 1; k <= n; k++) printf " %12d", median(hits[order[k], ev, ek[i]]); print "" }
  }
  for (k = 1; k <= n; k++) {
    v = order[k]; printf "\nlargest gaps in the kernel log, %s, first launch:\n", v
    for (r = 1; r <= 12; r++) { best = 0; bi = 0
      for (i = 1; i <= gapn[v]; i++) if (!(v SUBSEP i in used) && gapv[v, i] > best) { best = gapv[v, i]; bi = i }
      if (bi == 0) break; used[v, bi] = 1; print "  " gap[v, bi] }
  }
}'
