#!/usr/bin/env bash
# Install what building and booting the node image needs on a fresh Debian
# machine (`make image` and `make run` call this; a no-op when everything is
# there). Installing needs root; otherwise it says what is missing.
#
#   image/deps.sh [ARCH]           install what is missing (ARCH: x86_64, the
#                                  default, or aarch64)
#   image/deps.sh --list [ARCH]    only print the package list
set -euo pipefail

list=
if [[ ${1:-} == --list ]]; then
  list=1
  shift
fi
arch=${1:-x86_64}

packages=(
  # the node's kernel and its modules (the initramfs ships a subset)
  linux-image-amd64 kmod
  # the initramfs: static busybox for the debug shell, cpio, zstd
  busybox-static cpio zstd binutils
  # the images: GRUB for BIOS and UEFI, ISO and FAT tools
  grub-pc-bin grub-efi-amd64-bin grub-common xorriso mtools dosfstools
  # booting them: QEMU, UEFI firmware, iPXE option ROMs; curl for the agent
  qemu-system-x86 ovmf ipxe-qemu curl
)
if [[ $arch == aarch64 ]]; then
  # GRUB's arm64 UEFI files (an arm64 package of data only, installed beside
  # the amd64 tools), QEMU's arm machines and AAVMF. The kernel and busybox
  # are unpacked, not installed (initramfs/fetch-debian-arch.sh).
  packages+=(grub-efi-arm64-bin:arm64 qemu-system-arm qemu-efi-aarch64)
fi

if [[ -n $list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

# shellcheck source=image/debian-packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian-packages.sh"
missing_debian_packages "${packages[@]}"
# The static binaries are musl builds.
target=$arch-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "[image-deps] rustup target add $target"
  rustup target add "$target"
fi
if ((${#missing[@]} == 0)); then
  exit 0
fi
if ((EUID != 0)); then
  echo "[image-deps] missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "[image-deps] installing: ${missing[*]}"
if [[ $arch == aarch64 ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
install_debian_packages "${missing[@]}"
