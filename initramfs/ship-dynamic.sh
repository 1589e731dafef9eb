#!/usr/bin/env bash
# Copy a dynamically linked Debian program into the appliance's tree with
# every shared library it needs (the NEEDED closure, read with readelf, so
# it works for a foreign architecture's files too) and its program
# interpreter.
#
#   initramfs/ship-dynamic.sh ROOT STAGE TRIPLET PROGRAM...
#
# ROOT is where the program and its libraries are (/ for the host's own
# architecture; an unpacked set of Debian packages for another), STAGE the
# tree being built, TRIPLET Debian's multiarch directory name
# (x86_64-linux-gnu, aarch64-linux-gnu), PROGRAM a path under ROOT such as
# usr/sbin/nft. Libraries land in STAGE/lib/TRIPLET, one of the loader's
# built-in directories, so no ld.so.cache is needed.
#
# Why: the node's own programs are static musl builds, but nft (nftables'
# command line, which the agent's NAT and isolation rules and the
# membership daemon's totem-port rules go through) is only packaged
# dynamically linked against glibc.
set -euo pipefail

[[ $# -ge 4 ]] || { echo "usage: $0 ROOT STAGE TRIPLET PROGRAM..." >&2; exit 2; }
root=${1%/}
stage=$2
triplet=$3
shift 3
die() { echo "ship-dynamic: ERROR: $*" >&2; exit 1; }
command -v readelf >/dev/null || die "readelf not found (apt-get install binutils)"

declare -A shipped=()

# find_lib NAME: the library's path under ROOT, from the directories the
# loader searches.
find_lib() {
  local dir
  for dir in "lib/$triplet" "usr/lib/$triplet" lib usr/lib; do
    if [[ -e $root/$dir/$1 ]]; then
      echo "$root/$dir/$1"
      return 0
    fi
  done
  return 1
}

# ship FILE DEST: FILE (dereferenced) to STAGE/DEST, then what it needs.
ship() {
  local file=$1 dest=$2 interp lib found
  [[ -n ${shipped[$dest]:-} ]] && return 0
  shipped[$dest]=1
  install -D -m 755 "$(readlink -f "$file")" "$stage/$dest"
  interp=$(readelf -lW "$file" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
  if [[ -n $interp && -z ${shipped[${interp#/}]:-} ]]; then
    shipped[${interp#/}]=1
    found=$root$interp
    [[ -e $found ]] || found=$(find_lib "$(basename "$interp")") || die "no interpreter $interp under $root"
    install -D -m 755 "$(readlink -f "$found")" "$stage$interp"
  fi
  for lib in $(readelf -dW "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
    found=$(find_lib "$lib") || die "$file needs $lib, which is not under $root"
    ship "$found" "lib/$triplet/$lib"
  done
}

for program in "$@"; do
  [[ -e $root/$program ]] || die "no $program under $root"
  ship "$root/$program" "$program"
done
echo "  shipped $* with ${#shipped[@]} file(s) from ${root:-/}"
