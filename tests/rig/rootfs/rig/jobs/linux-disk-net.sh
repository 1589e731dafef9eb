# linux-disk-net: the minimal Linux guest with a virtio-blk disk and a
# virtio-net NIC on a tap of the rig host. The guest makes an ext4 filesystem
# on the disk, writes 4 MiB, reads them back after a remount, and pings the
# rig host (tests/rig/build-guest-initramfs.sh, vireo.disknet=). Passes when
# the guest reports all four ok, the rig host saw the pings answered on the
# tap, and the disk image carries an ext4 superblock.
. /rig/lib.sh
disk=/tmp/disk.img
rm -f "$disk"
truncate -s 64M "$disk"
# A persistent tap with the rig host's address; vireo-vmm attaches to it by name.
tunctl -t vtap0 >/dev/null
ip addr add 10.0.2.1/24 dev vtap0
ip link set vtap0 up
rig_vmm_run --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz \
  --cmdline "$RIG_GUEST_CMDLINE vireo.disknet=10.0.2.15/24,10.0.2.1" \
  --cpus 1 --memory 512M --serial stdio \
  --disk "path=$disk,id=rigdisk" --net tap=vtap0,mac=02:76:69:72:65:01 >/tmp/disknet.out
cat /tmp/disknet.out
rx=$(cat /sys/class/net/vtap0/statistics/rx_packets)
magic=$(dd if="$disk" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
ip link del vtap0 2>/dev/null || tunctl -d vtap0 >/dev/null
rm -f "$disk"
if ! rig_expect_guest 1 512; then
  exit 1
fi
if ! grep -q "VIREO-DISKNET mkfs=ok write=ok read=ok ping=ok" /tmp/disknet.out; then
  echo "RIG check=fail guest disk/net check: $(grep VIREO-DISKNET /tmp/disknet.out || echo no VIREO-DISKNET line)"
  exit 1
fi
if [ "$magic" != 53ef ]; then
  echo "RIG check=fail no ext4 superblock on the disk image (magic bytes '$magic')"
  exit 1
fi
echo "RIG check=ok disknet tap_rx_packets=$rx ext4_magic=$magic"
