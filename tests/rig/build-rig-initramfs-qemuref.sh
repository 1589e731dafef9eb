#!/usr/bin/env bash
# Build a rig initramfs whose "vireo-vmm" is QEMU with KVM (qemu-ref-vmm.sh),
# so that every Linux-guest job can run end to end with the reference VMM,
# and so that vireo-vmm's timings have a baseline measured in the same rig.
# (bench-boot runs both VMMs in one rig: build-rig-initramfs.sh with
# RIG_WITH_QEMU=1.)
#
#   tests/rig/build-rig-initramfs-qemuref.sh OUT.cpio.gz
#
# Takes the same environment as build-rig-initramfs.sh (except VIREO_VMM).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=host-lib.sh
. "$here/host-lib.sh"
[[ $# -eq 1 ]] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }

extra=$(mktemp -d "${TMPDIR:-/tmp}/vireo-qemuref.XXXXXX")
trap 'rm -rf "$extra"' EXIT
rig_stage_qemu_ref "$extra"

VIREO_VMM=$here/qemu-ref-vmm.sh RIG_EXTRA_DIR=$extra "$here/build-rig-initramfs.sh" "$1"
