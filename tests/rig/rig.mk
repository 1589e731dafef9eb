# QEMU rig: Linux guests booted by vireo-vmm inside an outer QEMU (TCG,
# emulated AMD-V, nested /dev/kvm). Included from the top-level Makefile.
# See tests/rig/README.md.
#
#   make rig-deps                      apt packages (CI calls this first)
#   make guest-kernel                  $(BUILD)/guest/vmlinux, bzImage (~7 min once)
#   make guest-initramfs               $(BUILD)/guest/initramfs.cpio.gz
#   make guest-direct-test             guest kernel/initramfs under plain QEMU TCG
#   make rig-initramfs                 $(BUILD)/rig/rig-initramfs.cpio.gz (builds the musl VMM)
#   make rig-run RIG_JOB=linux-min-1   boot the rig and run one job
#   make rig-test                      kvm-check + the Linux-guest jobs
#   make rig-selftest                  the rig with a stand-in VMM (no vireo-vmm needed)
#   make rig-bench                     vireo-vmm vs QEMU microvm booting Linux (bench-boot)
#   make rig-bench-net                 TCP throughput and request rate vs QEMU, vhost off/on
#   make rig-profile                   where the boot time goes, both VMMs (profile-boot)

BUILD ?= target/build
RIG_SRC := tests/rig
RIG_GUEST_DIR := $(BUILD)/guest
RIG_OUT := $(BUILD)/rig

# The VMM put into the rig: RIG_VMM, the static musl build by default; point
# it at any other static binary with `make rig-initramfs RIG_VMM=path`. Not
# VIREO_VMM: the top-level Makefile exports that name as the glibc build for
# the cargo tests, which the rig (no libc inside) cannot run. VIREO_VMM given
# on make's command line is still taken, as it always was.
RIG_VMM_MUSL := target/x86_64-unknown-linux-musl/release/vireo-vmm
ifeq ($(origin VIREO_VMM),command line)
RIG_VMM ?= $(VIREO_VMM)
endif
RIG_VMM ?= $(RIG_VMM_MUSL)
PROBE_ELF ?=

RIG_JOB ?= kvm-check
RIG_ARGS ?=
RIG_EXTRA ?=
RIG_MODULES ?=
RIG_TEST_JOBS ?= kvm-check linux-min-1 linux-min-4 linux-debian

.PHONY: rig-deps guest-kernel guest-initramfs guest-direct-test rig-vmm rig-nfs-test rig-nfs-extra rig-test-extra \
        rig-initramfs rig-bench-initramfs rig-run rig-test rig-selftest rig-bench rig-bench-net rig-profile

rig-deps:
	$(RIG_SRC)/deps.sh

# The script itself skips the ~7 minute build when the images are newer than
# the config fragment, so this target is always run.
# ARCH=arm64: the aarch64 guest (tests/rig-aarch64/rig-aarch64.mk).
guest-kernel:
ifeq ($(ARCH),arm64)
	$(MAKE) guest-kernel-arm64
else
	$(RIG_SRC)/build-guest-kernel.sh $(RIG_GUEST_DIR)
endif

guest-initramfs: $(RIG_GUEST_DIR)/initramfs.cpio.gz

$(RIG_GUEST_DIR)/initramfs.cpio.gz: $(RIG_SRC)/build-guest-initramfs.sh
	$(RIG_SRC)/build-guest-initramfs.sh $@

# The network bench's guest: the same plus iperf3 and sockperf (deps.sh
# installs them, and nft for the rig side, when missing: make bench is not
# part of CI's install list).
$(RIG_GUEST_DIR)/initramfs-net.cpio.gz: $(RIG_SRC)/build-guest-initramfs.sh
	$(RIG_SRC)/deps.sh
	GUEST_NET_TOOLS=1 $(RIG_SRC)/build-guest-initramfs.sh $@

guest-direct-test: guest-kernel guest-initramfs
	BUILD=$(BUILD) $(RIG_SRC)/direct-boot.sh

# cargo decides itself whether anything changed, so always ask it. Only done
# for the default path; an explicit VIREO_VMM is taken as it is.
rig-vmm:
ifeq ($(RIG_VMM),$(RIG_VMM_MUSL))
	cargo build --release --target x86_64-unknown-linux-musl -p vireo-vmm
endif

