# linux-debian-1: Debian's stock arm64 kernel (the rig's own, decompressed)
# to /init on 1 vCPU with 512 MiB.
. /rig/lib.sh; . /rig/lib-aarch64.sh
rig_linux "$DEBIAN_KERNEL" 1 512
