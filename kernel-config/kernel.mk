# Vireo's own appliance kernel from Debian's linux-source (an alternative to
# Debian's linux-image). Included from the top-level Makefile.
#
#   make kernel                          x86_64, defconfig + the fragments
#   make kernel KERNEL_ARCH=aarch64      arm64 (cross: gcc-aarch64-linux-gnu)
#   make kernel KERNEL_BASE=debian       on top of Debian's own config
#   make kernel-config-check             configure both arches on both bases
#                                        and check no fragment option was
#                                        dropped (about a minute; no build)

BUILD ?= target/build
KERNEL_ARCH ?= $(APPLIANCE_ARCH)
KERNEL_DIR ?= $(BUILD)/kernel
KERNEL_BASE ?= defconfig
# One extracted tree for every configuration (all builds are out of tree).
export KERNEL_SRC_DIR ?= $(abspath $(KERNEL_DIR))/src

.PHONY: kernel kernel-config-check

# Hours on two busy cores: niced so it never slows the rest.
kernel:
	KERNEL_BASE=$(KERNEL_BASE) ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	  nice -n 19 kernel-config/build-kernel.sh $(KERNEL_ARCH) $(KERNEL_DIR)/$(KERNEL_BASE)

# Configured in their own directories (check-BASE), apart from a build that
# may be running; the check must also catch a dropped option: a symbol this
# kernel does not have.
kernel-config-check: appliance-arm64-debs
	for base in defconfig debian; do \
	  for arch in x86_64 aarch64; do \
	    KERNEL_BASE=$$base ARM64_ROOT=$(APPLIANCE_ARM64_ROOT) \
	      kernel-config/build-kernel.sh $$arch $(KERNEL_DIR)/check-$$base --config-only || exit 1; \
	  done; \
	done
	echo 'CONFIG_VIREO_NO_SUCH_OPTION=y' >$(KERNEL_DIR)/bogus.config
	if kernel-config/check-config.sh $(KERNEL_DIR)/check-defconfig/config-x86_64 $(KERNEL_DIR)/bogus.config; then \
	  echo "kernel-config-check: FAIL: an option missing from .config was not reported" >&2; exit 1; \
	fi
	echo "kernel-config-check: PASS"
