# Bootable images (ISO, raw USB disk, PXE bundle) around the appliance
# initramfs. Included from the top-level Makefile. See docs/appliance.md.
#
#   make image                        $(IMAGE_DIR)/vireo-x86_64.iso, -usb.img, pxe/
#   make image APPLIANCE_ARCH=aarch64 (the initramfs and KERNEL for that arch)
#   make image-test                   boot them under QEMU TCG (SeaBIOS, OVMF, PXE, USB)

BUILD ?= target/build
APPLIANCE_ARCH ?= x86_64
IMAGE_DIR ?= $(BUILD)/image/$(APPLIANCE_ARCH)

.PHONY: image image-test image-test-aarch64

image: initramfs
	INITRD=$(APPLIANCE_OUT) ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  image/build-image.sh $(APPLIANCE_ARCH) $(IMAGE_DIR)

image-test: image
	tests/appliance/image-test.sh $(IMAGE_DIR)

# The aarch64 ISO under AAVMF (qemu-system-aarch64 -M virt -cpu max, TCG).
image-test-aarch64:
	$(MAKE) image-test APPLIANCE_ARCH=aarch64
