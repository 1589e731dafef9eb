# linux-debian: Debian's stock kernel (a bzImage, Linux boot protocol) as the
# guest, with the same initramfs, on 2 vCPUs; its stock keyboard driver
# reboots on PUT /vm/ctrl-alt-del (busybox init, vireo.cad) and vireo-vmm
# exits 0.
. /rig/lib.sh
rig_boot_cad /guest/debian-vmlinuz 2
rig_expect_guest 2 512 && rig_expect_cad
