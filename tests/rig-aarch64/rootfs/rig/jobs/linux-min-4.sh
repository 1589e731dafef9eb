# linux-min-4: the minimal arm64 guest with 4 vCPUs (secondaries started by
# the guest's PSCI CPU_ON, one GICv3 redistributor each) and 1 GiB.
. /rig/lib.sh; . /rig/lib-aarch64.sh
rig_linux "$MIN_KERNEL" 4 1024
