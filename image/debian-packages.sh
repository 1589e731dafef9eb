# shellcheck shell=bash
# Installing the Debian packages a build or test needs; shared by
# image/deps.sh, tests/rig/deps.sh and .ci/run (sourced, not run).

# missing_debian_packages PACKAGE...
# Sets `missing` to those of PACKAGE... that are not installed (dpkg-query
# tells installed packages apart from merely known ones).
missing_debian_packages() {
  local p
  missing=()
  for p in "$@"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
}

# stray_qemu_packages
# Sets `stray` to PACKAGE=VERSION pins for every installed package built from
# QEMU's source whose version no configured archive offers, pinned to the
# newest version the archives do offer. Vireo uses one QEMU, bookworm's
# (docs/ARCHITECTURE.md, "QEMU"): a machine image may ship a qemu-utils from
# bookworm-backports without that suite configured, and its Breaks on
# qemu-system-common < 8.0 would stop bookworm's qemu-system-x86 installing.
stray_qemu_packages() {
  local pkg source installed offered
  stray=()
  while read -r pkg source installed; do
    [[ $source == qemu ]] || continue
    if apt-cache madison "$pkg" | awk -F' [|] ' '{print $2}' | grep -qxF "$installed"; then
      continue
    fi
    offered=$(apt-cache madison "$pkg" | awk -F' [|] ' 'NR == 1 {print $2}')
    if [[ -n $offered ]]; then
      stray+=("$pkg=$offered")
    fi
  done < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${source:Package} ${Version}\n' 2>/dev/null |
    awk '$1 == "ii" {print $2, $3, $4}')
}

# install_debian_packages PACKAGE...
# apt-get installs PACKAGE... (without recommends, quietly), first bringing
# any stray QEMU package back to the archive's version (see above).
install_debian_packages() {
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be stale or absent on a fresh machine.
  apt-get update -qq
  stray_qemu_packages
  local wanted=() pkg pin
  for pkg in "$@"; do
    # A package named both bare and pinned would ask apt for two versions.
    for pin in "${stray[@]}"; do
      [[ $pkg == "${pin%%=*}" ]] && continue 2
    done
    wanted+=("$pkg")
  done
  if ((${#stray[@]} > 0)); then
    echo "[debian-packages] realigning to the archive's QEMU: ${stray[*]}" >&2
    wanted=(--allow-downgrades "${stray[@]}" "${wanted[@]}")
  fi
  apt-get install -y -qq --no-install-recommends "${wanted[@]}"
}
