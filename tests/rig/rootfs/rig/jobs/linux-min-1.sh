# linux-min-1: the minimal guest kernel (ELF vmlinux, PVH entry) on 1 vCPU.
. /rig/lib.sh
rig_vmm_run --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz \
  --cmdline "$RIG_GUEST_CMDLINE" --cpus 1 --memory 512M --serial stdio
rig_expect_guest 1 512
