# shellcheck shell=bash
# Helpers shared by the host-side rig scripts (sourced, not run).

# The Debian kernel that boots the outer rig VM and whose kvm modules go into
# the rig initramfs. The modules must come from exactly the same build as the
# kernel (vermagic), so both are picked together: the newest /boot/vmlinuz-*
# that has a matching /lib/modules/<version>/modules.dep.
rig_default_debian_kernel() {
  local k ver best=
  for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V); do
    ver=${k#/boot/vmlinuz-}
    [[ -f /lib/modules/$ver/modules.dep ]] && best=$k
  done
  [[ -n $best ]] || { echo "no /boot/vmlinuz-* with modules; install linux-image-amd64 (tests/rig/deps.sh)" >&2; return 1; }
  echo "$best"
}

# Kernel release of a /boot/vmlinuz-<release> path.
rig_kernel_release() {
  local base
  base=$(basename "$1")
  [[ $base == vmlinuz-* ]] || { echo "cannot tell the release of $1 (expected .../vmlinuz-<release>)" >&2; return 1; }
  echo "${base#vmlinuz-}"
}
