#!/bin/sh
# Regenerates names.rs from this host's kernel UAPI headers (linux-libc-dev).
set -eu
cd "$(dirname "$0")"
python3 - <<'PY'
import re
def table(path):
    out = {}
    for m in re.finditer(r'#define __NR(?:3264)?_(\w+)\s+(\d+)', open(path).read()):
        out.setdefault(int(m.group(2)), m.group(1))
    return sorted(out.items())
tabs = (('x86_64', table('/usr/include/x86_64-linux-gnu/asm/unistd_64.h')),
        ('aarch64', table('/usr/include/asm-generic/unistd.h')))
with open('names.rs', 'w') as f:
    f.write("//! System call numbers → names, for the SIGSYS message. Generated from the\n")
    f.write("//! kernel's UAPI headers (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h)\n")
    f.write("//! by `vmm/src/seccomp/gen-names.sh`; a number missing here prints as a number.\n\n")
    for arch, tab in tabs:
        f.write(f'#[cfg(target_arch = "{arch}")]\nconst NAMES: &[(i64, &str)] = &[\n')
        f.writelines(f'    ({n}, "{s}"),\n' for n, s in tab)
        f.write('];\n\n')
    f.write('#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]\nconst NAMES: &[(i64, &str)] = &[];\n\n')
    f.write("/// The name of system call `nr` on this architecture.\npub fn name(nr: i64) -> Option<&'static str> {\n"
            "    NAMES\n        .binary_search_by_key(&nr, |&(n, _)| n)\n        .ok()\n        .map(|i| NAMES[i].1)\n}\n")
PY
