# Vireo — top-level build. `make run` builds the x86_64 node image and boots
# it in QEMU; `make run-vm` boots the embedded default guest (the probe) under
# vireo-vmm; `make test` runs every test tier. Outputs go to target/ and build/.

CARGO      ?= cargo
BUILD      ?= target/build
RELEASE    := target/release
VMM        := $(RELEASE)/vireo-vmm
VMM_MUSL   := target/x86_64-unknown-linux-musl/release/vireo-vmm
PROBE_DIR  := firmware/probe
PROBE_OUT  := $(PROBE_DIR)/target/x86_64-unknown-none/release/vireo-probe
PROBE_ELF  := $(BUILD)/probe/vireo-probe.elf
PROBE_L64  := $(BUILD)/probe/vireo-probe-linux64.elf
GUEST      ?= probe
CPUS       ?= 2
MEMORY     ?= 256M

export VIREO_VMM           := $(CURDIR)/$(VMM)
export VIREO_IMG           := $(CURDIR)/$(RELEASE)/vireo-img
export VIREO_PROBE         := $(CURDIR)/$(PROBE_ELF)
export VIREO_PROBE_LINUX64 := $(CURDIR)/$(PROBE_L64)

.PHONY: all vmm vmm-musl vmm-aarch64 probe run run-vm run-probe run-linux test test-unit test-membership \
        test-cluster test-chaos test-interop cluster-bins test-probe test-probe-qemu test-rig lint bench bench-vms bench-cluster \
        membershipd-release clean

all: vmm probe

vmm:
	$(CARGO) build --release -p vireo-vmm

vmm-musl:
	$(CARGO) build --release -p vireo-vmm --target x86_64-unknown-linux-musl

# aarch64 is built (not run) here: this host is x86_64.
vmm-aarch64:
	$(CARGO) build --release -p vireo-vmm --target aarch64-unknown-linux-musl

# The probe guest, twice: with its PVH note, and without it (Linux 64-bit entry).
probe:
	@mkdir -p $(BUILD)/probe
	$(CARGO) build --release --manifest-path $(PROBE_DIR)/Cargo.toml --target x86_64-unknown-none --features linux64-only
	cp $(PROBE_OUT) $(PROBE_L64)
	$(CARGO) build --release --manifest-path $(PROBE_DIR)/Cargo.toml --target x86_64-unknown-none
	cp $(PROBE_OUT) $(PROBE_ELF)

# The node: the x86_64 image booted in QEMU, its console here, the agent's
# URL printed (image/run-image.sh).
run: image
	image/run-image.sh $(IMAGE_DIR)/vireo-x86_64.iso

# A guest under vireo-vmm: the probe, or GUEST=linux.
run-vm: run-$(GUEST)

# The embedded default: boot the probe guest and print its report.
run-probe: vmm probe
	$(VMM) --kernel $(PROBE_ELF) --cpus $(CPUS) --memory $(MEMORY) --cmdline "hello from make run-vm"

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path $(PROBE_DIR)/Cargo.toml --target x86_64-unknown-none -- -D warnings

test-unit:
	$(CARGO) test --workspace --lib --bins

# The membership codecs replayed against the shared corosync capture
# (../shared/data/corosync beside the repository), plus the corosync.conf parser.
test-membership:
	$(CARGO) test -p vireo-membership

# Cluster membership in network namespaces (root, iproute2, corosync): real
# corosync 3.1.7 nodes pinning the harness and showing what Vireo must match,
# then Vireo nodes with real ones (issue 5's interop list) and five Vireo
# nodes under seeded chaos.
test-cluster: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --no-fail-fast

# Only the chaos tests (VIREO_CHAOS_SEED=N, VIREO_CHAOS_STEPS=N pick others).
test-chaos: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --test chaos

# Only the tests with Vireo nodes.
test-interop: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --no-fail-fast --test interop --test leave --test vireo_rep --test loaded_start --test chaos

# The daemon and the CLI the cluster tests run (debug builds: the tests pick
# the newer of target/debug and target/release).
cluster-bins:
	$(CARGO) build -p vireo-membership -p vireo-cli --bins

# Boots the probe through /dev/kvm: vCPU/memory matrix and bad input.
# The agent's API tests too: POST /selftest/vmm boots the probe through it,
# and its VMs (lifecycle, 50 VMs, re-adoption, autostart, boot from disk).
test-probe: vmm probe
	$(CARGO) test -p vireo-tests
	$(CARGO) test -p vireo-agent --test api --test openapi --test vm_lifecycle --test vm_scale --test vm_bootdisk

# The probe under QEMU microvm too (the benchmark compares VMMs on it).
test-probe-qemu: probe
	bash $(PROBE_DIR)/qemu/run-tests.sh

# Every tier in turn, on after a failure; ends with "N passed, N failed"
# counting the tests of every tier (tests/ci/run-tiers.sh).
TEST_TIERS := lint test-unit test-membership test-cluster test-probe test-probe-qemu vmm-aarch64 test-rig \
              appliance-boot-test appliance-boot-test-aarch64 image-test image-test-aarch64 \
              kernel-config-check

test:
	@MAKE="$(MAKE)" tests/ci/run-tiers.sh $(TEST_TIERS)

clean:
	$(CARGO) clean
	rm -rf $(BUILD) $(PROBE_DIR)/target

# Real Linux guests (and the probe) under vireo-vmm inside the QEMU rig.
# (VIREO_VMM is exported above for the Rust tests; the rig needs the static build.)
test-rig: probe
	$(MAKE) rig-test VIREO_VMM=$(VMM_MUSL) PROBE_ELF=$(CURDIR)/$(PROBE_ELF) \
	  RIG_TEST_JOBS="kvm-check probe linux-min-1 linux-min-4 linux-min-bzimage linux-debian linux-disk-net"

# A Linux guest: on hardware KVM directly, else (PVM, no KVM) inside the rig.
run-linux: vmm guest-kernel guest-initramfs
	@if [ -e /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then \
	  $(VMM) --kernel $(BUILD)/guest/vmlinux --initrd $(BUILD)/guest/initramfs.cpio.gz \
	    --cpus $(CPUS) --memory 512M --cmdline "console=ttyS0 reboot=k panic=-1 vireo.shell"; \
	else \
	  echo "This host's /dev/kvm cannot run Linux (PVM or none): booting it inside the QEMU rig."; \
	  $(MAKE) rig-initramfs VIREO_VMM=$(VMM_MUSL) PROBE_ELF= && \
	    BUILD=$(BUILD) tests/rig/run-rig.sh linux-shell; \
	fi

include tests/rig/rig.mk
include initramfs/initramfs.mk
include image/image.mk
include kernel-config/kernel.mk

# vireo-vmm against QEMU microvm on the probe guest, then Linux in the rig.
bench: vmm probe
	$(MAKE) rig-initramfs VIREO_VMM=$(VMM_MUSL)
	$(MAKE) membershipd-release
	$(CARGO) build --release -p vireo-agent
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench

# Only the agent's VM rows: start -> first serial byte through the agent vs
# vireo-vmm directly, 50 VMs at once, the agent's RSS with 50 VMs.
bench-vms: vmm probe
	$(CARGO) build --release -p vireo-agent
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench -- vms

# Only the cluster rows: failover time corosync vs Vireo, broadcast throughput.
bench-cluster: membershipd-release
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench -- cluster

# The bench reads the release daemon; until it exists its rows say "missing"
# and vireo-bench exits 1.
membershipd-release:
	@$(CARGO) build --release --bin vireo-membershipd 2>/dev/null || \
	  echo "vireo-membershipd not built: the Vireo bench rows will fail"
