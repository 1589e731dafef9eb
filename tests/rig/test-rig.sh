#!/usr/bin/env bash
# make test-rig and test-rig-aarch64: every job in one rig boot, then the
# failed ones once more in a second boot (nested KVM under TCG can stall a
# guest on its own; a real regression fails both times). Ends with one
# "RESULT PASS|FAIL PREFIX/JOB" line per job (tests/ci/run-tiers.sh counts
# them; the boots' own RESULT lines are shown as "rig-result:" so nothing
# counts twice); exit 1 if a job failed both times.
#
#   tests/rig/test-rig.sh RUN-RIG JOB...   (RUN-RIG: tests/rig/run-rig.sh or
#                                           tests/rig-aarch64/run-rig.sh)
set -uo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 RUN-RIG JOB..." >&2; exit 2; }
run_rig=$1
shift
out=$(mktemp)
trap 'rm -f "$out" "$out.2"' EXIT

# run JOBS FILE: one rig boot; its RESULT lines go to FILE only.
run() {
  "$run_rig" "$1" 2>&1 | tee "$2" | sed -u 's/^RESULT /rig-result: /'
}

run "$(IFS=,; echo "$*")" "$out"
failed=$(sed -n 's|^RESULT FAIL [^/]*/\([^ ]*\).*|\1|p' "$out" | paste -sd, -)
if [[ -n $failed ]]; then
  echo "test-rig: failed once: $failed; running them again in a new rig boot"
  run "$failed" "$out.2"
fi
grep -a '^RESULT PASS' "$out"
if [[ -n $failed ]]; then
  sed -n 's/^\(RESULT PASS .*\)$/\1 (on the second run)/p' "$out.2"
  grep -a '^RESULT FAIL' "$out.2"
  ! grep -qa '^RESULT FAIL' "$out.2" || exit 1
fi
echo "test-rig: all passed: $*"
