#!/usr/bin/env bash
# Unpack Debian's kernel (with its modules), static busybox and nft (with its
# libraries) for a foreign
# architecture into a directory, without installing them: the appliance of
# that architecture is built from them on this x86_64 host.
#
#   initramfs/fetch-debian-arch.sh DEB_ARCH ROOT     (DEB_ARCH: arm64)
#
# Afterwards ROOT holds boot/vmlinuz-KVER, lib/modules/KVER, bin/busybox and
# usr/sbin/nft,
# and ROOT/kver names KVER. The kernel is whatever Debian's linux-image-ARCH
# meta-package points to now, as for the host's x86_64 kernel. A second run
# with the same version only checks the stamp. Needs root the first time:
# it adds the architecture to dpkg and refreshes apt's lists.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 DEB_ARCH ROOT" >&2; exit 2; }
deb_arch=$1
root=$2
log() { echo "[fetch-debian $deb_arch] $*"; }
die() { echo "fetch-debian-arch: ERROR: $*" >&2; exit 1; }

if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch" &&
   [[ $(dpkg --print-architecture) != "$deb_arch" ]]; then
  [[ $(id -u) == 0 ]] || die "dpkg lacks architecture $deb_arch; as root: dpkg --add-architecture $deb_arch && apt-get update"
  log "adding architecture $deb_arch to dpkg, refreshing apt's lists"
  dpkg --add-architecture "$deb_arch"
  apt-get update -qq
fi

# The meta-package depends on exactly one versioned image package.
image_pkg=$(apt-cache depends "linux-image-$deb_arch:$deb_arch" 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ { sub(/:.*/, "", $2); print $2; exit }')
if [[ -z $image_pkg ]]; then
  # The lists may predate the architecture (added by hand without update).
  [[ $(id -u) == 0 ]] && apt-get update -qq
  image_pkg=$(apt-cache depends "linux-image-$deb_arch:$deb_arch" |
    awk '/Depends: linux-image-[0-9]/ { sub(/:.*/, "", $2); print $2; exit }')
fi
[[ -n $image_pkg ]] || die "apt knows no linux-image-$deb_arch:$deb_arch"
kver=${image_pkg#linux-image-}
image_ver=$(apt-cache policy "$image_pkg:$deb_arch" | awk '/Candidate:/ { print $2 }')
busybox_ver=$(apt-cache policy "busybox-static:$deb_arch" | awk '/Candidate:/ { print $2 }')
# nft and the libraries it is linked with (initramfs/ship-dynamic.sh checks
# the closure and names anything missing from this list).
nft_pkgs="nftables libnftables1 libedit2 libc6 libmnl0 libnftnl11 libxtables12 libjansson4 libgmp10 libtinfo6 libbsd0 libmd0"
nft_versions=""
for pkg in $nft_pkgs; do
  ver=$(apt-cache policy "$pkg:$deb_arch" | awk '/Candidate:/ { print $2 }')
  [[ -n $ver && $ver != "(none)" ]] || die "apt knows no $pkg:$deb_arch"
  nft_versions+=" $pkg=$ver"
done
want="$image_pkg $image_ver busybox-static $busybox_ver$nft_versions"

if [[ -f $root/.stamp && $(cat "$root/.stamp") == "$want" ]]; then
  log "up to date: $want"
  exit 0
fi

log "downloading $image_pkg $image_ver, busybox-static $busybox_ver and nftables (about 75 MB)"
rm -rf "$root"
mkdir -p "$root/debs"
# shellcheck disable=SC2086 # one word per package
(cd "$root/debs" && apt-get download -q "$image_pkg:$deb_arch=$image_ver" "busybox-static:$deb_arch=$busybox_ver" \
  $(for pv in $nft_versions; do echo "${pv%%=*}:$deb_arch=${pv#*=}"; done))
for deb in "$root"/debs/*.deb; do
  log "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$root"
done
[[ -f $root/boot/vmlinuz-$kver ]] || die "no boot/vmlinuz-$kver in $image_pkg"
[[ -d $root/lib/modules/$kver ]] || die "no lib/modules/$kver in $image_pkg"
[[ -x $root/bin/busybox ]] || die "no bin/busybox in busybox-static"
[[ -e $root/usr/sbin/nft ]] || die "no usr/sbin/nft in nftables"
# The package ships no modules.dep: depmod normally runs at install time.
depmod -b "$root" "$kver"
rm -rf "$root/debs"
echo "$kver" >"$root/kver"
echo "$want" >"$root/.stamp"
log "done: kernel $kver in $root ($(du -sh "$root" | cut -f1))"
