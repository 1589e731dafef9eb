# linux-min-4: the minimal guest kernel on 4 vCPUs (more vCPUs than the outer
# VM has: the inner guest must still bring all of them up). Then the guest's
# init (busybox, vireo.cad) reboots on PUT /vm/ctrl-alt-del and vireo-vmm
# exits 0.
. /rig/lib.sh
rig_boot_cad /guest/vmlinux 4
rig_expect_guest 4 512 && rig_expect_cad
