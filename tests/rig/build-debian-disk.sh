#!/usr/bin/env bash
# A Debian system disk as a cloud image would be, built from Debian packages:
# debootstrap (minbase) with Debian's kernel, systemd and an initramfs that
# carries the virtio-mmio and virtio-blk drivers vireo-vmm's disks need; one
# GPT partition (ext4, made with mkfs.ext4 -d: no mount, no loop device);
# written as a compressed qcow2. The agent boots it from its own disk
# (docs/vms.md, "Boot from the VM's own disk"): no boot loader is installed.
#
#   tests/rig/build-debian-disk.sh OUT.qcow2
#
# Root (debootstrap). Cached: the disk is rebuilt only when this script is
# newer than it (FORCE=1 rebuilds). About 3-6 minutes and 150 MB of
# downloads the first time. Login: root, no password (a test disk).
# Environment: DEBIAN_MIRROR (default: the first deb.debian.org-style URI
# in /etc/apt/sources.list.d/debian.sources, else deb.debian.org),
# DEBIAN_SUITE (bookworm).
set -euo pipefail

out=${1:?usage: $0 OUT.qcow2}
suite=${DEBIAN_SUITE:-bookworm}
if [[ -s $out && $out -nt $0 && -z ${FORCE:-} ]]; then
  echo "[debian-disk] $out is up to date"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "[debian-disk] debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-debian-disk.XXXXXX")
trap 'umount -l "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
root=$work/root

echo "[debian-disk] debootstrap $suite (minbase) from $mirror"
debootstrap --variant=minbase --include=systemd-sysv,udev,initramfs-tools,linux-image-amd64,kmod,procps \
  "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; exit 1; }

echo "[debian-disk] configuring"
echo vireo-debian >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vireo-debian\n' >"$root/etc/hosts"
echo '/dev/vda1 / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
chroot "$root" passwd -d root >/dev/null
# virtio-mmio devices are announced on the kernel command line
# (virtio_mmio.device=...); the initramfs must load the transport and the
# block driver before it looks for the root.
printf 'virtio_mmio\nvirtio_blk\next4\n' >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
chroot "$root" update-initramfs -u -k all >"$work/initramfs.log" 2>&1 || { cat "$work/initramfs.log" >&2; exit 1; }
umount "$root/proc"
# The journal on the console too, so the VM's log shows the orderly shutdown.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\n' >"$root/etc/systemd/journald.conf.d/console.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

echo "[debian-disk] ext4 image and GPT disk"
size_mib=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 256 ))
mkfs.ext4 -q -F -L debian-root -d "$root" "$work/root.ext4" "${size_mib}M"
disk=$work/disk.raw
truncate -s $(( (size_mib + 2) * 1024 * 1024 )) "$disk"
# One partition from 1 MiB: sgdisk is not everywhere; python3 writes the
# protective MBR and both GPT headers (tests/rig/gpt.py).
python3 "$(dirname "$0")/gpt.py" "$disk" 2048 $(( size_mib * 2048 )) 12345678-9abc-def0-1122-334455667788
dd if="$work/root.ext4" of="$disk" bs=1M seek=1 conv=notrunc status=none
mkdir -p "$(dirname "$out")"
qemu-img convert -c -O qcow2 "$disk" "$out.tmp"
mv "$out.tmp" "$out"
echo "[debian-disk] $out: $(du -h "$out" | cut -f1) ($(ls /boot 2>/dev/null | head -0)kernel $(ls "$root/boot" | grep -m1 vmlinuz))"
