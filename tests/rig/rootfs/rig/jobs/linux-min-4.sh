# linux-min-4: the minimal guest kernel on 4 vCPUs (more vCPUs than the outer
# VM has: the inner guest must still bring all of them up).
. /rig/lib.sh
rig_vmm_run --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz \
  --cmdline "$RIG_GUEST_CMDLINE" --cpus 4 --memory 512M --serial stdio
rig_expect_guest 4 512
