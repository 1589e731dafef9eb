#!/usr/bin/env bash
# Runs each test tier (a make target) in turn, on after a failing one, and
# ends with a table of tiers and one line, alone, counting every test:
#   N passed, N failed
# What counts as a test in a tier's output:
#   - cargo's "test result: ... N passed; M failed; K ignored" lines;
#   - "RESULT PASS|FAIL|SKIP name" lines, which the shell-driven tiers print
#     for each boot, job or case;
#   - a tier that prints neither is one test, judged by its exit status.
# A tier that exits non-zero with no failure counted adds one failure, so a
# build error can never pass as "0 failed". Exit status: 0 when nothing failed.
#
#   tests/ci/run-tiers.sh TIER...      (make test passes its tier list)
set -uo pipefail

logdir=${TIER_LOG_DIR:-target/test-logs}
mkdir -p "$logdir"
make=${MAKE:-make}
total_pass=0 total_fail=0 total_skip=0
table=()

count_tier() {
  local log=$1 status=$2
  local cargo_pass cargo_fail cargo_skip mark_pass mark_fail mark_skip
  read -r cargo_pass cargo_fail cargo_skip < <(
    sed -nE 's/.*test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$log" |
      awk '{p += $1; f += $2; s += $3} END {print p + 0, f + 0, s + 0}')
  mark_pass=$(grep -acE '^RESULT PASS ' "$log")
  mark_fail=$(grep -acE '^RESULT FAIL ' "$log")
  mark_skip=$(grep -acE '^RESULT SKIP ' "$log")
  pass=$((cargo_pass + mark_pass))
  fail=$((cargo_fail + mark_fail))
  skip=$((cargo_skip + mark_skip))
  if ((pass + fail + skip == 0)); then
    if ((status == 0)); then pass=1; else fail=1; fi
  elif ((status != 0 && fail == 0)); then
    fail=1
  fi
}

for tier in "$@"; do
  log=$logdir/$tier.log
  echo "===== tier $tier ($(date +%T))"
  start=$SECONDS
  # Tiers share one terminal; the log keeps each tier's own lines for counting.
  $make --no-print-directory "$tier" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  count_tier "$log" "$status"
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  total_skip=$((total_skip + skip))
  verdict=ok
  ((fail > 0)) && verdict=FAILED
  table+=("$(printf '%-32s %-6s %5d passed %4d failed %4d skipped %6ds' "$tier" "$verdict" "$pass" "$fail" "$skip" $((SECONDS - start)))")
done

echo
echo "===== summary (logs: $logdir/)"
printf '%s\n' "${table[@]}"
if ((total_skip > 0)); then
  echo "skipped: $total_skip (listed as RESULT SKIP or cargo's ignored in the logs)"
fi
echo "$total_pass passed, $total_fail failed"
((total_fail == 0))
