//! Boot Loader Specification type #1 entries (`loader/entries/*.conf`:
//! `title`, `version`, `linux`, `initrd`, `options`), and the version
//! order that picks the newest entry or kernel.

use std::cmp::Ordering;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    pub version: Option<String>,
    pub linux: Option<String>,
    pub initrd: Vec<String>,
    pub options: Vec<String>,
}

/// One entry file's text. Unknown keys are ignored, as the spec says.
pub fn parse(file: &str, text: &str) -> Entry {
    let mut e = Entry {
        file: file.to_string(),
        ..Entry::default()
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => continue,
        };
        match key {
            "version" => e.version = Some(value.to_string()),
            "linux" => e.linux = Some(value.to_string()),
            "initrd" => e.initrd.push(value.to_string()),
            "options" => e.options.push(value.to_string()),
            _ => {}
        }
    }
    e
}

/// The entry a boot loader would pick by default: the highest version
/// (the file name when an entry has none), among those with a kernel.
pub fn newest(entries: Vec<Entry>) -> Option<Entry> {
    entries
        .into_iter()
        .filter(|e| e.linux.is_some())
        .max_by(|a, b| {
            let key = |e: &Entry| e.version.clone().unwrap_or_else(|| e.file.clone());
            compare_versions(&key(a), &key(b))
        })
}

/// Compares digit runs as numbers and the rest as text, so 6.10 > 6.9 and
/// vmlinuz-6.1.0-28 > vmlinuz-6.1.0-9.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() && !b.is_empty() {
        let (ra, rest_a) = run(a);
        let (rb, rest_b) = run(b);
        let order = match (ra[0].is_ascii_digit(), rb[0].is_ascii_digit()) {
            (true, true) => {
                let (ta, tb) = (trim_zeros(ra), trim_zeros(rb));
                ta.len().cmp(&tb.len()).then(ta.cmp(tb))
            }
            _ => ra.cmp(rb),
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (rest_a, rest_b);
    }
    a.len().cmp(&b.len())
}

/// The leading run of digits or of non-digits.
fn run(s: &[u8]) -> (&[u8], &[u8]) {
    let digit = s[0].is_ascii_digit();
    let n = s
        .iter()
        .position(|c| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_the_newest_wins() {
        let a = parse(
            "a.conf",
            "title Fedora\nversion 6.9.1\nlinux /vmlinuz-6.9.1\ninitrd /initramfs-6.9.1.img\n\
             options root=UUID=abcd ro\n# comment\n",
        );
        assert_eq!(a.linux.as_deref(), Some("/vmlinuz-6.9.1"));
        assert_eq!(a.initrd, ["/initramfs-6.9.1.img"]);
        assert_eq!(a.options, ["root=UUID=abcd ro"]);
        let b = parse("b.conf", "version 6.10.0\nlinux /vmlinuz-6.10.0\n");
        let rescue = parse("c.conf", "title rescue\n");
        assert_eq!(newest(vec![a, b.clone(), rescue]), Some(b));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("6.10", "6.9"), Ordering::Greater);
        assert_eq!(
            compare_versions("vmlinuz-6.1.0-28-amd64", "vmlinuz-6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("1.02", "1.2"), Ordering::Equal);
        assert_eq!(compare_versions("1.2", "1.2.1"), Ordering::Less);
    }
}