# Cheap (a few seconds), so rebuilt every time rather than tracking inputs.
# The probe goes in when it is built (the top-level Makefile names where; the
# `probe` job needs it, the Linux jobs do not).
# RIG_EXTRA / RIG_MODULES: a tree merged into the root and the modules to
# load (make test-rig gives the network jobs' ones, see rig-net-extra).
rig-initramfs: guest-kernel guest-initramfs rig-vmm
	VIREO_VMM=$(RIG_VMM) GUEST_DIR=$(RIG_GUEST_DIR) PROBE_ELF=$(wildcard $(PROBE_ELF)) \
	  RIG_EXTRA_DIR=$(RIG_EXTRA) RIG_MODULES="$(RIG_MODULES)" \
	  $(RIG_SRC)/build-rig-initramfs.sh $(RIG_OUT)/rig-initramfs.cpio.gz

# The network jobs (net-vlan, net-bond): iproute2's ip, nft and the static
# agent, CLI and init; 8021q, bonding and veth besides the usual modules,
# and nf_tables (crc32c_generic: libcrc32c's softdep), as on the appliance:
# the agent removes a network's nft tables with the nft it finds.
RIG_NET_EXTRA := $(RIG_OUT)/net-extra
RIG_NET_MODULES := kvm-amd tun bridge veth 8021q bonding crc32c_generic nf_tables
.PHONY: rig-net-extra
rig-net-extra:
	$(CARGO) build --release --target x86_64-unknown-linux-musl -p vireo-agent -p vireo-cli -p vireo-init
	$(RIG_SRC)/build-net-extra.sh $(RIG_NET_EXTRA) target/x86_64-unknown-linux-musl/release

# make test-rig's one boot carries both the network jobs' tree and the
# nfs-pool job's (nfs-utils' server side; see rig-nfs-test below).
RIG_TEST_EXTRA := $(RIG_OUT)/test-extra
RIG_TEST_MODULES := $(RIG_NET_MODULES) nfsd nfsv4
rig-test-extra: rig-net-extra rig-nfs-extra
	rm -rf $(RIG_TEST_EXTRA) && mkdir -p $(RIG_TEST_EXTRA)
	cp -a $(RIG_NET_EXTRA)/. $(RIG_NFS_EXTRA)/. $(RIG_TEST_EXTRA)/

# The same plus QEMU as the reference VMM, for the jobs that compare them.
RIG_BENCH_INITRAMFS := $(RIG_OUT)/rig-initramfs-bench.cpio.gz
# vhost_net: QEMU's in-kernel virtio-net backend, one of bench-net's rows;
# the agent, nft, macvtap and NAT for bench-net-layers (crc32c_generic:
# the softdep of nf_conntrack's libcrc32c, which modules.dep does not list).
RIG_BENCH_MODULES := kvm-amd tun bridge vhost_net veth macvtap crc32c_generic nf_tables nf_nat nft_chain_nat nft_masq nft_nat nft_ct
rig-bench-initramfs: guest-kernel guest-initramfs $(RIG_GUEST_DIR)/initramfs-net.cpio.gz rig-vmm rig-net-extra
	VIREO_VMM=$(RIG_VMM) GUEST_DIR=$(RIG_GUEST_DIR) PROBE_ELF=$(wildcard $(PROBE_ELF)) RIG_WITH_QEMU=1 \
	  RIG_EXTRA_DIR=$(RIG_NET_EXTRA) RIG_MODULES="$(RIG_BENCH_MODULES)" \
	  $(RIG_SRC)/build-rig-initramfs.sh $(RIG_BENCH_INITRAMFS)

# vireo-vmm against QEMU microvm, launch -> guest /init, 1 and 4 vCPUs
# (RIG_ARGS="rig.runs=20" for more launches). `make bench` prints it as a row.
rig-bench: rig-bench-initramfs
	BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_BENCH_INITRAMFS) $(RIG_SRC)/run-rig.sh bench-boot $(RIG_ARGS)

# TCP throughput both ways and request rate, Linux guest <-> rig host:
# vireo-vmm against QEMU microvm with vhost off and on (bench-net).
rig-bench-net: rig-bench-initramfs
	BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_BENCH_INITRAMFS) RIG_QEMU_TIMEOUT=$${RIG_QEMU_TIMEOUT:-2400} \
	  $(RIG_SRC)/run-rig.sh bench-net,bench-net-layers $(RIG_ARGS)

# Guest kernel logs with initcall times and KVM exit counts under both VMMs,
# summarised by boot-profile.sh.
rig-profile: rig-bench-initramfs
	BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_BENCH_INITRAMFS) $(RIG_SRC)/run-rig.sh profile-boot $(RIG_ARGS) || true
	$(RIG_SRC)/boot-profile.sh $(RIG_OUT)/profile-boot-latest.log

rig-run:
	BUILD=$(BUILD) $(RIG_SRC)/run-rig.sh $(RIG_JOB) $(RIG_ARGS)

