#!/usr/bin/env bash
# Checks that every program and firmware file the tests call is on this
# machine, and names what is missing (with the Debian package that has it)
# instead of letting a test fail on it later. .ci/run calls it after
# installing; run it by hand to see what a machine lacks.
set -uo pipefail

# program:package, one per tool the test tiers run.
tools=(
  qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm
  qemu-img:qemu-utils qemu-io:qemu-utils
  corosync:corosync corosync-quorumtool:corosync corosync-cmapctl:corosync nft:nftables
  grub-mkimage:grub-common grub-mknetdir:grub-common xorriso:xorriso
  mformat:mtools mcopy:mtools mmd:mtools mkfs.vfat:dosfstools mkfs.ext4:e2fsprogs
  busybox:busybox-static cpio:cpio zstd:zstd gzip:gzip xz:xz-utils readelf:binutils
  dpkg-deb:dpkg apt-get:apt ldd:libc-bin ip:iproute2 bridge:iproute2 unshare:util-linux curl:curl
  dtc:device-tree-compiler modinfo:kmod debootstrap:debootstrap python3:python3
  chromium:chromium chromedriver:chromium-driver
  ganesha.nfsd:nfs-ganesha ping:iputils-ping
  g++:g++ gcc:gcc make:make bc:bc flex:flex bison:bison aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
  cargo:rustup rustfmt:rustup cargo-clippy:rustup
)
# file:package for firmware and build inputs read by path.
files=(
  /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf /usr/share/OVMF/OVMF_VARS_4M.fd:ovmf
  /usr/share/AAVMF/AAVMF_CODE.fd:qemu-efi-aarch64 /usr/share/AAVMF/AAVMF_VARS.fd:qemu-efi-aarch64
  /usr/lib/grub/i386-pc:grub-pc-bin /usr/lib/grub/x86_64-efi:grub-efi-amd64-bin
  /usr/lib/grub/arm64-efi:grub-efi-arm64-bin:arm64
  /usr/lib/ipxe/qemu/efi-virtio.rom:ipxe-qemu
  /usr/aarch64-linux-gnu/include/stdio.h:libc6-dev-arm64-cross
)
targets=(x86_64-unknown-none x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

missing=()
for entry in "${tools[@]}"; do
  command -v "${entry%%:*}" >/dev/null || missing+=("${entry%%:*} (${entry#*:})")
done
for entry in "${files[@]}"; do
  [[ -e ${entry%%:*} ]] || missing+=("${entry%%:*} (${entry#*:})")
done
if ! compgen -G '/boot/vmlinuz-*-amd64' >/dev/null; then
  missing+=("/boot/vmlinuz-*-amd64 (linux-image-amd64)")
fi
if ! compgen -G '/usr/src/linux-source-*.tar.xz' >/dev/null; then
  missing+=("/usr/src/linux-source-*.tar.xz (linux-source)")
fi
installed_targets=$(rustup target list --installed 2>/dev/null)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || missing+=("rust target $t (rustup target add $t)")
done

if ((${#missing[@]} > 0)); then
  echo "check-tools: ${#missing[@]} missing, the tests that use them would fail:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "check-tools: all $((${#tools[@]} + ${#files[@]} + 2 + ${#targets[@]})) tools, files and targets present"
