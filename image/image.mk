# Bootable images (ISO, raw USB disk, PXE bundle) around the appliance
# initramfs. Included from the top-level Makefile. See docs/appliance.md.
#
#   make image                        $(IMAGE_DIR)/vireo-x86_64.iso, -usb.img, pxe/
#   make image APPLIANCE_ARCH=aarch64 (the initramfs and KERNEL for that arch)
#   make image-test                   boot them under QEMU TCG (SeaBIOS, OVMF, PXE, USB)
#   make image-test-grub-netboot      GRUB netboot (BIOS and UEFI PXE), not in make test
#   make image-deps                   the Debian packages they need (image/deps.sh)

BUILD ?= target/build
APPLIANCE_ARCH ?= x86_64
IMAGE_DIR ?= $(BUILD)/image/$(APPLIANCE_ARCH)

.PHONY: image image-deps image-test image-test-grub-netboot

# Debian packages (and the musl target) for the images; no-op when present.
image-deps:
	image/deps.sh

image: image-deps initramfs
	INITRD=$(APPLIANCE_OUT) image/build-image.sh $(APPLIANCE_ARCH) $(IMAGE_DIR)

image-test: image
	tests/appliance/image-test.sh $(IMAGE_DIR)

# GRUB's own netboot images (BIOS and UEFI PXE): about 2 minutes, so not in
# `make test`; the iPXE path there uses the same kernel and initrd.
image-test-grub-netboot: image
	tests/appliance/image-test.sh $(IMAGE_DIR) pxe-grub-bios pxe-grub-uefi
