#!/usr/bin/env python3
"""Teardown on this host: the probe guest's last console line -> the VMM's exit.

Usage: teardown-probe.py VMM PROBE_ELF LAUNCHES CPUS
The probe resets the machine right after `PROBE done ok`; the time from
reading that line to the VMM's exit is what a supervisor waits for after a
guest's reboot (docs/boot-speed.md, "Teardown after the guest's reset").
"""
import statistics
import subprocess
import sys
import time


def main():
    vmm, probe, launches, cpus = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    teardown, total = [], []
    for _ in range(launches):
        start = time.monotonic()
        p = subprocess.Popen(
            [vmm, "--kernel", probe, "--cpus", cpus, "--memory", "256M"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        last = None
        for line in p.stdout:
            if b"PROBE done" in line:
                last = time.monotonic()
        p.wait()
        end = time.monotonic()
        if last is None:
            print(f"a launch printed no PROBE done line (exit {p.returncode})")
            continue
        teardown.append((end - last) * 1e3)
        total.append((end - start) * 1e3)
    if not teardown:
        sys.exit("no launch finished")
    print(
        f"cpus={cpus} n={len(teardown)} teardown median={statistics.median(teardown):.1f} ms "
        f"min={min(teardown):.1f} max={max(teardown):.1f}; "
        f"launch->exit median={statistics.median(total):.0f} ms"
    )


main()
