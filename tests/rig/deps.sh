#!/usr/bin/env bash
# Install the Debian packages the QEMU rig needs (CI calls this on a fresh
# machine; it is a no-op when everything is there already).
#
#   tests/rig/deps.sh            install what is missing
#   tests/rig/deps.sh --list     only print the package list
set -euo pipefail

packages=(
  # outer VM: QEMU with TCG and its firmware (SeaBIOS, qboot for microvm)
  qemu-system-x86
  # outer kernel + the kvm/kvm-amd modules loaded inside the rig, and the
  # kernel booted as an inner guest
  linux-image-amd64
  # guest kernel: source tarball and what Kbuild needs for tinyconfig
  linux-source
  build-essential bc bison flex libelf-dev libssl-dev xz-utils
  # readelf (PVH note, static-binary checks)
  binutils
  # initramfs: static busybox, cpio, gzip
  busybox-static cpio gzip
  # the network bench (bench-net): in its guest and on the rig host; nft
  # for the agent's networks in bench-net-layers
  iperf3 sockperf nftables
)

if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

# shellcheck source=image/debian-packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../image/debian-packages.sh"
missing_debian_packages "${packages[@]}"
if ((${#missing[@]} == 0)); then
  echo "[rig-deps] all ${#packages[@]} packages installed"
  exit 0
fi
echo "[rig-deps] installing: ${missing[*]}"
install_debian_packages "${missing[@]}"
