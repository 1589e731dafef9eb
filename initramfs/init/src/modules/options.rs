//! Module parameters from the kernel command line (`kvm_amd.nested=1`).
//!
//! The kernel applies `module.param=value` itself only to built-in code; for
//! a loadable module the loader must pass them to finit_module, as kmod's
//! modprobe does. Quoted values with spaces are not supported.

use std::collections::HashMap;

use super::normalize;

/// Module name → its parameters joined by spaces (`"vgif=0 nested=1"`),
/// in command-line order. `vireo.*` is init's own and never a module's.
pub fn parse(cmdline: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for word in cmdline.split_whitespace() {
        let key = word.split('=').next().unwrap_or("");
        let Some((module, _)) = key.split_once('.') else {
            continue;
        };
        let valid = !module.is_empty()
            && module != "vireo"
            && module
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let param = &word[module.len() + 1..];
        if !valid || param.is_empty() || param.starts_with('=') {
            continue;
        }
        let entry = out.entry(normalize(module)).or_default();
        if !entry.is_empty() {
            entry.push(' ');
        }
        entry.push_str(param);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_parameters_per_module() {
        let opts = parse(
            "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 kvm_amd.vgif=0 kvm-amd.nested=1 \
             vireo.hostname=n1 bonding.max_bonds=0 e1000e.debug",
        );
        assert_eq!(opts.get("kvm_amd").unwrap(), "vgif=0 nested=1");
        assert_eq!(opts.get("bonding").unwrap(), "max_bonds=0");
        assert_eq!(opts.get("e1000e").unwrap(), "debug");
        assert!(!opts.contains_key("vireo"));
        assert_eq!(opts.len(), 3);
    }

    #[test]
    fn ignores_words_that_are_not_module_parameters() {
        for bad in [
            "=1",
            ".x=1",
            "a.=1",
            "a/b.c=1",
            "ip=10.0.2.15::10.0.2.2",
            "x.=",
            "a b",
        ] {
            assert!(parse(bad).is_empty(), "{bad}");
        }
    }
}
