#!/usr/bin/env bash
# Build the rig initramfs: what the outer QEMU (TCG, Debian kernel) boots.
#
#   VIREO_VMM=target/x86_64-unknown-linux-musl/release/vireo-vmm \
#   GUEST_DIR=target/build/guest tests/rig/build-rig-initramfs.sh target/build/rig/rig-initramfs.cpio.gz
#
# Environment:
#   VIREO_VMM          static vireo-vmm binary (required)
#   GUEST_DIR          dir with vmlinux, bzImage, initramfs.cpio.gz (default target/build/guest)
#   PROBE_ELF          optional bare-metal probe guest, becomes /guest/probe.elf
#   DEBIAN_KERNEL      /boot/vmlinuz-<release> booted by the outer QEMU and
#                      also copied in as an inner guest (default: newest with modules)
#   RIG_MODULES        modules to load, by name (default: kvm-amd tun bridge); their
#                      dependencies are added from modules.dep
#   RIG_MODULE_OPTIONS default module options, "<module>.<param>=<value> ..."
#                      (default: kvm_amd.vgif=0, see below); the outer kernel
#                      command line can override them
#   RIG_EXTRA_DIR      optional directory whose tree is copied into the root
#                      (e.g. tools for a job; see build-rig-initramfs-qemuref.sh)
#   RIG_WITH_QEMU=1    also QEMU, as the reference VMM /usr/bin/qemu-ref-vmm
#                      (bench-boot and profile-boot compare the two)
#
# Contents: busybox, the kvm module chain (uncompressed, in load order), the
# VMM at /usr/bin/vireo-vmm, the guests under /guest, and tests/rig/rootfs
# (/init, /rig/lib.sh, /rig/jobs/*.sh). Next to OUT it writes OUT.kernel with
# the path of DEBIAN_KERNEL, so run-rig.sh boots the kernel the modules match.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=host-lib.sh
. "$here/host-lib.sh"

