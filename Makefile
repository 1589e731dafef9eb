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

.PHONY: all vmm vmm-seccomp-hook vmm-musl vmm-aarch64 probe run run-vm run-probe run-linux test test-unit test-membership \
        test-cluster test-cluster-ha test-chaos test-interop test-cluster-layer cluster-bins fuzz fuzz-smoke fuzz-selfcheck test-probe test-probe-qemu test-rig lint bench bench-vms bench-cluster bench-appliance \
        test-ui bench-ui \
        membershipd-release clean

all: vmm probe

vmm:
	$(CARGO) build --release -p vireo-vmm -p vireo-jailer

# vireo-vmm with the seccomp test hook (tests/seccomp.rs): a debug build in a
# target dir of its own, so the shipped binary never carries the hook.
vmm-seccomp-hook:
	$(CARGO) build -p vireo-vmm --bin vireo-vmm --features seccomp-test-hook --target-dir target/seccomp-hook

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
	$(CARGO) clippy -p vireo-vmm --features fuzz,seccomp-test-hook --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path $(PROBE_DIR)/Cargo.toml --target x86_64-unknown-none -- -D warnings
	$(CARGO) clippy --release -p vireo-vmm --target aarch64-unknown-linux-musl -- -D warnings

test-unit:
	$(CARGO) test --workspace --lib --bins
	# The fuzz harnesses' own checks (their seeds get past the parsers' front door).
	$(CARGO) test -p vireo-vmm --features fuzz --lib fuzz_harness

# The membership codecs replayed against the shared corosync capture
# (../shared/data/corosync beside the repository), plus the corosync.conf parser.
test-membership:
	$(CARGO) test -p vireo-membership -p vireo-cluster

# Cluster membership in network namespaces (root, iproute2, corosync): real
# corosync 3.1.7 nodes pinning the harness and showing what Vireo must match,
# then Vireo nodes with real ones (issue 5's interop list), five Vireo
# nodes under seeded chaos, and the cluster layer (issue 16): create/join/
# leave with a real node (join.rs), group messaging (groups.rs), the store
# (store.rs) and 16 nodes joined one by one (scale.rs); the agents' HA
# with probe guests through /dev/kvm (ha.rs, migrate.rs, placement.rs: need the
# VMM and the probe); the web UI in headless Chromium against the three agents
# (ui.rs: migrate, a capped migration cancelled, drain and undrain).
test-cluster: cluster-bins vmm probe
	$(CARGO) test -p vireo-cluster-tests --no-fail-fast

# Only the agents' cluster side: node table, forwarding, HA and fencing.
test-cluster-ha: cluster-bins vmm probe
	$(CARGO) test -p vireo-cluster-tests --test ha -- --nocapture

# Only the chaos tests (VIREO_CHAOS_SEED=N, VIREO_CHAOS_STEPS=N pick others).
test-chaos: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --test chaos

# Only the tests with Vireo nodes.
test-interop: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --no-fail-fast --test interop --test leave --test vireo_rep --test loaded_start --test chaos

# Only the cluster layer: forming, groups, store, 16 nodes.
test-cluster-layer: cluster-bins
	$(CARGO) test -p vireo-cluster-tests --no-fail-fast --test join --test groups --test store --test scale

# The daemon and the CLI the cluster tests run (debug builds: the tests pick
# the newer of target/debug and target/release).
cluster-bins:
	$(CARGO) build -p vireo-membership -p vireo-cli -p vireo-agent --bins

# Boots the probe through /dev/kvm: vCPU/memory matrix and bad input.
# The agent's API tests too: POST /selftest/vmm boots the probe through it;
# storage (volumes, snapshots, clones, transfers) and backups judge the
# probe's disk writes; the CLI's tests drive a real agent; its VMs (lifecycle,
# 50 VMs, re-adoption, autostart, boot from disk); networks in namespaces
# (nat, isolated, private, macvtap modes, overlay, tenants; needs nft).
test-probe: vmm vmm-seccomp-hook vmm-musl probe
	$(CARGO) test -p vireo-tests
	# The static musl build (what the rig and the appliance run) makes other
	# system calls than glibc's under the same seccomp filters: disks, NICs,
	# snapshots and overlays once more with it.
	VIREO_VMM=$(CURDIR)/$(VMM_MUSL) $(CARGO) test -p vireo-tests --test virtio_blk --test virtio_net \
	  --test orderly_stop --test snapshot --test disk_layers
	$(CARGO) test -p vireo-agent --test api --test auth --test openapi --test storage --test backup --test vm_lifecycle --test vm_scale --test vm_bootdisk --test vm_jail --test networks --test networks_l2
	$(CARGO) build -p vireo-agent --bin vireo-agent
	$(CARGO) test -p vireo-cli

# The web UI in headless Chromium (chromedriver) against an agent with probe
# VMs; screenshots of every page in target/test-logs/ui/ (docs/ui.md).
test-ui: vmm probe
	$(CARGO) test -p vireo-agent --test ui -- --test-threads=1

# The VM list's page load with 200 VMs (goal <= 500 ms), one bench row.
bench-ui: vmm probe
	$(CARGO) test --release -p vireo-agent --test ui vm_list_page_load -- --ignored --nocapture

