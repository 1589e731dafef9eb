#!/usr/bin/env bash
# Build the Vireo appliance initramfs: everything the node runs, in RAM.
#
#   initramfs/build-initramfs.sh OUT ARCH        (ARCH: x86_64 | aarch64)
#
# Contents: vireo-init as /init (and /sbin/modprobe, the kernel's module
# helper), vireo-agent, vireo, vireo-vmm, vireo-jailer (the agent's
# `--jail auto` confines each VMM with it), vireo-membershipd (static musl
# builds), busybox (for
# the vireo.debug=shell shell only), Debian's nft with its libraries
# (ship-dynamic.sh), and a subset of the kernel's modules
# with modules.dep/alias/softdep regenerated for that subset by depmod.
#
# Environment:
#   KVER           kernel release whose modules to ship (default: the newest
#                  under $MODULES_ROOT/lib/modules)
#   MODULES_ROOT   root holding lib/modules/$KVER (default /; for another
#                  architecture, a `dpkg-deb -x` of its linux-image package)
#   BUSYBOX        static busybox for ARCH (default /bin/busybox)
#   DYNAMIC_ROOT   root holding usr/sbin/nft and its libraries for ARCH
#                  (default /; for another architecture, the same unpacked
#                  packages as MODULES_ROOT)
#   BIN_DIR        directory with prebuilt vireo-init, vireo-agent, vireo,
#                  vireo-vmm, vireo-jailer, vireo-membershipd (default: build
#                  them with cargo)
#   EXTRA_MODULES  more module names to ship
#   PROBE_ELF      the probe guest (docs/probe.md), shipped as
#                  /usr/lib/vireo/probe.elf for the agent's POST /selftest/vmm
#   COMPRESS       zstd (default when installed) or gzip
# The modules_ARCH lists are read through ${!wanted_var}.
# shellcheck disable=SC2034
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

[[ $# -eq 2 ]] || { echo "usage: $0 OUT.cpio.zst ARCH (x86_64|aarch64)" >&2; exit 2; }
out=$1
arch=$2

start=$SECONDS
step=0
steps=6
progress() { step=$((step + 1)); echo "[initramfs $step/$steps +$((SECONDS - start))s] $*"; }
die() { echo "build-initramfs: ERROR: $*" >&2; exit 1; }
warn() { echo "build-initramfs: warning: $*" >&2; }

case $arch in
  x86_64) target=x86_64-unknown-linux-musl triplet=x86_64-linux-gnu ;;
  aarch64) target=aarch64-unknown-linux-musl triplet=aarch64-linux-gnu ;;
  *) die "unknown ARCH $arch (x86_64 or aarch64)" ;;
esac

# What a hypervisor node needs: NICs, storage, KVM, guest networking (tap,
# macvtap, bridge, VLAN, bonding), NAT (nf_tables), the power button, ext4
# for the state disk and the crc32c implementations its softdeps ask for;
# the cluster's fencing watchdog (softdog, or QEMU's i6300esb; docs/cluster.md);
# the NFS client for NFS storage pools (the agent mounts them with mount(2),
# which asks for fs-nfs4 / fs-nfs: docs/storage.md).
modules_common="virtio_pci virtio_net virtio_blk virtio_scsi igb ixgbe
  ahci nvme sd_mod tun macvtap bridge 8021q bonding
  nf_tables nf_nat nft_chain_nat nft_masq nft_nat nft_ct
  button evdev ext4 crc32c_generic kvm softdog nfsv4 nfsv3"
modules_x86_64="e1000 e1000e kvm_amd kvm_intel crc32c-intel i6300esb"
# arm64: KVM is built into Debian's kernel (no module). virtio-mmio for
# device-tree machines; gpio_keys is QEMU virt's power button under a device
# tree; the NICs of arm64 servers and boards (Intel/Broadcom/Mellanox
# PCIe cards, HiSilicon, Cavium ThunderX, Marvell, Realtek); SoC AHCI.
modules_aarch64="virtio_mmio gpio_keys e1000e i40e bnxt_en mlx5_core hns3 nicvf
  thunder_bgx mvpp2 r8169 ahci_platform"
wanted_var=modules_$arch
wanted="$modules_common ${!wanted_var} ${EXTRA_MODULES:-}"

is_static() { ! readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }

# --- 1. binaries ---
progress "binaries ($target)"
if [[ -n ${BIN_DIR:-} ]]; then
  bindir=$BIN_DIR
else
  (cd "$repo" && ${CARGO:-cargo} build --release --target "$target" \
    -p vireo-init -p vireo-agent -p vireo-cli -p vireo-vmm -p vireo-jailer -p vireo-membership)
  bindir=$repo/target/$target/release
fi
for b in vireo-init vireo-agent vireo vireo-vmm vireo-jailer vireo-membershipd; do
  [[ -x $bindir/$b ]] || die "missing $bindir/$b"
  is_static "$bindir/$b" || die "$bindir/$b is dynamically linked; build it for $target"
done
busybox=${BUSYBOX:-/bin/busybox}
[[ -x $busybox ]] && is_static "$busybox" || die "$busybox is not a static busybox (apt-get install busybox-static)"

