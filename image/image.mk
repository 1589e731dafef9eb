# Bootable images (ISO, raw USB disk, PXE bundle) around the appliance
# initramfs. Included from the top-level Makefile. See docs/appliance.md.
#
#   make image                        $(IMAGE_DIR)/vireo-x86_64.iso, -usb.img, pxe/
#   make image APPLIANCE_ARCH=aarch64 (the initramfs and KERNEL for that arch)
#   make image-test                   boot them under QEMU TCG (SeaBIOS, OVMF, PXE, USB)
#   make image-test-more              USB under UEFI, the ISO as a stick, GRUB netboot
#   make image-deps                   the Debian packages they need (image/deps.sh)

BUILD ?= target/build
APPLIANCE_ARCH ?= x86_64
IMAGE_DIR ?= $(BUILD)/image/$(APPLIANCE_ARCH)

.PHONY: image image-deps image-test image-test-more image-test-aarch64

# Debian packages (and the musl target) for the images; no-op when present.
image-deps:
	image/deps.sh $(APPLIANCE_ARCH)

image: image-deps initramfs
	INITRD=$(APPLIANCE_OUT) ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  image/build-image.sh $(APPLIANCE_ARCH) $(IMAGE_DIR)

image-test: image
	tests/appliance/image-test.sh $(IMAGE_DIR)

# The remaining ways in, about 5 minutes, so not in `make test`: the raw USB
# image under UEFI and as a SATA disk, the ISO dd-ed to a stick (BIOS, UEFI), GRUB's own
# netboot images (BIOS and UEFI PXE; GRUB's TFTP is slow).
IMAGE_TEST_MORE := usb-uefi disk-bios iso-usb-bios iso-usb-uefi pxe-grub-bios pxe-grub-uefi
image-test-more: image
	tests/appliance/image-test.sh $(IMAGE_DIR) $(IMAGE_TEST_MORE)

# The aarch64 images under AAVMF (qemu-system-aarch64 -M virt -cpu max, TCG):
# ISO as a CD, USB image as a stick, PXE through GRUB netboot.
image-test-aarch64:
	$(MAKE) image-test APPLIANCE_ARCH=aarch64
