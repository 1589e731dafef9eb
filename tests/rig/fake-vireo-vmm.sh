#!/bin/sh
# Stand-in for vireo-vmm, used only to test the rig's plumbing (job scripts,
# timing, pass/fail checks) while no real VMM binary exists. It speaks the
# vireo-vmm command line, boots nothing, and prints the line a real guest
# would print. Runs under busybox sh inside the rig.
cpus=1 mem=512M kernel=
while [ $# -gt 0 ]; do
  case $1 in
    --cpus) cpus=$2; shift 2 ;;
    --memory) mem=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --initrd|--cmdline|--serial) shift 2 ;;
    *) echo "fake-vireo-vmm: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -r "$kernel" ] || { echo "fake-vireo-vmm: cannot read kernel '$kernel'" >&2; exit 1; }
# Pretend to boot for a moment, so the timing path is exercised.
sleep 1
echo "VIREO-GUEST-INIT cpus=$cpus mem_kb=$(( ${mem%M} * 1024 )) kernel=fake"
exit 0