# Every job in one rig boot, the failed ones once more in a second boot
# (tests/rig/test-rig.sh; README: "Flakes").
rig-test: rig-initramfs
	@BUILD=$(BUILD) $(RIG_SRC)/test-rig.sh $(RIG_SRC)/run-rig.sh $(RIG_TEST_JOBS)

# The rig's own plumbing, with tests/rig/fake-vireo-vmm.sh standing in for the
# VMM: module loading, /dev/kvm, job dispatch, timing and pass/fail checks.
rig-selftest: guest-kernel guest-initramfs
	VIREO_VMM=$(RIG_SRC)/fake-vireo-vmm.sh GUEST_DIR=$(RIG_GUEST_DIR) \
	  $(RIG_SRC)/build-rig-initramfs.sh $(RIG_OUT)/rig-initramfs-fake.cpio.gz
	@failed=; for j in kvm-check linux-min-4 "bench-linux rig.runs=2"; do \
	  BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_OUT)/rig-initramfs-fake.cpio.gz \
	    $(RIG_SRC)/run-rig.sh $$j || failed="$$failed $$j"; \
	done; \
	if [ -n "$$failed" ]; then echo "rig-selftest: FAILED:$$failed"; exit 1; fi; \
	echo "rig-selftest: all passed"

# Storage on NFS (docs/storage.md): a rig of its own with the NFS client and
# server modules, nfs-utils' server programs and the static agent and CLI;
# no Linux guests (the probe writes the disk). See jobs/nfs-pool.sh.
# make test-rig runs the same job in its shared boot; this target is the job
# alone, for working on it.
RIG_NFS_OUT := $(RIG_OUT)/rig-nfs.cpio.gz
RIG_NFS_EXTRA := $(RIG_OUT)/nfs-extra
rig-nfs-extra:
	$(CARGO) build --release --target x86_64-unknown-linux-musl -p vireo-agent -p vireo-cli
	$(RIG_SRC)/build-nfs-extra.sh $(RIG_NFS_EXTRA) \
	  target/x86_64-unknown-linux-musl/release/vireo-agent target/x86_64-unknown-linux-musl/release/vireo

rig-nfs-test: probe rig-nfs-extra
	$(CARGO) build --release --target x86_64-unknown-linux-musl -p vireo-vmm
	VIREO_VMM=$(RIG_VMM_MUSL) GUEST_DIR=none PROBE_ELF=$(PROBE_ELF) RIG_EXTRA_DIR=$(RIG_NFS_EXTRA) \
	  RIG_MODULES="kvm-amd nfsd nfsv4 veth" $(RIG_SRC)/build-rig-initramfs.sh $(RIG_NFS_OUT)
	BUILD=$(BUILD) RIG_INITRAMFS=$(RIG_NFS_OUT) $(RIG_SRC)/run-rig.sh nfs-pool

# The agent boots a Debian system disk from its own disk inside the rig, to
# a login prompt, and shuts it down through Ctrl-Alt-Del (docs/vms.md).
# The disk is built from Debian packages (debootstrap) and cached.
RIG_VMS_EXTRA := $(RIG_OUT)/vms-extra
DEBIAN_DISK := $(BUILD)/debian-disk/debian.qcow2
.PHONY: debian-disk rig-vms
debian-disk:
	$(RIG_SRC)/build-debian-disk.sh $(DEBIAN_DISK)

rig-vms: guest-kernel guest-initramfs rig-vmm debian-disk
	$(CARGO) build --release --target x86_64-unknown-linux-musl -p vireo-agent -p vireo-cli
	rm -rf $(RIG_VMS_EXTRA) && mkdir -p $(RIG_VMS_EXTRA)/usr/bin $(RIG_VMS_EXTRA)/guest
	cp target/x86_64-unknown-linux-musl/release/vireo-agent target/x86_64-unknown-linux-musl/release/vireo $(RIG_VMS_EXTRA)/usr/bin/
	cp $(DEBIAN_DISK) $(RIG_VMS_EXTRA)/guest/debian.qcow2
	VIREO_VMM=$(RIG_VMM) GUEST_DIR=$(RIG_GUEST_DIR) RIG_EXTRA_DIR=$(RIG_VMS_EXTRA) \
	  $(RIG_SRC)/build-rig-initramfs.sh $(RIG_OUT)/rig-initramfs-vms.cpio.gz
	RIG_INITRAMFS=$(RIG_OUT)/rig-initramfs-vms.cpio.gz RIG_MEM=3072 RIG_QEMU_TIMEOUT=900 BUILD=$(BUILD) \
	  $(RIG_SRC)/run-rig.sh vm-debian-disk rig.timeout=600
