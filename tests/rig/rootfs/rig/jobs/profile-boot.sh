# profile-boot: where a boot's time goes, under each VMM of rig.vmms= (default
# vireo,qemu), rig.runs= launches each (default 5), on rig.cpus= vCPUs (the
# first count given; default 1). The guest boots the bench's command line
# plus "printk.time=1 initcall_debug log_buf_len=1M vireo.dmesg": its console
# stays quiet during the boot, and /init prints the kernel log afterwards
# (between VIREO-DMESG-BEGIN/END). Per launch, KVM's exits are counted by
# reason, port, MSR, MMIO address and guest RIP (RIG hist lines).
# tests/rig/boot-profile.sh summarises the console log on the host.
. /rig/lib.sh
kernel=$(rig_guest_kernel) || { echo "RIG check=fail rig.guest=$RIG_GUEST: want min or debian"; exit 1; }
n=${RIG_RUNS:-5}
cpus=${RIG_CPUS%%,*}
vmms=$(echo "$RIG_VMMS" | tr , ' ')
cmdline="$RIG_GUEST_CMDLINE printk.time=1 initcall_debug log_buf_len=1M vireo.dmesg"
fails=0
i=1
while [ "$i" -le "$n" ]; do
  for v in $vmms; do
    VMM=$(rig_vmm_path "$v") || { echo "RIG check=fail unknown VMM $v"; exit 1; }
    [ -x "$VMM" ] || { echo "RIG check=fail no $VMM"; exit 1; }
    echo "RIG profile begin vmm=$v cpus=$cpus i=$i"
    rig_hist_clear
    rig_vmm_run --kernel "$kernel" --initrd /guest/initramfs.cpio.gz \
      --cmdline "$cmdline" --cpus "$cpus" --memory 512M --serial stdio
    rig_hist_print "vmm=$v i=$i"
    rig_expect_guest "$cpus" 512 || fails=$((fails + 1))
    echo "RIG profile end vmm=$v cpus=$cpus i=$i ms_to_init=$RIG_INIT_MS teardown_ms=${RIG_TEARDOWN_MS:--1}"
  done
  i=$((i + 1))
done
[ "$fails" = 0 ]
