#!/usr/bin/env bash
# The network rig jobs' tools (net-vlan, net-bond, bench-net-layers), as a
# tree for RIG_EXTRA_DIR: iproute2's ip (network namespaces, VLAN links;
# busybox's ip has neither) and nft with their libraries, and the static vireo-agent, vireo and
# vireo-init (musl builds) from BINDIR.
#
#   tests/rig/build-net-extra.sh OUTDIR BINDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=host-lib.sh
. "$here/host-lib.sh"

[[ $# -eq 2 ]] || { echo "usage: $0 OUTDIR BINDIR" >&2; exit 2; }
out=$1 bindir=$2
rm -rf "$out"
mkdir -p "$out/usr/bin" "$out/usr/sbin"
for b in vireo-agent vireo vireo-init; do
  [[ -x $bindir/$b ]] || { echo "ERROR: no $bindir/$b" >&2; exit 1; }
  if readelf -lW "$bindir/$b" | grep -q 'Requesting program interpreter'; then
    echo "ERROR: $bindir/$b is dynamically linked; build it for x86_64-unknown-linux-musl" >&2
    exit 1
  fi
  install -m 755 "$bindir/$b" "$out/usr/bin/$b"
done
rig_stage_prog "$out" "$(command -v ip)" /usr/sbin/ip
# nft: the agent's nat, isolated and private networks (bench-net-layers).
rig_stage_prog "$out" "$(command -v nft)" /usr/sbin/nft
echo "[net-extra] $(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1) in $out"
