#!/usr/bin/env bash
# The nfs-pool rig job's tools, as a tree for RIG_EXTRA_DIR:
#   - nfs-utils' server side (rpc.nfsd, rpc.mountd, exportfs) from Debian's
#     nfs-kernel-server and libwrap0 packages, downloaded and unpacked, not
#     installed (installing would try to start an NFS server on this host,
#     whose kernel may have none);
#   - iproute2's ip (network namespaces: busybox's ip has none);
#   - the glibc libraries all of them need, at the paths ldd names;
#   - static vireo-agent and vireo (musl builds).
#
#   tests/rig/build-nfs-extra.sh OUTDIR AGENT VIREO
set -euo pipefail

[[ $# -eq 3 ]] || { echo "usage: $0 OUTDIR VIREO_AGENT VIREO_CLI" >&2; exit 2; }
out=$1 agent=$2 cli=$3
die() { echo "ERROR: $*" >&2; exit 1; }
for b in "$agent" "$cli"; do
  [[ -x $b ]] || die "$b is not an executable"
  if readelf -lW "$b" | grep -q 'Requesting program interpreter'; then
    die "$b is dynamically linked; build it for x86_64-unknown-linux-musl"
  fi
done

dl=$(mktemp -d "${TMPDIR:-/tmp}/vireo-nfs-debs.XXXXXX")
trap 'rm -rf "$dl"' EXIT
# apt-get download as root warns that _apt cannot write here; harmless.
(cd "$dl" && apt-get download -q nfs-kernel-server libwrap0 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$dl"/nfs-kernel-server_*.deb "$dl"/libwrap0_*.deb >/dev/null 2>&1 ||
  die "apt-get download nfs-kernel-server libwrap0 failed (apt-get update first)"
for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dl/root"; done

rm -rf "$out"
mkdir -p "$out/usr/sbin" "$out/usr/bin" "$out/etc" "$out/var/lib/nfs"
unpacked_libs=$dl/root/lib/x86_64-linux-gnu:$dl/root/usr/lib/x86_64-linux-gnu

# copy_with_libs SRC DEST: the program and every library ldd names (from the
# unpacked packages or this host), dereferenced, at the path it is loaded from.
copy_with_libs() {
  local src=$1 dest=$2 lib target
  install -D -m 755 "$src" "$out$dest"
  for lib in $(LD_LIBRARY_PATH=$unpacked_libs ldd "$src" | grep -o '/[^ ]*'); do
    target=${lib#"$dl/root"}
    # Unpacked libraries load from /lib/x86_64-linux-gnu inside the rig.
    [[ $lib == "$dl/root"* ]] && target=/lib/x86_64-linux-gnu/$(basename "$lib")
    [[ -e $out$target ]] || install -D -m 755 "$(readlink -f "$lib")" "$out$target"
  done
}
for prog in rpc.nfsd rpc.mountd exportfs; do
  copy_with_libs "$dl/root/usr/sbin/$prog" "/usr/sbin/$prog"
done
copy_with_libs "$(command -v ip)" /usr/sbin/ip
# libtirpc reads its transports from /etc/netconfig; mountd looks up services.
cp /etc/netconfig "$out/etc/netconfig" 2>/dev/null || cp "$dl/root/etc/netconfig" "$out/etc/netconfig" 2>/dev/null ||
  printf 'tcp tpi_cots_ord v inet tcp - -\nudp tpi_clts v inet udp - -\n' >"$out/etc/netconfig"
for f in /etc/protocols /etc/services; do [[ -r $f ]] && cp "$f" "$out$f"; done
install -m 755 "$agent" "$out/usr/bin/vireo-agent"
install -m 755 "$cli" "$out/usr/bin/vireo"
echo "[nfs-extra] $(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1) in $out"