[[ $# -eq 1 ]] || { echo "usage: VIREO_VMM=... $0 OUT.cpio.gz" >&2; exit 2; }
out=$1

log() { echo "[rig-initramfs] $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

vmm=${VIREO_VMM:-}
[[ -n $vmm ]] || die "set VIREO_VMM to a static vireo-vmm binary"
[[ -f $vmm && -x $vmm ]] || die "VIREO_VMM=$vmm is not an executable file"
# The rig has no libc: a dynamically linked VMM would fail with a confusing
# "not found" inside the VM, so refuse it here.
if readelf -lW "$vmm" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  die "VIREO_VMM=$vmm is dynamically linked; build it for x86_64-unknown-linux-musl"
fi

# GUEST_DIR=none: no Linux guests, for jobs that run only the probe.
guest_dir=${GUEST_DIR:-$repo/target/build/guest}
if [[ $guest_dir != none ]]; then
  for f in vmlinux bzImage initramfs.cpio.gz; do
    [[ -s $guest_dir/$f ]] || die "missing $guest_dir/$f (make guest-kernel guest-initramfs)"
  done
fi
probe=${PROBE_ELF:-}
[[ -z $probe || -s $probe ]] || die "PROBE_ELF=$probe does not exist"

debian_kernel=${DEBIAN_KERNEL:-$(rig_default_debian_kernel)}
[[ -r $debian_kernel ]] || die "DEBIAN_KERNEL=$debian_kernel is not readable"
kver=$(rig_kernel_release "$debian_kernel")
moddir=/lib/modules/$kver
[[ -f $moddir/modules.dep ]] || die "no $moddir/modules.dep for $debian_kernel"

busybox=${BUSYBOX:-/bin/busybox}
if [[ ! -x $busybox ]] || readelf -lW "$busybox" | grep -q 'Requesting program interpreter'; then
  die "$busybox is not a static busybox; install busybox-static (tests/rig/deps.sh)"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vireo-rig-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,root,usr/bin,guest,lib/modules/rig}
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
# The kernel opens /dev/console for init's stdio before /init can mount
# devtmpfs, so the node must be in the archive (mknod needs root, as on CI).
mknod -m 600 "$stage/dev/console" c 5 1

# --- kernel modules: resolve the dependency chain through modules.dep ---
# modules.dep lines look like "kernel/x/kvm-amd.ko: kernel/y/ccp.ko kernel/z/kvm.ko ...".
declare -A dep_of=() seen=()
while IFS= read -r line; do
  dep_of[${line%%:*}]=${line#*:}
done <"$moddir/modules.dep"

# Path in modules.dep of a module given by name. Names use - and _
# interchangeably and the file may be compressed (.ko.xz, .ko.zst, .ko.gz).
mod_path() {
  local want=${1//-/_} p base
  for p in "${!dep_of[@]}"; do
    base=${p##*/}
    base=${base%%.ko*}
    [[ ${base//-/_} == "$want" ]] && { echo "$p"; return 0; }
  done
  return 1
}

order=()
# Depth-first: every dependency is listed before the module that needs it.
add_module() {
  local p=$1 d
  [[ -n ${seen[$p]:-} ]] && return 0
  seen[$p]=1
  for d in ${dep_of[$p]}; do add_module "$d"; done
  order+=("$p")
}
for name in ${RIG_MODULES:-kvm-amd tun bridge}; do
  p=$(mod_path "$name") || die "module $name not in $moddir/modules.dep"
  add_module "$p"
done

# busybox insmod reads plain ELF objects only, so decompress at build time.
: >"$stage/lib/modules/rig/load-order"
for p in "${order[@]}"; do
  base=$(basename "$p")
  plain=${base%%.ko*}.ko
  case $base in
    *.ko) cp "$moddir/$p" "$stage/lib/modules/rig/$plain" ;;
    *.ko.xz) xz -dc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *.ko.zst) zstd -qdc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *.ko.gz) gzip -dc "$moddir/$p" >"$stage/lib/modules/rig/$plain" ;;
    *) die "unknown module file type: $p" ;;
  esac
  echo "$plain" >>"$stage/lib/modules/rig/load-order"
done
# vgif=0: QEMU 7.2's TCG emulation of AMD's virtual GIF is unreliable: with
# kvm_amd's default vgif=1, 5 of 18 linux-debian runs failed (the outer VM
# hung with soft lockups and stopped timers, the outer kernel panicked with
# "corrupted stack end detected inside scheduler", or the guest reset
# silently); with vgif=0, 0 of 10 failed, at the same speed. KVM then tracks
# GIF itself, as on CPUs without VGIF.
echo "${RIG_MODULE_OPTIONS-kvm_amd.vgif=0}" >"$stage/lib/modules/rig/options"
log "modules ($kver): $(tr '\n' ' ' <"$stage/lib/modules/rig/load-order")options: $(cat "$stage/lib/modules/rig/options")"

# --- the VMM and its guests ---
cp "$vmm" "$stage/usr/bin/vireo-vmm"
chmod 755 "$stage/usr/bin/vireo-vmm"
if [[ $guest_dir != none ]]; then
  cp "$guest_dir/vmlinux" "$guest_dir/bzImage" "$guest_dir/initramfs.cpio.gz" "$stage/guest/"
  cp "$debian_kernel" "$stage/guest/debian-vmlinuz"
  # The network bench's guest (GUEST_NET_TOOLS=1), when it was built.
  [[ ! -s $guest_dir/initramfs-net.cpio.gz ]] || cp "$guest_dir/initramfs-net.cpio.gz" "$stage/guest/"
  # The minimal guest's text symbols, sorted, so that a hung launch's guest
  # RIPs can be named inside the rig (rig_dump_vmm).
  nm -n "$guest_dir/vmlinux" | awk '$2 ~ /^[Tt]$/' >"$stage/guest/System.map"
fi
[[ -z $probe ]] || cp "$probe" "$stage/guest/probe.elf"
# The VMM's other programs (vireo-vmm-ctl, the API client jobs use), beside it.
for tool in vireo-vmm-ctl vireo-img; do
  [[ ! -x $(dirname "$vmm")/$tool ]] || cp "$(dirname "$vmm")/$tool" "$stage/usr/bin/$tool"
done
if [[ ${RIG_WITH_QEMU:-0} == 1 ]]; then
  rig_stage_qemu_ref "$stage"
  # The network bench's peers on the rig host (bench-net).
  for tool in iperf3 sockperf; do
    rig_stage_prog "$stage" "$(command -v $tool)" "/usr/bin/$tool"
  done
fi

# Extra files (e.g. tools for future jobs), merged into the root as a tree.
if [[ -n ${RIG_EXTRA_DIR:-} ]]; then
  [[ -d $RIG_EXTRA_DIR ]] || die "RIG_EXTRA_DIR=$RIG_EXTRA_DIR is not a directory"
  cp -a "$RIG_EXTRA_DIR/." "$stage/"
fi

# --- /init, job library and jobs ---
cp -a "$here/rootfs/." "$stage/"
chmod 755 "$stage/init"
echo "$kver" >"$stage/rig/kernel-release"

# newc is the only cpio format the kernel unpacks; owners forced to root.
# gzip -6: -9 buys almost nothing on this content and costs build time.
mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$out.tmp"
mv "$out.tmp" "$out"
realpath "$debian_kernel" >"$out.kernel"
log "wrote $out ($(du -h "$out" | cut -f1); unpacked $(du -sh "$stage" | cut -f1)); outer kernel: $debian_kernel"
log "jobs: $(cd "$here/rootfs/rig/jobs" && ls | sed 's/\.sh$//' | tr '\n' ' ')"
