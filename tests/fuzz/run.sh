#!/bin/bash
# Builds the fuzz targets with libFuzzer on the stable toolchain and runs
# each for SECONDS (default 5). Usage: run.sh SECONDS [TARGET...]
#
# Why this works on stable: libfuzzer-sys compiles libFuzzer itself (C++,
# through the cc crate) and only needs the code under test instrumented
# with SanitizerCoverage, which stable rustc exposes as an LLVM pass
# (-Cpasses=sancov-module plus -Cllvm-args). Only AddressSanitizer would
# need nightly's -Zsanitizer; the targets are safe Rust, where what the
# fuzzer finds is panics, overflows (overflow-checks on), debug assertions,
# aborts, hangs (-timeout) and runaway allocations (-rss_limit_mb).
#
# The corpora in tests/fuzz/corpus/TARGET are seeds (small, in git); what a
# run adds goes to target/fuzz/corpus/TARGET; crashes to
# target/fuzz/artifacts/TARGET/. Prints per target: executions, coverage
# (libFuzzer's cov: edges and ft: features), crashes; exits 1 on any crash.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-5}
shift || true
ALL=(virtio_blk virtio_net virtio_mmio qcow2 migration api_http totem totempg votequorum corosync_conf agent_json)
TARGETS=("${ALL[@]}")
if [ $# -gt 0 ]; then TARGETS=("$@"); fi
ROOT=$(cd ../.. && pwd)
OUT=$ROOT/target/fuzz
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# --target keeps RUSTFLAGS off build scripts and proc macros.
cargo build --release --locked --target "$TRIPLE" --target-dir "$OUT/build" --bins
BIN=$OUT/build/$TRIPLE/release

failed=0
printf '%-14s %12s %8s %8s %8s\n' target execs cov ft crashes
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t" "corpus/$t"
  log=$OUT/$t.log
  rc=0
  "$BIN/$t" "$OUT/corpus/$t" "corpus/$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$t/" > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  stats=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1)
  cov=$(echo "$stats" | awk '{print $2}')
  ft=$(echo "$stats" | awk '{print $4}')
  crashes=$(find "$OUT/artifacts/$t" -type f | wc -l)
  printf '%-14s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /'
    echo "RESULT FAIL fuzz-$t"
  else
    echo "RESULT PASS fuzz-$t"
  fi
done
exit $failed
