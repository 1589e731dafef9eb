# aarch64 QEMU rig: arm64 Linux guests under vireo-vmm inside
# qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 (TCG), whose
# Debian arm64 kernel brings up KVM at EL2. Included from the top-level
# Makefile. See tests/rig-aarch64/README.md.
#
#   make guest-kernel-arm64        $(BUILD)/guest-arm64/Image (also: make guest-kernel ARCH=arm64)
#   make guest-initramfs-arm64     $(BUILD)/guest-arm64/initramfs.cpio.gz
#   make rig-aarch64-initramfs     the static aarch64 vireo-vmm + guests -> $(BUILD)/rig-aarch64/rig.cpio.gz
#   make rig-aarch64-run RIG_AARCH64_JOBS=linux-min-1,linux-min-4
#   make test-rig-aarch64          every job in one rig boot; failed jobs once more in a second
#   make bench-rig-aarch64         boot to /init, median of 5

BUILD ?= target/build
RIG_A64_SRC := tests/rig-aarch64
RIG_A64_GUEST := $(BUILD)/guest-arm64
RIG_A64_OUT := $(BUILD)/rig-aarch64
RIG_A64_VMM := target/aarch64-unknown-linux-musl/release/vireo-vmm
APPLIANCE_ARM64_ROOT ?= $(BUILD)/debian-arm64

RIG_AARCH64_TEST_JOBS := kvm-check bad-input linux-min-1 linux-min-4 linux-poweroff linux-debian-1 \
                         linux-debian-4 linux-disk-net linux-snapshot linux-migrate
RIG_AARCH64_JOBS ?= $(subst $(space),$(comma),$(strip $(RIG_AARCH64_TEST_JOBS)))
comma := ,
empty :=
space := $(empty) $(empty)

.PHONY: guest-kernel-arm64 guest-initramfs-arm64 rig-aarch64-vmm rig-aarch64-initramfs \
        rig-aarch64-run test-rig-aarch64 bench-rig-aarch64

# The script skips the build when the Image is newer than the fragment.
guest-kernel-arm64:
	nice -n 10 $(RIG_A64_SRC)/build-guest-kernel.sh $(RIG_A64_GUEST)

guest-initramfs-arm64: appliance-arm64-debs
	ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) $(RIG_A64_SRC)/build-guest-initramfs.sh $(RIG_A64_GUEST)/initramfs.cpio.gz

# Both binaries: the jobs drive snapshots and migrations with vireo-vmm-ctl.
rig-aarch64-vmm:
	cargo build --release -p vireo-vmm --target aarch64-unknown-linux-musl --bin vireo-vmm --bin vireo-vmm-ctl

rig-aarch64-initramfs: appliance-arm64-debs guest-kernel-arm64 guest-initramfs-arm64 rig-aarch64-vmm
	VIREO_VMM=$(RIG_A64_VMM) GUEST_DIR=$(RIG_A64_GUEST) ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  $(RIG_A64_SRC)/build-rig-initramfs.sh $(RIG_A64_OUT)/rig.cpio.gz

rig-aarch64-run:
	BUILD=$(BUILD) $(RIG_A64_SRC)/run-rig.sh $(RIG_AARCH64_JOBS) $(RIG_ARGS)

# One boot runs every job; the jobs that failed run once more in a second
# boot (nested KVM under TCG can stall a guest on its own, as in the x86_64
# rig), and said so; a real regression fails both times.
test-rig-aarch64: rig-aarch64-initramfs
	@BUILD=$(BUILD) tests/rig/test-rig.sh $(RIG_A64_SRC)/run-rig.sh $(RIG_AARCH64_TEST_JOBS)

# The bench's rig also carries Debian's arm64 QEMU (build-qemu-ref.sh) to
# boot the same guest with KVM beside vireo-vmm.
bench-rig-aarch64: rig-aarch64-initramfs
	$(RIG_A64_SRC)/build-qemu-ref.sh $(RIG_A64_OUT)/qemu-ref
	VIREO_VMM=$(RIG_A64_VMM) GUEST_DIR=$(RIG_A64_GUEST) ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  QEMU_REF_DIR=$(RIG_A64_OUT)/qemu-ref/root \
	  $(RIG_A64_SRC)/build-rig-initramfs.sh $(RIG_A64_OUT)/rig-bench.cpio.gz
	BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_A64_OUT)/rig-bench.cpio.gz $(RIG_A64_SRC)/run-rig.sh bench-linux rig.runs=5
