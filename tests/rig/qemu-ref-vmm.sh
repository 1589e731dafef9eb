#!/bin/sh
# Reference VMM for the rig: speaks the vireo-vmm command line and runs the
# guest with QEMU (microvm machine, accel=kvm on the rig's nested /dev/kvm).
# It exists to prove the rig end to end and to give a baseline time to compare
# vireo-vmm against; tests/rig/build-rig-initramfs-qemuref.sh puts it in.
# Runs under busybox sh inside the rig.
#
# --net tap=NAME,mac=MAC becomes a virtio-net device on that tap, its
# backend in QEMU's main loop, or in the host kernel (vhost-net) when
# QEMU_REF_VHOST=on (the network bench runs both).
cpus=1 mem=512M kernel='' initrd='' cmdline='' serial=stdio net=''
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=$2 ;;
    --initrd) initrd=$2 ;;
    --cmdline) cmdline=$2 ;;
    --cpus) cpus=$2 ;;
    --memory) mem=$2 ;;
    --serial) serial=$2 ;;
    --net) net=$2 ;;
    *) echo "qemu-ref-vmm: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ "$serial" = stdio ] || { echo "qemu-ref-vmm: only --serial stdio" >&2; exit 2; }

# microvm has no i8042, so reboot=k cannot reset it; the kernel's fallback
# (a jump to the BIOS reset vector) may leave QEMU running. A triple fault
# (reboot=t) is a reset that -no-reboot turns into an exit.
cmdline=$(echo "$cmdline" | sed 's/reboot=k/reboot=t/')

# With a NIC, no ACPI: microvm then names its virtio-mmio devices on the
# kernel command line (virtio_mmio.device=), as vireo-vmm does, which the
# minimal guest (no ACPI in its kernel) needs to find them.
machine=microvm,accel=kvm
[ -z "$net" ] || machine=$machine,acpi=off
# Called as qemu-ref-vmm-kirq: KVM's IOAPIC, PIC and PIT in the kernel, as
# vireo-vmm has them (microvm's default is the split irqchip: only the local
# APICs in the kernel, the rest in QEMU).
case $0 in *-kirq) machine=$machine,kernel-irqchip=on ;; esac
set -- -machine "$machine" -cpu host -smp "$cpus" -m "$mem" \
  -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
  -kernel "$kernel"
[ -z "$initrd" ] || set -- "$@" -initrd "$initrd"
[ -z "$cmdline" ] || set -- "$@" -append "$cmdline"
if [ -n "$net" ]; then
  tap='' mac=''
  for kv in $(echo "$net" | tr , ' '); do
    case $kv in
      tap=*) tap=${kv#tap=} ;;
      mac=*) mac=${kv#mac=} ;;
      *) echo "qemu-ref-vmm: unknown --net key ${kv%%=*}" >&2; exit 2 ;;
    esac
  done
  [ -n "$tap" ] || { echo "qemu-ref-vmm: --net needs tap=NAME" >&2; exit 2; }
  set -- "$@" -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=${QEMU_REF_VHOST:-off}" \
    -device "virtio-net-device,netdev=n0${mac:+,mac=$mac}"
fi
exec qemu-system-x86_64 "$@"
