# shellcheck shell=bash
# Debian's linux-source tree, extracted once; shared by build-kernel.sh and
# tests/rig/build-guest-kernel.sh (sourced, not run).

# linux_source_tree SRC_PARENT
# Extracts the linux-source tarball (KERNEL_SOURCE_TARBALL, default the newest
# /usr/src/linux-source-*.tar.xz) under SRC_PARENT unless it is there already,
# and sets `srcdir` to the tree. A stamp file records which tarball the tree
# came from, so a new linux-source version (or an interrupted extraction)
# gives a fresh tree. Logs through the caller's `log`; on error says why on
# stderr and returns 1.
linux_source_tree() {
  local src_parent=$1 tarball stamp
  tarball=${KERNEL_SOURCE_TARBALL:-$(ls -1 /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true)}
  [[ -n $tarball && -f $tarball ]] ||
    { echo "no kernel source tarball; apt-get install linux-source" >&2; return 1; }
  stamp=$src_parent/.extracted-from
  if [[ ! -f $stamp || $(cat "$stamp") != "$tarball $(stat -c %Y "$tarball")" ]]; then
    log "extracting $tarball (about a minute)"
    rm -rf "$src_parent" && mkdir -p "$src_parent" && tar -xJf "$tarball" -C "$src_parent" || return 1
    echo "$tarball $(stat -c %Y "$tarball")" >"$stamp"
  fi
  srcdir=$(find "$src_parent" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n1)
  [[ -n $srcdir && -f $srcdir/Makefile ]] || { echo "no kernel tree under $src_parent" >&2; return 1; }
}
