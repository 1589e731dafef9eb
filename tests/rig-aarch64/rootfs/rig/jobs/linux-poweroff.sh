# linux-poweroff: the guest powers off (poweroff -f: PSCI SYSTEM_OFF) after
# its line; the VMM exits 0 at once (the reset path is every other job's).
. /rig/lib.sh; . /rig/lib-aarch64.sh
rig_linux "$MIN_KERNEL" 2 256 vireo.poweroff
