# The appliance initramfs (vireo-init, vireo-agent, vireo, vireo-vmm,
# busybox, kernel modules). Included from the top-level Makefile.
#
#   make initramfs                          $(APPLIANCE_OUT)
#   make initramfs APPLIANCE_ARCH=aarch64   from Debian's arm64 kernel and
#                                           busybox, unpacked (not installed)
#                                           into $(BUILD)/debian-arm64
#   make appliance-boot-test                boot the x86_64 one under QEMU TCG
#   make appliance-boot-test-aarch64        boot the aarch64 one (qemu virt)
#   make appliance-cluster-test             three x86_64 nodes in one cluster

BUILD ?= target/build
APPLIANCE_ARCH ?= x86_64
APPLIANCE_OUT ?= $(BUILD)/appliance/initramfs-$(APPLIANCE_ARCH).cpio.zst
# Where Debian's packages for a foreign architecture are unpacked.
APPLIANCE_ARM64_ROOT ?= $(BUILD)/debian-arm64

.PHONY: initramfs appliance-boot-test appliance-boot-test-aarch64 appliance-cluster-test appliance-arm64-debs

# The probe guest goes in for the agent's VMM selftest (x86_64 only: the
# probe is an x86_64 program).
ifeq ($(APPLIANCE_ARCH),x86_64)
initramfs: probe
initramfs: export PROBE_ELF := $(CURDIR)/$(BUILD)/probe/vireo-probe.elf
endif
ifeq ($(APPLIANCE_ARCH),aarch64)
initramfs: appliance-arm64-debs
	MODULES_ROOT=$(APPLIANCE_ARM64_ROOT) KVER=$$(cat $(APPLIANCE_ARM64_ROOT)/kver) \
	  BUSYBOX=$(APPLIANCE_ARM64_ROOT)/bin/busybox DYNAMIC_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  initramfs/build-initramfs.sh $(APPLIANCE_OUT) $(APPLIANCE_ARCH)
else
initramfs:
	initramfs/build-initramfs.sh $(APPLIANCE_OUT) $(APPLIANCE_ARCH)
endif

appliance-arm64-debs:
	initramfs/fetch-debian-arch.sh arm64 $(APPLIANCE_ARM64_ROOT)

# x86_64 also boots the rig's minimal Linux guest under vireo-vmm in the node.
appliance-boot-test: initramfs guest-kernel guest-initramfs
	tests/appliance/boot-test.sh $(APPLIANCE_OUT)

# The same test on the aarch64 archive, under qemu-system-aarch64 -M virt.
# The aarch64 rig's minimal guest rides along for POST /selftest/vmm.
appliance-boot-test-aarch64: guest-kernel-arm64 guest-initramfs-arm64
	$(MAKE) initramfs APPLIANCE_ARCH=aarch64
	tests/appliance/boot-test.sh $(BUILD)/appliance/initramfs-aarch64.cpio.zst

# Three x86_64 nodes on one bridge with i6300esb watchdogs and an NFS pool:
# zero-touch join, live migration, watchdog fencing, failover (docs/cluster.md).
appliance-cluster-test: initramfs guest-kernel guest-initramfs
	tests/appliance/cluster-test.sh $(APPLIANCE_OUT)
