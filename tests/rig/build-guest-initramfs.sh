#!/usr/bin/env bash
# Build the guest initramfs: static busybox plus an /init that prints one line
#
#   VIREO-GUEST-INIT cpus=<online CPUs> mem_kb=<MemTotal> kernel=<uname -r>
#
# on /dev/console and then resets the machine (or, with `vireo.cad`, waits
# for Ctrl-Alt-Del under busybox init). With `vireo.disknet=ADDR/LEN,PEER`
# on the kernel command line it first makes an ext4 filesystem on /dev/vda,
# writes a file, reads it back after a remount, pings PEER from eth0 at ADDR,
# and prints `VIREO-DISKNET mkfs=ok write=ok read=ok ping=ok` (or `...=fail`).
# `vireo.ticks=N` (and `vireo.tickdisk=ADDR/LEN`) count seconds for the
# snapshot and migration jobs; `vireo.netidle=`, `vireo.netserve=` and
# `vireo.netbench=` are for the network bench and the appliance cluster
# test (see /init below).
#
#   tests/rig/build-guest-initramfs.sh OUT.cpio.gz
#
# It works with the minimal guest kernel (kernel-config/guest-x86_64.config)
# and with Debian's stock kernel: /init mounts devtmpfs itself (the kernel's
# DEVTMPFS_MOUNT does not apply to an initramfs) and the archive carries a
# /dev/console node, which the kernel opens for init's stdio before /init runs.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }
out=$1
busybox=${BUSYBOX:-/bin/busybox}

# A dynamically linked busybox would need a libc inside the initramfs.
# (A static binary has no PT_INTERP program header.)
if [[ ! -x $busybox ]] || readelf -lW "$busybox" | grep -q 'Requesting program interpreter'; then
  echo "$busybox is not a static binary; install busybox-static (tests/rig/deps.sh)" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
