# The appliance initramfs (vireo-init, vireo-agent, vireo, vireo-vmm,
# busybox, kernel modules). Included from the top-level Makefile.
#
#   make initramfs                          $(APPLIANCE_OUT)
#   make initramfs APPLIANCE_ARCH=aarch64   (needs MODULES_ROOT and BUSYBOX for arm64)
#   make appliance-boot-test                boot it under QEMU TCG and check it

BUILD ?= target/build
APPLIANCE_ARCH ?= x86_64
APPLIANCE_OUT ?= $(BUILD)/appliance/initramfs-$(APPLIANCE_ARCH).cpio.zst

.PHONY: initramfs appliance-boot-test

# The probe guest goes in for the agent's VMM selftest (x86_64 only: the
# probe is an x86_64 program).
ifeq ($(APPLIANCE_ARCH),x86_64)
initramfs: probe
initramfs: export PROBE_ELF := $(CURDIR)/$(BUILD)/probe/vireo-probe.elf
endif
initramfs:
	initramfs/build-initramfs.sh $(APPLIANCE_OUT) $(APPLIANCE_ARCH)

appliance-boot-test: initramfs
	tests/appliance/boot-test.sh $(APPLIANCE_OUT)
