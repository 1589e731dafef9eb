#!/bin/sh
# Reference VMM for the rig: speaks the vireo-vmm command line and runs the
# guest with QEMU (microvm machine, accel=kvm on the rig's nested /dev/kvm).
# It exists to prove the rig end to end and to give a baseline time to compare
# vireo-vmm against; tests/rig/build-rig-initramfs-qemuref.sh puts it in.
# Runs under busybox sh inside the rig.
cpus=1 mem=512M kernel='' initrd='' cmdline='' serial=stdio
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2 ;;
    --initrd) initrd=$2 ;;
    --cmdline) cmdline=$2 ;;
    --cpus) cpus=$2 ;;
    --memory) mem=$2 ;;
    --serial) serial=$2 ;;
    *) echo "qemu-ref-vmm: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ "$serial" = stdio ] || { echo "qemu-ref-vmm: only --serial stdio" >&2; exit 2; }

# microvm has no i8042, so reboot=k cannot reset it; the kernel's fallback
# (a jump to the BIOS reset vector) may leave QEMU running. A triple fault
# (reboot=t) is a reset that -no-reboot turns into an exit.
cmdline=$(echo "$cmdline" | sed 's/reboot=k/reboot=t/')

set -- -machine microvm,accel=kvm -cpu host -smp "$cpus" -m "$mem" \
  -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
  -kernel "$kernel"
[ -z "$initrd" ] || set -- "$@" -initrd "$initrd"
[ -z "$cmdline" ] || set -- "$@" -append "$cmdline"
exec qemu-system-x86_64 "$@"