# The probe under QEMU microvm too (the benchmark compares VMMs on it).
test-probe-qemu: probe
	bash $(PROBE_DIR)/qemu/run-tests.sh

# Coverage-guided fuzzing (libFuzzer on stable, tests/fuzz/run.sh): each
# target FUZZ_S seconds; `make test` runs each for a short smoke.
FUZZ_S ?= 60
fuzz:
	tests/fuzz/run.sh $(FUZZ_S)

fuzz-smoke:
	tests/fuzz/run.sh 3

# The build is instrumented: a planted bug must be found within 60 s.
fuzz-selfcheck:
	@! tests/fuzz/run.sh 60 selfcheck >/dev/null 2>&1 || { echo "the planted bug was not found"; exit 1; }
	@ls target/fuzz/artifacts/selfcheck/crash-* >/dev/null && echo "fuzz-selfcheck: planted bug found"
	@rm -rf target/fuzz/artifacts/selfcheck target/fuzz/corpus/selfcheck

# Every tier in turn, on after a failure; ends with "N passed, N failed"
# counting the tests of every tier (tests/ci/run-tiers.sh).
TEST_TIERS := lint test-unit fuzz-smoke test-membership test-cluster test-probe test-ui test-probe-qemu vmm-aarch64 test-rig test-rig-aarch64 \
              appliance-boot-test appliance-cluster-test appliance-boot-test-aarch64 image-test image-test-aarch64 \
              kernel-config-check

test:
	@MAKE="$(MAKE)" tests/ci/run-tiers.sh $(TEST_TIERS)

clean:
	$(CARGO) clean
	rm -rf $(BUILD) $(PROBE_DIR)/target

# Real Linux guests (and the probe) under vireo-vmm inside the QEMU rig.
# (VIREO_VMM is exported above for the Rust tests; the rig takes RIG_VMM, the
# static build, by default.)
test-rig: probe rig-test-extra
	$(MAKE) rig-test RIG_VMM=$(VMM_MUSL) PROBE_ELF=$(CURDIR)/$(PROBE_ELF) \
	  RIG_EXTRA=$(CURDIR)/$(RIG_TEST_EXTRA) RIG_MODULES="$(RIG_TEST_MODULES)" \
	  RIG_TEST_JOBS="kvm-check probe linux-min-1 linux-min-4 linux-min-bzimage linux-debian linux-disk-net linux-snapshot linux-migrate net-vlan net-bond nfs-pool"

# A Linux guest: on hardware KVM directly, else (PVM, no KVM) inside the rig.
run-linux: vmm guest-kernel guest-initramfs
	@if [ -e /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then \
	  $(VMM) --kernel $(BUILD)/guest/vmlinux --initrd $(BUILD)/guest/initramfs.cpio.gz \
	    --cpus $(CPUS) --memory 512M --cmdline "console=ttyS0 reboot=k panic=-1 vireo.shell"; \
	else \
	  echo "This host's /dev/kvm cannot run Linux (PVM or none): booting it inside the QEMU rig."; \
	  $(MAKE) rig-initramfs RIG_VMM=$(VMM_MUSL) PROBE_ELF= && \
	    BUILD=$(BUILD) tests/rig/run-rig.sh linux-shell; \
	fi

include tests/rig/rig.mk
include tests/rig-aarch64/rig-aarch64.mk
include initramfs/initramfs.mk
include image/image.mk
include kernel-config/kernel.mk

# vireo-vmm against QEMU microvm on the probe guest, then Linux in the rig.
bench: vmm probe
	$(MAKE) rig-bench-initramfs
	$(MAKE) initramfs guest-kernel guest-initramfs
	$(MAKE) membershipd-release
	$(CARGO) build --release -p vireo-agent -p vireo-cli
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench
	$(MAKE) bench-rig-aarch64
	$(MAKE) bench-ui

# Only the appliance rows: three appliance nodes in QEMU (join, migration
# between nodes with lost pings, fencing, failover vs Proxmox VE).
bench-appliance: initramfs guest-kernel guest-initramfs
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench -- appliance

# Only the agent's VM rows: start -> first serial byte through the agent vs
# vireo-vmm directly, 50 VMs at once, the agent's RSS with 50 VMs.
bench-vms: vmm probe
	$(CARGO) build --release -p vireo-agent -p vireo-cli
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench -- vms

# Only the cluster rows: failover time corosync vs Vireo, broadcast throughput,
# the store's latency, HA failover with the agents' default fencing, and 3 and
# 16 nodes with agents and 4 HA probe VMs each (joins, convergence, failover).
bench-cluster: membershipd-release vmm probe
	$(CARGO) build -p vireo-cli -p vireo-agent --bins
	$(CARGO) run --release -q -p vireo-tests --bin vireo-bench -- cluster

# The bench reads the release daemon; until it exists its rows say "missing"
# and vireo-bench exits 1.
membershipd-release:
	@$(CARGO) build --release --bin vireo-membershipd 2>/dev/null || \
	  echo "vireo-membershipd not built: the Vireo bench rows will fail"
