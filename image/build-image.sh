#!/usr/bin/env bash
# Build the Vireo boot images for one architecture from a kernel and the
# appliance initramfs:
#
#   image/build-image.sh ARCH OUTDIR          (ARCH: x86_64 | aarch64)
#
#   OUTDIR/vireo-ARCH.iso       hybrid ISO: boots from CD, and `dd`-ed to a
#                               USB stick (x86_64: BIOS and UEFI)
#   OUTDIR/vireo-ARCH-usb.img   raw disk image: MBR, one FAT partition
#                               "VIREO" holding GRUB, the kernel and initrd
#   OUTDIR/pxe/                 PXE bundle: vmlinuz, initrd.img, boot.ipxe,
#                               grub/grub.cfg and GRUB's netboot images
#
# Everything comes from Debian packages: grub-pc-bin, grub-efi-amd64-bin
# (grub-efi-arm64-bin for aarch64), grub-common, xorriso, mtools, dosfstools.
#
# Environment:
#   INITRD        appliance initramfs (default target/build/appliance/
#                 initramfs-ARCH.cpio.zst); INITRD.kver names its kernel
#   KERNEL        the kernel (default: x86_64 /boot/vmlinuz-<INITRD.kver>)
#   GRUB_LIB      GRUB's platform directories (default /usr/lib/grub; for a
#                 foreign architecture, a `dpkg-deb -x` of its grub package)
#   CMDLINE       extra kernel command line for every menu entry
#   GRUB_TIMEOUT  menu timeout in seconds (default 3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

[[ $# -eq 2 ]] || { echo "usage: $0 ARCH (x86_64|aarch64) OUTDIR" >&2; exit 2; }
arch=$1
out=$2

start=$SECONDS
step=0
steps=6
progress() { step=$((step + 1)); echo "[image $arch $step/$steps +$((SECONDS - start))s] $*"; }
die() { echo "build-image: ERROR: $*" >&2; exit 1; }

initrd=${INITRD:-$repo/target/build/appliance/initramfs-$arch.cpio.zst}
[[ -s $initrd ]] || die "no initramfs $initrd (make initramfs APPLIANCE_ARCH=$arch)"
kver=$(cat "$initrd.kver" 2>/dev/null || true)
grub_lib=${GRUB_LIB:-/usr/lib/grub}

# ======================================================================
# Architecture-specific part: everything that differs per ARCH is here.
#   bios_platform  GRUB platform for legacy BIOS boot ("" = none)
#   efi_platform   GRUB platform for UEFI boot
#   efi_binary     the removable-media loader path UEFI firmware looks for
#   console        the kernel's consoles; the last one is /dev/console,
#                  where vireo-init logs and the debug shell runs
#   screen_console the same with the screen last (second menu entry)
#   grub_serial    GRUB commands that put its menu on the serial port too
#   default_kernel the kernel when KERNEL is not set
# ======================================================================
case $arch in
  x86_64)
    bios_platform=i386-pc
    efi_platform=x86_64-efi
    efi_binary=BOOTX64.EFI
    console="console=tty0 console=ttyS0,115200n8"
    screen_console="console=ttyS0,115200n8 console=tty0"
    grub_serial="serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial"
    default_kernel=${kver:+/boot/vmlinuz-$kver}
    ;;
  aarch64)
    # UEFI only: arm64 has no legacy BIOS. The kernel (Debian's Image with
    # its EFI stub) comes from the unpacked arm64 package, as the initramfs
    # does (ARM64_ROOT, see initramfs/fetch-debian-arch.sh).
    bios_platform=
    efi_platform=arm64-efi
    efi_binary=BOOTAA64.EFI
    # ttyAMA0: the PL011 UART of QEMU virt and of most arm64 boards.
    console="console=tty0 console=ttyAMA0,115200n8"
    screen_console="console=ttyAMA0,115200n8 console=tty0"
    # GRUB's console terminal is UEFI's ConOut, which firmware (AAVMF, and
    # servers' UEFI) already mirrors to the serial port.
    grub_serial=
    default_kernel=${kver:+${ARM64_ROOT:-$repo/target/build/debian-arm64}/boot/vmlinuz-$kver}
    ;;
  *) die "unknown ARCH $arch (supported: x86_64, aarch64)" ;;
esac
# ======================================================================

kernel=${KERNEL:-$default_kernel}
[[ -n $kernel && -r $kernel ]] || die "kernel ${kernel:-?} not readable (set KERNEL)"
platforms="$bios_platform $efi_platform"
for p in $platforms; do
  [[ -f $grub_lib/$p/kernel.img ]] || die "no GRUB $p under $grub_lib (install its grub-*-bin package)"
done
for tool in grub-mkimage grub-mknetdir xorriso mformat mcopy mmd mkfs.vfat; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install grub-common xorriso mtools dosfstools)"
done

