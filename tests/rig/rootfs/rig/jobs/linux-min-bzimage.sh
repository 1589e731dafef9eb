# linux-min-bzimage: the minimal guest kernel again, but as a bzImage (Linux
# boot protocol instead of PVH), on 2 vCPUs.
. /rig/lib.sh
rig_vmm_run --kernel /guest/bzImage --initrd /guest/initramfs.cpio.gz \
  --cmdline "$RIG_GUEST_CMDLINE" --cpus 2 --memory 512M --serial stdio
rig_expect_guest 2 512
