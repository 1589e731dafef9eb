# linux-debian-4: Debian's stock arm64 kernel on 4 vCPUs with 1 GiB.
. /rig/lib.sh; . /rig/lib-aarch64.sh
rig_linux "$DEBIAN_KERNEL" 4 1024
