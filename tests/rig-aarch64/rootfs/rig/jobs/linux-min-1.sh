# linux-min-1: the minimal arm64 guest (kernel-config/guest-arm64.config) to
# /init on 1 vCPU with 512 MiB; the guest resets (PSCI SYSTEM_RESET), the VMM exits 0.
. /rig/lib.sh; . /rig/lib-aarch64.sh
rig_linux "$MIN_KERNEL" 1 512