# --- 2. the tree ---
progress "root tree"
stage=$(mktemp -d "${TMPDIR:-/tmp}/vireo-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,run,tmp,etc,root,usr/bin,var/lib/vireo}
install -m 755 "$bindir/vireo-init" "$stage/init"
ln -s ../init "$stage/sbin/modprobe"
install -m 755 "$bindir/vireo-agent" "$bindir/vireo" "$bindir/vireo-vmm" "$bindir/vireo-jailer" "$bindir/vireo-membershipd" "$stage/usr/bin/"
install -m 755 "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
"$here/ship-dynamic.sh" "${DYNAMIC_ROOT:-/}" "$stage" "$triplet" usr/sbin/nft
if [[ -n ${PROBE_ELF:-} ]]; then
  [[ -s $PROBE_ELF ]] || die "PROBE_ELF=$PROBE_ELF: no such file (make probe)"
  install -D -m 644 "$PROBE_ELF" "$stage/usr/lib/vireo/probe.elf"
fi
# The kernel opens /dev/console for init's stdio before /init can mount
# devtmpfs, so the node must be in the archive (mknod needs root).
mknod -m 600 "$stage/dev/console" c 5 1
version=$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo unknown)
printf 'NAME="Vireo"\nID=vireo\nVERSION_ID="%s"\nPRETTY_NAME="Vireo hypervisor node (%s)"\n' \
  "$version" "$version" >"$stage/etc/os-release"

# --- 3. kernel modules and their dependencies ---
mroot=${MODULES_ROOT:-/}
kver=${KVER:-$(ls -1 "$mroot/lib/modules" 2>/dev/null | sort -V | tail -n1)}
moddir=$mroot/lib/modules/$kver
[[ -n $kver && -f $moddir/modules.dep ]] || die "no modules.dep under $mroot/lib/modules/${kver:-?} (set KVER / MODULES_ROOT)"
progress "kernel modules ($kver)"

declare -A path_of=() deps_of=() ship=()
while IFS= read -r line; do
  p=${line%%:*}
  n=${p##*/}; n=${n%%.ko*}; n=${n//-/_}
  path_of[$n]=$p
  deps_of[$p]=${line#*:}
done <"$moddir/modules.dep"
builtin=$(sed 's|.*/||; s|\.ko.*||; s|-|_|g' "$moddir/modules.builtin" 2>/dev/null || true)

for name in $wanted; do
  n=${name//-/_}
  if [[ -z ${path_of[$n]:-} ]]; then
    grep -qx "$n" <<<"$builtin" || warn "module $name not in $kver (skipped)"
    continue
  fi
  p=${path_of[$n]}
  ship[$p]=1
  # modules.dep lists the whole transitive closure on each line.
  for d in ${deps_of[$p]}; do ship[$d]=1; done
done
(( ${#ship[@]} > 0 )) || die "no module to ship"

dest=$stage/lib/modules/$kver
i=0
for p in "${!ship[@]}"; do
  i=$((i + 1))
  mkdir -p "$dest/$(dirname "$p")"
  plain=$dest/${p%%.ko*}.ko
  # Stored uncompressed: Debian 12's kernel has no in-kernel module
  # decompression, and the archive is compressed as a whole anyway.
  case $p in
    *.ko) cp "$moddir/$p" "$plain" ;;
    *.ko.xz) xz -dc "$moddir/$p" >"$plain" ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$plain" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$plain" ;;
    *) die "unknown module file type: $p" ;;
  esac
  (( i % 20 == 0 )) && echo "  ... $i/${#ship[@]} modules"
done
for f in modules.builtin modules.builtin.modinfo modules.order; do
  [[ -f $moddir/$f ]] && cp "$moddir/$f" "$dest/"
done
echo "  ${#ship[@]} modules ($(du -sh "$dest" | cut -f1))"

# --- 4. depmod for the subset ---
progress "depmod"
command -v depmod >/dev/null || die "depmod not found (apt-get install kmod)"
depmod -b "$stage" "$kver"
# vireo-init reads the text tables; the binary indexes only take room.
rm -f "$dest"/*.bin
[[ -s $dest/modules.alias ]] || die "depmod wrote no modules.alias"
echo "  modules.dep: $(wc -l <"$dest/modules.dep") entries, modules.alias: $(grep -c '^alias' "$dest/modules.alias") aliases"

# --- 5. cpio ---
progress "cpio archive"
compress=${COMPRESS:-$(command -v zstd >/dev/null && echo zstd || echo gzip)}
mkdir -p "$(dirname "$out")"
# newc is the only format the kernel unpacks; owners forced to root.
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$stage.cpio"
trap 'rm -rf "$stage" "$stage.cpio"' EXIT

# --- 6. compression ---
progress "compress ($compress)"
case $compress in
  zstd) zstd -q -f -T0 -10 "$stage.cpio" -o "$out.tmp" ;;
  gzip) gzip -6 -c "$stage.cpio" >"$out.tmp" ;;
  *) die "COMPRESS must be zstd or gzip" ;;
esac
mv "$out.tmp" "$out"
echo "$kver" >"$out.kver"
echo "[initramfs done +$((SECONDS - start))s] $out ($(du -h "$out" | cut -f1), unpacked $(du -sh "$stage" | cut -f1)), kernel $kver"
