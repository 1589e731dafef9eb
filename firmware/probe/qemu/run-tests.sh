#!/usr/bin/env bash
# Boot the probe under QEMU (TCG, microvm) in several shapes and check its
# report. PVH: the probe ELF itself as -kernel. Linux 64-bit: the
# `linux64-only` build, entered through linux64-shim.S (needs GNU as/ld;
# skipped without them).
#
#   firmware/probe/qemu/run-tests.sh            # from anywhere
#   KEEP_LOGS=1 ... keeps the serial logs in the printed directory
#
# Ends with "N passed, M failed" and exits non-zero if anything failed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
crate=$(dirname "$here")
work=$(mktemp -d /tmp/vireo-probe-qemu.XXXXXX)
elf=target/x86_64-unknown-none/release/vireo-probe
passed=0
failed=0

build() { # $1: output path, rest: extra cargo args
    local out=$1
    shift
    cargo build --quiet --release --manifest-path "$crate/Cargo.toml" \
        --target x86_64-unknown-none "$@" || exit 1
    cp "$crate/$elf" "$out"
}

# Default variant last, so the usual ELF path holds it afterwards.
build "$work/probe-linux64" --features linux64-only
build "$work/probe-pvh"

have_shim=0
if command -v as >/dev/null && command -v ld >/dev/null; then
    entry=$(readelf -h "$work/probe-linux64" | awk '/Entry point/ { print $4 }')
    as --64 -o "$work/shim.o" "$here/linux64-shim.S" &&
        ld -m elf_x86_64 --no-warn-rwx-segments -T "$here/linux64-shim.ld" \
            --defsym PROBE_ENTRY="$entry" -o "$work/shim.elf" "$work/shim.o" &&
        have_shim=1
fi

# check NAME LOG QEMU_STATUS: the report must be complete and say ok.
check() {
    local name=$1 log=$2 status=$3 boot=$4 cpus=$5 mem=$6
    local why=""
    grep -qx "PROBE start boot=$boot" "$log" || why="no start line for $boot"
    grep -qx "PROBE cmdline probe test $name" "$log" || why="${why:-cmdline not echoed}"
    grep -qx "PROBE cpus online=$cpus" "$log" || why="${why:-cpus online is not $cpus}"
    grep -qE "^PROBE memtest regions=[0-9]+ probes=[0-9]+ ok$" "$log" || why="${why:-memtest not ok}"
    grep -qx "PROBE done ok" "$log" || why="${why:-no done ok}"
    # microvm splits RAM at 3 GiB; above that the map must go past 4 GiB.
    if [ "$mem" = 4G ]; then
        grep -qE "^PROBE e820 0x100000000 0x[0-9a-f]+ 1$" "$log" || why="${why:-no RAM above 4 GiB}"
    fi
    # isa-debug-exit: QEMU exits with (value << 1) | 1; ok is 0.
    [ "$status" = 1 ] || why="${why:-qemu exit status $status}"
    if [ -z "$why" ]; then
        passed=$((passed + 1))
        echo "ok   $name"
        echo "RESULT PASS probe-qemu/$name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: $why (log: $log)"
        echo "RESULT FAIL probe-qemu/$name: $why"
        KEEP_LOGS=1
    fi
}

# run NAME BOOT MEM CPUS: boot one VM and check its report.
run() {
    local name=$1 boot=$2 mem=$3 cpus=$4
    local log="$work/$name.log" start end
    local -a kernel
    if [ "$boot" = pvh ]; then
        kernel=(-kernel "$work/probe-pvh")
    else
        kernel=(-kernel "$work/shim.elf" -device "loader,file=$work/probe-linux64")
    fi
    start=$(date +%s%N)
    timeout 300 qemu-system-x86_64 -accel tcg -machine microvm -cpu max \
        -m "$mem" -smp "$cpus" -nographic -no-reboot "${kernel[@]}" \
        -append "probe test $name" \
        -device isa-debug-exit,iobase=0xf4,iosize=4 </dev/null >"$log" 2>&1
    local status=$?
    end=$(date +%s%N)
    echo "     $name: $(((end - start) / 1000000)) ms"
    check "$name" "$log" "$status" "$boot" "$cpus" "$mem"
}

for shape in "256M 4" "256M 1" "256M 8" "64M 4" "1G 4" "4G 4"; do
    set -- $shape
    run "pvh-$1-smp$2" pvh "$1" "$2"
done
if [ "$have_shim" = 1 ]; then
    for shape in "256M 4" "64M 1" "4G 8"; do
        set -- $shape
        run "linux64-$1-smp$2" linux64 "$1" "$2"
    done
else
    echo "skip linux64: GNU as/ld not found"
    echo "RESULT SKIP probe-qemu/linux64: GNU as/ld not found (binutils)"
fi

if [ "${KEEP_LOGS:-0}" = 1 ]; then
    echo "logs: $work"
else
    rm -rf "$work"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
