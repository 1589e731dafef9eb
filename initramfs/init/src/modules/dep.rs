//! modules.dep: where a module's file is and which modules it needs. Pure:
//! parsed from text; `load_order` gives the files to load, dependencies first.

use std::collections::{HashMap, HashSet};

#[derive(Debug)]
struct Entry {
    path: String,
    deps: Vec<String>,
}

/// Keyed by normalised module name (`kvm-amd` and `kvm_amd` are one module).
#[derive(Debug, Default)]
pub struct DepTable {
    modules: HashMap<String, Entry>,
}

impl DepTable {
    /// Lines look like `kernel/arch/x86/kvm/kvm-amd.ko: kernel/arch/x86/kvm/kvm.ko ...`.
    pub fn parse(text: &str) -> Self {
        let modules = text
            .lines()
            .filter_map(|line| {
                let (path, deps) = line.split_once(':')?;
                let path = path.trim();
                let deps = deps.split_whitespace().map(module_name).collect();
                let entry = Entry {
                    path: path.to_string(),
                    deps,
                };
                Some((module_name(path), entry))
            })
            .collect();
        DepTable { modules }
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Paths (relative to the modules directory) to load for `name`, each
    /// dependency before the modules that need it. Depth-first over each
    /// module's own entry, so it holds whatever order depmod listed them in;
    /// `seen` makes it safe on a (broken) cyclic file.
    pub fn load_order(&self, name: &str) -> Result<Vec<&str>, String> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        self.visit(&super::normalize(name), &mut seen, &mut order)?;
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let entry = self
            .modules
            .get(name)
            .ok_or_else(|| format!("module {name} is not in modules.dep"))?;
        for dep in &entry.deps {
            self.visit(dep, seen, order)?;
        }
        order.push(&entry.path);
        Ok(())
    }
}

/// modules.softdep's `pre:` lists (`softdep ext4 pre: crypto-crc32c`): what
/// a module needs loaded first but does not link against, often an alias
/// (the crypto API looks its algorithms up by name at run time).
pub fn parse_softdeps(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some("softdep"), Some(module)) = (words.next(), words.next()) else {
            continue;
        };
        let mut in_pre = false;
        for w in words {
            match w {
                "pre:" => in_pre = true,
                "post:" => in_pre = false,
                dep if in_pre => out
                    .entry(super::normalize(module))
                    .or_default()
                    .push(dep.to_string()),
                _ => {}
            }
        }
    }
    out
}

/// `kernel/x/kvm-amd.ko.xz` → `kvm_amd`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    super::normalize(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko.xz:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
";

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/arch/x86/kvm/kvm-amd.ko"), "kvm_amd");
        assert_eq!(module_name("kernel/drivers/crypto/ccp/ccp.ko.xz"), "ccp");
        assert_eq!(module_name("8021q.ko.zst"), "8021q");
    }

    #[test]
    fn dependencies_first() {
        let t = DepTable::parse(DEP);
        assert_eq!(t.len(), 7);
        assert_eq!(
            t.load_order("kvm_amd").unwrap(),
            t.load_order("kvm-amd").unwrap()
        );
        let order = t.load_order("kvm-amd").unwrap();
        assert_eq!(
            order,
            vec![
                "kernel/drivers/crypto/ccp/ccp.ko.xz",
                "kernel/virt/lib/irqbypass.ko",
                "kernel/arch/x86/kvm/kvm.ko",
                "kernel/arch/x86/kvm/kvm-amd.ko",
            ]
        );
        let order = t.load_order("bridge").unwrap();
        assert_eq!(order.last(), Some(&"kernel/net/bridge/bridge.ko"));
        assert_eq!(order[0], "kernel/net/llc/llc.ko", "llc before stp");
    }

    #[test]
    fn softdeps() {
        let s = parse_softdeps(
            "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep libcrc32c pre: crc32c post: x\nsoftdep a-b post: c\n",
        );
        assert_eq!(s["ext4"], vec!["crypto-crc32c"]);
        assert_eq!(s["libcrc32c"], vec!["crc32c"]);
        assert!(!s.contains_key("a_b"), "post only");
    }

    #[test]
    fn unknown_and_cycles() {
        let t = DepTable::parse("a.ko: b.ko\nb.ko: a.ko\nc.ko: missing.ko\n");
        assert_eq!(t.load_order("a").unwrap(), vec!["b.ko", "a.ko"]);
        assert!(t.load_order("nope").is_err());
        assert!(t.load_order("c").unwrap_err().contains("missing"));
    }
}