version=$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo unknown)
# GRUB finds its own volume by this file: a name no other disk carries.
build_id=$(date -u +%Y%m%d%H%M%S)-$$-$RANDOM
id_file=/boot/grub/vireo-$build_id.id

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# GRUB modules built into every core image, so GRUB never has to load one
# from the boot medium (the ISO, USB and PXE images carry no module tree).
modules_common="normal configfile linux echo test search search_fs_file part_msdos part_gpt
  fat iso9660 serial terminal sleep ls cat halt reboot"
# Sets the array `mods` to the modules for GRUB platform $1.
modules_for() {
  local extra
  case $1 in
    i386-pc) extra=biosdisk ;;
    *-efi) extra=efi_gop ;;
  esac
  # Word splitting wanted: the lists are space- and newline-separated names.
  # shellcheck disable=SC2206
  mods=($modules_common $extra)
}

# The menu. $1: the directory holding vmlinuz and initrd.img on the medium.
grub_cfg() {
  local dir=$1
  cat <<EOF
# Vireo $version ($arch). Kernel command line options: docs/appliance.md.
set default=0
set timeout=${GRUB_TIMEOUT:-3}
$grub_serial

menuentry "Vireo $version ($arch)" --id vireo {
  echo "Loading the kernel..."
  linux $dir/vmlinuz $console ${CMDLINE:-}
  echo "Loading the initramfs..."
  initrd $dir/initrd.img
}
menuentry "Vireo, console on the screen" --id vireo-screen {
  linux $dir/vmlinuz $screen_console ${CMDLINE:-}
  initrd $dir/initrd.img
}
menuentry "Vireo, debug shell on the console" --id vireo-debug {
  linux $dir/vmlinuz $console vireo.debug=shell ${CMDLINE:-}
  initrd $dir/initrd.img
}
EOF
}

le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# An MBR with one bootable partition: $1 the image, $2 first sector, $3
# sectors. 16 bytes at 446 and the signature: no partitioning tool needed
# (sfdisk would be one more package for this).
write_mbr_partition() {
  # status 0x80 (bootable), CHS "beyond 8 GiB" (LBA only), type 0x0c. The
  # format is built from escapes on purpose.
  # shellcheck disable=SC2059
  printf "\\x80\\xfe\\xff\\xff\\x0c\\xfe\\xff\\xff$(le32 "$2")$(le32 "$3")" |
    dd of="$1" bs=1 seek=446 conv=notrunc status=none
  printf '\x55\xaa' | dd of="$1" bs=1 seek=510 conv=notrunc status=none
}

# --- 1. the boot tree shared by the ISO and the USB image ---
progress "boot tree: $(basename "$kernel") + $(basename "$initrd")"
tree=$work/tree
mkdir -p "$tree/boot/grub"
cp "$kernel" "$tree/boot/vmlinuz"
cp "$initrd" "$tree/boot/initrd.img"
grub_cfg /boot >"$tree/boot/grub/grub.cfg"
echo "$version $arch" >"$tree$id_file"
# Core images start here: find the volume, then read its grub.cfg.
cat >"$work/embed.cfg" <<EOF
search --no-floppy --set=root --file $id_file
set prefix=(\$root)/boot/grub
EOF

# --- 2. GRUB core images ---
progress "GRUB core images ($platforms)"
efi_img=$work/$efi_binary
modules_for "$efi_platform"
grub-mkimage -O "$efi_platform" -d "$grub_lib/$efi_platform" -p /boot/grub -c "$work/embed.cfg" \
  -o "$efi_img" "${mods[@]}"
if [[ -n $bios_platform ]]; then
  # El Torito (CD) and disk (USB: MBR boot code + core.img after the MBR).
  modules_for "$bios_platform"
  grub-mkimage -O i386-pc-eltorito -d "$grub_lib/$bios_platform" -p /boot/grub -c "$work/embed.cfg" \
    -o "$tree/boot/grub/eltorito.img" "${mods[@]}"
  grub-mkimage -O i386-pc -d "$grub_lib/$bios_platform" -p /boot/grub -c "$work/embed.cfg" \
    -o "$work/core.img" "${mods[@]}"
fi
# The FAT image UEFI firmware boots from the CD (El Torito EFI entry).
efi_fat=$tree/boot/grub/efi.img
mkfs.vfat -C "$efi_fat" $(($(stat -c %s "$efi_img") / 1024 + 256)) -n VIREO-EFI >/dev/null
mmd -i "$efi_fat" ::/EFI ::/EFI/BOOT
mcopy -i "$efi_fat" "$efi_img" "::/EFI/BOOT/$efi_binary"
echo "  $efi_binary $(du -k "$efi_img" | cut -f1) KiB${bios_platform:+, BIOS core.img $(du -k "$work/core.img" | cut -f1) KiB}"