stage=$(mktemp -d "${TMPDIR:-/tmp}/vireo-guest-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,dev,proc,sys}
cp "$busybox" "$stage/bin/busybox"
# Only sh is linked; /init calls every other applet through busybox itself.
ln -s busybox "$stage/bin/sh"
# Character device 5:1 is /dev/console. mknod needs root (as on CI); cpio
# then records the node in the archive.
mknod -m 600 "$stage/dev/console" c 5 1

# stage_with_libs PROGRAM DEST: a dynamically linked program at DEST in the
# archive, with the libraries and loader it needs at the paths ldd names.
stage_with_libs() {
  local lib
  cp -L "$1" "$stage$2"
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L "$lib" "$stage$lib"
  done
}

# mkfs.ext4 (e2fsprogs) for the vireo.disknet check; e2fsck for the
# migration job's check of the filesystem.
mkfs=${MKFS_EXT4:-/sbin/mkfs.ext4}
fsck=${E2FSCK:-/sbin/e2fsck}
mkdir -p "$stage/sbin" "$stage/etc" "$stage/mnt"
for pair in "$mkfs:mkfs.ext4" "$fsck:e2fsck"; do
  tool=${pair%:*}
  [[ -x $tool ]] || { echo "$tool missing; install e2fsprogs" >&2; exit 1; }
  stage_with_libs "$tool" "/sbin/${pair##*:}"
done
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$stage/etc/"

# GUEST_NET_TOOLS=1: iperf3 and sockperf (Debian's, with their libraries)
# for the network bench (vireo.netbench=, rig job bench-net). Only in the
# bench's own initramfs: 4 MB more would slow every other job's boot.
if [[ ${GUEST_NET_TOOLS:-0} == 1 ]]; then
  mkdir -p "$stage/usr/bin" "$stage/tmp"
  for tool in iperf3 sockperf; do
    path=$(command -v "$tool") || { echo "$tool missing; install it (tests/rig/deps.sh)" >&2; exit 1; }
    stage_with_libs "$path" "/usr/bin/$tool"
  done
fi

cat >"$stage/init" <<'EOF'
#!/bin/sh
# Vireo guest /init: report what the guest sees, then reset.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null

# Count online CPUs from the sysfs range list ("0-3", "0,2-3", "0");
# fall back to nproc if sysfs lacks it.
cpus=
if [ -r /sys/devices/system/cpu/online ]; then
  cpus=$($bb awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { split($i, r, "-");
           n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }' /sys/devices/system/cpu/online)
fi
[ -n "$cpus" ] || cpus=$($bb nproc)
mem_kb=$($bb awk '/^MemTotal:/ { print $2 }' /proc/meminfo)

echo "VIREO-GUEST-INIT cpus=$cpus mem_kb=$mem_kb kernel=$($bb uname -r)" >/dev/console

# vireo.disknet=ADDR/LEN,PEER: ext4 on the first virtio disk, then a ping
# over the first virtio NIC (tests/rig/rootfs/rig/jobs/linux-disk-net.sh).
disknet=$($bb sed -n 's/.*vireo\.disknet=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$disknet" ]; then
  r_mkfs=fail r_write=fail r_read=fail r_ping=fail
  /sbin/mkfs.ext4 -q -F /dev/vda >/dev/console 2>&1 && r_mkfs=ok
  if [ $r_mkfs = ok ] && $bb mount -t ext4 /dev/vda /mnt; then
    # 4 MiB of a pattern no zeroed disk would show: the kernel's random bytes.
    $bb dd if=/dev/urandom of=/mnt/data bs=64k count=64 2>/dev/null &&
      want=$($bb sha256sum /mnt/data) && $bb sync && r_write=ok
    $bb umount /mnt
    # Dropped from the page cache by the unmount: the reread comes from the disk.
    if $bb mount -t ext4 -o ro /dev/vda /mnt; then
      [ "$($bb sha256sum /mnt/data)" = "$want" ] && r_read=ok
      $bb umount /mnt
    fi
  fi
  # One echo per ping: busybox ping times its count with POSIX timers, which
  # the minimal kernel leaves out, so `-c 3` would wait forever after one.
  if $bb ip link set eth0 up && $bb ip addr add "${disknet%,*}" dev eth0; then
    n=0
    for i in 1 2 3; do
      $bb ping -c 1 "${disknet#*,}" >/dev/console 2>&1 && n=$((n + 1))
    done
    [ $n = 3 ] && r_ping=ok
  fi
  echo "VIREO-DISKNET mkfs=$r_mkfs write=$r_write read=$r_read ping=$r_ping" >/dev/console
fi

# vireo.ticks=N: one "VIREO-TICK i up=S" line a second (S: the guest's
# uptime), N of them, for the snapshot and migration jobs (a continuous
# count across VMMs means nothing was lost or run twice). With
# vireo.tickdisk=ADDR/LEN too: an ext4 filesystem on /dev/vda and eth0 at
# ADDR first; each tick appends a line to a file and syncs it (disk writes
# while the guest moves), and at the end the guest unmounts it and prints
# `VIREO-TICKDISK lines=L fsck=clean|dirty` from e2fsck -fn.
ticks=$($bb sed -n 's/.*vireo\.ticks=\([0-9]*\).*/\1/p' /proc/cmdline)
tickdisk=$($bb sed -n 's/.*vireo\.tickdisk=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$ticks" ]; then
  if [ -n "$tickdisk" ]; then
    /sbin/mkfs.ext4 -q -F /dev/vda >/dev/console 2>&1 && $bb mount -t ext4 /dev/vda /mnt
    $bb ip link set eth0 up && $bb ip addr add "$tickdisk" dev eth0
  fi
  i=1
  while [ "$i" -le "$ticks" ]; do
    [ -n "$tickdisk" ] && echo "tick $i" >>/mnt/ticks && $bb sync
    echo "VIREO-TICK $i up=$($bb cut -d' ' -f1 /proc/uptime)" >/dev/console
    $bb sleep 1
    i=$((i + 1))
  done
  if [ -n "$tickdisk" ]; then
    lines=$($bb wc -l </mnt/ticks)
    $bb umount /mnt
    state=dirty
    /sbin/e2fsck -fn /dev/vda >/dev/console 2>&1 && state=clean
    echo "VIREO-TICKDISK lines=$lines fsck=$state" >/dev/console
  fi
fi

# eth0 up at ADDR/LEN, with a default route through GW when one is given.
net_up() {
  $bb mkdir -p /tmp
  $bb ip link set lo up
  $bb ip link set eth0 up && $bb ip addr add "$1" dev eth0
  [ -z "$2" ] || $bb ip route add default via "$2"
}

# vireo.netserve=ADDR/LEN: the peer of another guest's vireo.netbench=
# (rig job bench-net-layers): iperf3 and sockperf servers on eth0 at ADDR,
# then wait to be stopped.
netserve=$($bb sed -n 's/.*vireo\.netserve=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$netserve" ]; then
  net_up "$netserve" ""
  /usr/bin/iperf3 -s -D
  /usr/bin/sockperf server --tcp -i "${netserve%/*}" -p 11111 >/dev/null 2>&1 &
  echo "VIREO-NETSERVE ready" >/dev/console
  while :; do $bb sleep 3600; done
fi

# vireo.netidle=ADDR/LEN: eth0 up at ADDR, answering pings, until the VM is
# stopped (the appliance cluster test pings it while it migrates).
netidle=$($bb sed -n 's/.*vireo\.netidle=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$netidle" ]; then
  net_up "$netidle" ""
  echo "VIREO-NETIDLE up $($bb ip -o -4 addr show eth0 | $bb awk '{ print $4 }')" >/dev/console
  while :; do $bb sleep 3600; done
fi

# vireo.netbench=ADDR/LEN,PEER,SECS[,GW]: TCP throughput and request rate
# between eth0 at ADDR and PEER, which runs `iperf3 -s` and `sockperf
# server` (the rig host: tests/rig/rootfs/rig/jobs/bench-net.sh; a
# namespace or another guest: bench-net-layers.sh); SECS seconds each:
# guest -> peer and peer -> guest (iperf3 -R), then TCP ping-pong. Prints
#   VIREO-NETBENCH tx_mbps=T rx_mbps=R rr_per_s=Q
# (a figure is "fail" when its tool failed; the tool's output is printed).
netbench=$($bb sed -n 's/.*vireo\.netbench=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$netbench" ]; then
  nb_addr=${netbench%%,*} nb_rest=${netbench#*,}
  nb_peer=${nb_rest%%,*} nb_rest=${nb_rest#*,}
  nb_secs=${nb_rest%%,*} nb_gw=
  [ "$nb_rest" = "$nb_secs" ] || nb_gw=${nb_rest#*,}
  net_up "$nb_addr" "$nb_gw"
  # iperf3's receiver line: "[  5] 0.00-5.00 sec 120 MBytes 201 Mbits/sec receiver".
  mbps() {
    $bb awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
             END { if (v == "") { print "fail"; exit 1 } print v }' /tmp/nb.out
  }
  # Bounded, so that a peer that does not answer ends in "fail" and the
  # tool's output, not in a guest that never reports.
  nb_limit=$((nb_secs * 3 + 20))
  nb_run() { $bb timeout "$nb_limit" "$@" >/tmp/nb.out 2>&1; }
  nb_run /usr/bin/iperf3 -c "$nb_peer" -t "$nb_secs" -f m --connect-timeout 10000
  tx=$(mbps) || $bb cat /tmp/nb.out >/dev/console
  nb_run /usr/bin/iperf3 -c "$nb_peer" -t "$nb_secs" -f m --connect-timeout 10000 -R
  rx=$(mbps) || $bb cat /tmp/nb.out >/dev/console
  # sockperf: "[Valid Duration] RunTime=4.990 sec; SentMessages=N; ReceivedMessages=M".
  nb_run /usr/bin/sockperf ping-pong --tcp -i "$nb_peer" -p 11111 -t "$nb_secs"
  rr=$($bb awk '/Valid Duration/ { for (i = 1; i <= NF; i++) {
                   if ($i ~ /^RunTime=/) { sub(/RunTime=/, "", $i); t = $i + 0 }
                   if ($i ~ /^ReceivedMessages=/) { sub(/ReceivedMessages=/, "", $i); n = $i + 0 } } }
               END { if (t > 0 && n > 0) printf "%d\n", n / t; else { print "fail"; exit 1 } }' /tmp/nb.out) ||
    $bb cat /tmp/nb.out >/dev/console
  echo "VIREO-NETBENCH tx_mbps=$tx rx_mbps=$rx rr_per_s=$rr" >/dev/console
fi

# `vireo.dmesg`: the kernel's log after the line (for boot profiles with
# printk.time=1 initcall_debug; the console itself stays quiet, so printing
# it does not slow the boot being measured).
if $bb grep -qw vireo.dmesg /proc/cmdline; then
  echo "VIREO-DMESG-BEGIN" >/dev/console
  $bb dmesg >/dev/console
  echo "VIREO-DMESG-END" >/dev/console
fi

# `vireo.cad`: hand over to busybox init, which turns Ctrl-Alt-Del off in the
# kernel and gets SIGINT for it instead, and reboots on it the way a
# distribution's init does (its ctrlaltdel action). The VMM's
# PUT /vm/ctrl-alt-del then ends the run (tests/rig/rootfs/rig/lib.sh).
if $bb grep -qw vireo.cad /proc/cmdline; then
  $bb mkdir -p /etc
  {
    echo "::sysinit:/bin/busybox echo VIREO-CAD-READY"
    echo "::ctrlaltdel:/bin/busybox sh -c 'echo VIREO-GUEST-CAD; /bin/busybox sync; /bin/busybox reboot -f'"
  } >/etc/inittab
  exec $bb init
fi

# `vireo.shell` on the command line (make run-vm GUEST=linux): an interactive
# shell instead of the reset; leaving it resets the guest.
if $bb grep -qw vireo.shell /proc/cmdline; then
  $bb --install -s /bin
  echo "vireo guest shell: busybox applets are in /bin; exit to reset the guest" >/dev/console
  $bb setsid $bb cttyhack /bin/sh </dev/console >/dev/console 2>&1
fi

# The guest has no ACPI, so "poweroff" has nothing to call; a reboot with the
# guest's reboot=k resets through the i8042 controller, which the VMM treats
# as the end of the run (QEMU with -no-reboot exits as well).
$bb sync
$bb reboot -f
# Should the reset not happen, do not let init exit (that would panic).
while :; do $bb sleep 1; done
EOF
chmod 755 "$stage/init"

# newc is the only cpio format the kernel reads. Owners are forced to root.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -9 >"$out.tmp"
mv "$out.tmp" "$out"
echo "guest initramfs: $out ($(du -h "$out" | cut -f1))"
