#!/usr/bin/env bash
# Build the arm64 guest initramfs: the x86_64 rig's guest initramfs
# (tests/rig/build-guest-initramfs.sh: its /init prints
# "VIREO-GUEST-INIT cpus=N mem_kb=M kernel=R", runs the vireo.disknet= check,
# then resets), made from arm64 binaries, plus a front /init for the aarch64
# jobs:
#   vireo.poweroff      the report line, then power off (PSCI SYSTEM_OFF)
#                       instead of the reset (PSCI SYSTEM_RESET)
#   vireo.ticks=N       the report line, then one "VIREO-TICK i up=S" line a
#                       second for N seconds (the snapshot and migration jobs
#                       watch the count and the guest's uptime go on), then
#                       power off
# Anything else runs the shared /init (renamed /init.common) unchanged.
#
#   ARM64_ROOT=target/build/debian-arm64 tests/rig-aarch64/build-guest-initramfs.sh OUT.cpio.gz
#
# ARM64_ROOT is initramfs/fetch-debian-arch.sh's unpacked Debian arm64 tree
# (its static busybox). mkfs.ext4 and the glibc it links are unpacked from
# Debian's arm64 packages into ARM64_ROOT/e2fs (once; apt-get download).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }
out=$1
arm64_root=${ARM64_ROOT:-$repo/target/build/debian-arm64}
log() { echo "[guest-initramfs-arm64] $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

[[ -x $arm64_root/bin/busybox ]] || die "no $arm64_root/bin/busybox (make appliance-arm64-debs)"

# --- mkfs.ext4 for arm64, with the libraries it links, from Debian ---
e2fs=$arm64_root/e2fs
e2fs_pkgs=(e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6)
if [[ ! -x $e2fs/sbin/mke2fs ]]; then
  log "unpacking ${e2fs_pkgs[*]} (arm64)"
  rm -rf "$e2fs" && mkdir -p "$e2fs/debs"
  (cd "$e2fs/debs" && apt-get download -q "${e2fs_pkgs[@]/%/:arm64}") >/dev/null 2>&1 ||
    die "apt-get download of ${e2fs_pkgs[*]} (arm64) failed; is arm64 in dpkg's architectures?"
  for deb in "$e2fs"/debs/*.deb; do dpkg-deb -x "$deb" "$e2fs"; done
  rm -rf "$e2fs/debs"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vireo-guest-arm64.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# The shared builder with arm64 binaries. It copies mkfs.ext4's libraries
# through ldd, which cannot read an arm64 binary: they are added below.
base=$stage/base.cpio.gz
BUSYBOX=$arm64_root/bin/busybox MKFS_EXT4=$e2fs/sbin/mke2fs E2FSCK=$e2fs/sbin/e2fsck \
  "$repo/tests/rig/build-guest-initramfs.sh" "$base" >/dev/null 2>&1 ||
  die "tests/rig/build-guest-initramfs.sh failed"
mkdir "$stage/root"
(cd "$stage/root" && gzip -dc "$base" | cpio --quiet -id --no-absolute-filenames)
root=$stage/root
mv "$root/init" "$root/init.common"

# mke2fs picks ext4 from its name (mkfs.ext4) and /etc/mke2fs.conf.
mkdir -p "$root/lib/aarch64-linux-gnu" "$root/etc"
cp -L "$e2fs"/lib/ld-linux-aarch64.so.1 "$root/lib/"
for lib in libc.so.6 libext2fs.so.2 libcom_err.so.2 libblkid.so.1 libuuid.so.1 libe2p.so.2; do
  src=$(find "$e2fs" -name "$lib" | head -n1)
  [[ -n $src ]] || die "no $lib in the unpacked arm64 packages"
  cp -L "$src" "$root/lib/aarch64-linux-gnu/"
done
[[ -f $e2fs/etc/mke2fs.conf ]] && cp "$e2fs/etc/mke2fs.conf" "$root/etc/"

cat >"$root/init" <<'INIT'
#!/bin/sh
# Vireo arm64 guest front /init: vireo.poweroff and vireo.ticks=N, else the
# shared /init.common (see tests/rig-aarch64/build-guest-initramfs.sh).
bb=/bin/busybox
$bb mount -t proc proc /proc
cmdline=$($bb cat /proc/cmdline)
ticks=$(echo "$cmdline" | $bb sed -n 's/.*vireo\.ticks=\([0-9]*\).*/\1/p')
case " $cmdline " in *" vireo.poweroff "*) off=1 ;; *) off= ;; esac
if [ -z "$off$ticks" ]; then
  $bb umount /proc
  exec /init.common
fi
$bb mount -t sysfs sysfs /sys
cpus=$($bb awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { split($i, r, "-");
         n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }' /sys/devices/system/cpu/online)
mem_kb=$($bb awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
echo "VIREO-GUEST-INIT cpus=$cpus mem_kb=$mem_kb kernel=$($bb uname -r)" >/dev/console
i=0
while [ "$i" -lt "${ticks:-0}" ]; do
  $bb sleep 1
  i=$((i + 1))
  read -r up _ </proc/uptime
  echo "VIREO-TICK $i up=$up" >/dev/console
done
$bb poweroff -f
while :; do $bb sleep 1; done
INIT
chmod 755 "$root/init"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 >"$out.tmp"
mv "$out.tmp" "$out"
log "$out ($(du -h "$out" | cut -f1))"
