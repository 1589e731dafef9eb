# linux-disk-net: the minimal arm64 guest with a virtio-blk disk and a
# virtio-net NIC (virtio-mmio nodes in the FDT, one SPI each) on a tap of the
# rig host: mkfs.ext4, 4 MiB written and read back after a remount, 3 pings
# of the rig host (the shared guest /init's vireo.disknet= check).
. /rig/lib.sh; . /rig/lib-aarch64.sh
disk=/tmp/disk.img
rm -f "$disk"
truncate -s 64M "$disk"
tunctl -t vtap0 >/dev/null
ip addr add 10.0.2.1/24 dev vtap0
ip link set vtap0 up
rig_vmm_run --kernel "$MIN_KERNEL" --initrd "$GUEST_INITRD" \
  --cmdline "$RIG_GUEST_CMDLINE vireo.disknet=10.0.2.15/24,10.0.2.1" \
  --cpus 2 --memory 512M --serial stdio \
  --disk "path=$disk,id=rigdisk" --net tap=vtap0,mac=02:76:69:72:65:01 >/tmp/disknet.out
cat /tmp/disknet.out
rx=$(cat /sys/class/net/vtap0/statistics/rx_packets)
magic=$(dd if="$disk" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
ip link del vtap0 2>/dev/null || tunctl -d vtap0 >/dev/null
rm -f "$disk"
rig_expect_guest 2 512 || exit 1
if ! grep -q "VIREO-DISKNET mkfs=ok write=ok read=ok ping=ok" /tmp/disknet.out; then
  echo "RIG check=fail guest disk/net check: $(grep VIREO-DISKNET /tmp/disknet.out || echo no VIREO-DISKNET line)"
  exit 1
fi
[ "$magic" = 53ef ] || { echo "RIG check=fail no ext4 superblock on the disk image ('$magic')"; exit 1; }
echo "RIG check=ok disknet tap_rx_packets=$rx ext4_magic=$magic"
