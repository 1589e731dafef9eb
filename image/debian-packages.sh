# shellcheck shell=bash
# Installing the Debian packages a build or test needs; shared by
# image/deps.sh and tests/rig/deps.sh (sourced, not run).

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

# install_debian_packages PACKAGE...
# apt-get installs PACKAGE... (without recommends, quietly).
install_debian_packages() {
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be stale or absent on a fresh machine.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@"
}