# --- 3. ISO ---
progress "ISO (xorriso)"
iso=$out/vireo-$arch.iso
bios_iso_args=()
if [[ -n $bios_platform ]]; then
  # El Torito BIOS entry, plus an MBR (boot_hybrid.img) that boots the same
  # core image when the ISO is a USB disk: the "isohybrid" layout.
  bios_iso_args=(-b boot/grub/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table
    --grub2-boot-info --grub2-mbr "$grub_lib/$bios_platform/boot_hybrid.img")
fi
# -efi-boot-part --efi-boot-image: the EFI image is also a GPT partition, so
# UEFI boots the stick, not only the CD.
xorriso -as mkisofs -quiet -r -J -V "VIREO_${arch^^}" \
  "${bios_iso_args[@]}" \
  -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot \
  -efi-boot-part --efi-boot-image --protective-msdos-label \
  -o "$iso.tmp" "$tree"
mv "$iso.tmp" "$iso"

# --- 4. raw USB disk image ---
progress "USB disk image"
usb=$out/vireo-$arch-usb.img
part_mib=$(($(du -sm "$tree" | cut -f1) + 16))
part=$work/part.img
# FAT16 up to 2 GiB: every firmware reads it. The volume id is random, as
# mkfs.vfat would choose it.
mkfs.vfat -C "$part" $((part_mib * 1024)) -n VIREO >/dev/null
mmd -i "$part" ::/boot ::/boot/grub ::/EFI ::/EFI/BOOT
mcopy -i "$part" "$efi_img" "::/EFI/BOOT/$efi_binary"
for f in boot/vmlinuz boot/initrd.img boot/grub/grub.cfg "${id_file#/}"; do
  mcopy -i "$part" "$tree/$f" "::/$f"
done
# One partition from 1 MiB; type 0x0c (FAT32 LBA is what sticks carry; UEFI
# firmware boots EFI/BOOT from any FAT partition of a removable disk).
truncate -s $(( (part_mib + 1) * 1024 * 1024 )) "$usb.tmp"
write_mbr_partition "$usb.tmp" 2048 $((part_mib * 2048))
dd if="$part" of="$usb.tmp" bs=1M seek=1 conv=notrunc status=none
if [[ -n $bios_platform ]]; then
  # MBR boot code (the first 440 bytes: the partition table stays) and the
  # core image in the gap before the partition. boot.img loads sector 1,
  # and core.img's first sector loads the rest from sector 2 on: GRUB's
  # defaults, so no grub-bios-setup (which wants a block device) is needed.
  (( $(stat -c %s "$work/core.img") < 2047 * 512 )) || die "core.img does not fit before the partition"
  dd if="$grub_lib/$bios_platform/boot.img" of="$usb.tmp" bs=440 count=1 conv=notrunc status=none
  dd if="$work/core.img" of="$usb.tmp" bs=512 seek=1 conv=notrunc status=none
fi
mv "$usb.tmp" "$usb"

# --- 5. PXE bundle ---
progress "PXE bundle (iPXE script, GRUB netboot)"
pxe=$out/pxe
rm -rf "$pxe"
mkdir -p "$pxe/grub"
cp "$kernel" "$pxe/vmlinuz"
cp "$initrd" "$pxe/initrd.img"
# iPXE fetches relative names from where it fetched the script.
cat >"$pxe/boot.ipxe" <<EOF
#!ipxe
# Vireo $version ($arch). DHCP bootfile: boot.ipxe (next-server: this directory's TFTP/HTTP server)
echo Loading the Vireo kernel...
kernel vmlinuz $console ${CMDLINE:-}
echo Loading the Vireo initramfs...
initrd initrd.img
boot
EOF
# GRUB netboot: DHCP bootfile grub/i386-pc/core.0 (BIOS PXE) or
# grub/x86_64-efi/core.efi or grub/arm64-efi/core.efi (UEFI); all read
# grub/grub.cfg over TFTP.
for p in $platforms; do
  grub-mknetdir --net-directory="$pxe" --subdir=grub -d "$grub_lib/$p" \
    --locales= --fonts= --themes= >/dev/null
done
grub_cfg "" >"$pxe/grub/grub.cfg"

# --- 6. sizes ---
progress "done"
size() { du -h --apparent-size "$1" | cut -f1; }
echo "[image $arch done +$((SECONDS - start))s] kernel $(size "$kernel"), initramfs $(size "$initrd")"
echo "  $iso  $(size "$iso")"
echo "  $usb  $(size "$usb")"
echo "  $pxe/  $(du -sh --apparent-size "$pxe" | cut -f1) (vmlinuz + initrd.img $(du -ch --apparent-size "$pxe/vmlinuz" "$pxe/initrd.img" | tail -n1 | cut -f1), GRUB netboot $(du -sh --apparent-size "$pxe/grub" | cut -f1))"
