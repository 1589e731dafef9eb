# linux-debian: Debian's stock kernel (a bzImage, Linux boot protocol) as the
# guest, with the same initramfs, on 2 vCPUs.
. /rig/lib.sh
rig_vmm_run --kernel /guest/debian-vmlinuz --initrd /guest/initramfs.cpio.gz \
  --cmdline "$RIG_GUEST_CMDLINE" --cpus 2 --memory 512M --serial stdio
rig_expect_guest 2 512
