//! modules.alias: which module drives a device, from the device's modalias.
//! Pure: the table is parsed from text and matched with fnmatch-style globs.

/// `alias PATTERN MODULE` lines, in file order (modprobe's order).
#[derive(Debug, Default)]
pub struct AliasTable {
    entries: Vec<(String, String)>,
}

impl AliasTable {
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("alias"), Some(pat), Some(module)) => {
                        Some((pat.to_string(), super::normalize(module)))
                    }
                    _ => None,
                }
            })
            .collect();
        AliasTable { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every module whose pattern matches `modalias`, without repeats.
    pub fn lookup(&self, modalias: &str) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        for (pat, module) in &self.entries {
            if glob_match(pat.as_bytes(), modalias.as_bytes()) && !found.contains(&module.as_str())
            {
                found.push(module);
            }
        }
        found
    }
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`/`[^x]`.
/// Backtracks only to the last `*`, which is enough for glob semantics and
/// keeps the match linear-ish on the long PCI/CPU aliases.
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = match_class(&pat[p..], s[i]) {
                        if matched {
                            p += next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        // An unterminated '[' is a literal, as in fnmatch.
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches one byte against the class at the start of `pat` (`[...]`).
/// Returns (matched, length of the class) or None if there is no closing ']'.
fn match_class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut j = 1;
    let negate = matches!(pat.get(j), Some(b'!') | Some(b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() {
        if pat[j] == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if pat.get(j + 1) == Some(&b'-') && pat.get(j + 2).is_some_and(|&e| e != b']') {
            matched |= (pat[j]..=pat[j + 2]).contains(&c);
            j += 3;
        } else {
            matched |= pat[j] == c;
            j += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn globs() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abd"));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*", "a"));
        assert!(m("*", ""));
        assert!(!m("a?c", "ac"));
        assert!(m("a?c", "abc"));
        assert!(m("v[0-9]d", "v7d"));
        assert!(!m("v[!0-9]d", "v7d"));
        assert!(m("v[^0-9]d", "vxd"));
        assert!(m("x[]]y", "x]y"));
        assert!(m("a[b", "a[b"));
        assert!(m("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!m("*a*b*c", "xxaxxbxxcxx"));
    }

    #[test]
    fn real_aliases() {
        let table = AliasTable::parse(
            "# Aliases extracted from modules themselves.\n\
             alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e\n\
             alias virtio:d00000001v* virtio_net\n\
             alias cpu:type:x86,ven*fam*mod*:feature:*00C2* kvm_amd\n\
             alias cpu:type:x86,ven*fam*mod*:feature:*0085* kvm_intel\n\
             alias acpi*:LNXPWRBN:* button\n\
             alias pci:v*d*sv*sd*bc01sc06i01* ahci\n\
             alias pci:v00008086d*sv*sd*bc01sc06i01* ahci\n\
             alias fs-ext4 ext4\n",
        );
        assert_eq!(table.len(), 8);
        let nic = "pci:v00008086d000010D3sv00001AF4sd00001100bc02sc00i00";
        assert_eq!(table.lookup(nic), vec!["e1000e"]);
        assert_eq!(
            table.lookup("virtio:d00000001v00001AF4"),
            vec!["virtio_net"]
        );
        let cpu = "cpu:type:x86,ven0002fam0019mod0001:feature:,0000,0001,00C2,0100";
        assert_eq!(table.lookup(cpu), vec!["kvm_amd"]);
        assert_eq!(table.lookup("acpi:LNXPWRBN:"), vec!["button"]);
        let sata = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
        assert_eq!(table.lookup(sata), vec!["ahci"], "one module, listed once");
        assert!(table
            .lookup("pci:v00001234d00001111sv0sd0bc03sc00i00")
            .is_empty());
    }
}
