#!/usr/bin/env bash
# Check that a kernel .config has every option of one or more fragments as
# the fragment asks: Kconfig (olddefconfig) silently drops an option whose
# dependencies are unmet, or a symbol that does not exist in this kernel.
#
#   kernel-config/check-config.sh CONFIG FRAGMENT...
#
# "CONFIG_X=v" lines must be in CONFIG exactly; "# CONFIG_X is not set" lines
# must not be set there. Prints each option that did not stick and exits 1,
# else prints how many it checked.
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 CONFIG FRAGMENT..." >&2; exit 2; }
cfg=$1
shift
[[ -r $cfg ]] || { echo "check-config: no $cfg" >&2; exit 2; }

missing=()
checked=0
for fragment in "$@"; do
  while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
      opt=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
      checked=$((checked + 1))
      grep -qxF "$opt=$val" "$cfg" ||
        missing+=("$opt=$val (got: $(grep -E "^(# )?${opt}[= ]" "$cfg" || echo unset)) [$(basename "$fragment")]")
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      opt=${BASH_REMATCH[1]}
      checked=$((checked + 1))
      if grep -qE "^$opt=" "$cfg"; then
        missing+=("$opt off (got: $(grep -E "^$opt=" "$cfg")) [$(basename "$fragment")]")
      fi
    fi
  done <"$fragment"
done

if ((${#missing[@]})); then
  echo "check-config: ${#missing[@]} of $checked option(s) did not stick in $cfg:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
echo "check-config: all $checked options of $* are in $cfg as asked"
