//! Rewriting corosync.conf in place: the nodelist section is replaced by a
//! rendered one and everything else (comments, logging, timers) stays as the
//! operator wrote it, so the file remains one a real corosync 3 node reads.

use std::io::Write;
use std::path::Path;

use super::NodeConfig;

/// The nodelist section as corosync documents it.
pub fn render_nodelist(nodes: &[NodeConfig]) -> String {
    let mut s = String::from("nodelist {\n");
    for n in nodes {
        s += "    node {\n";
        if let Some(name) = &n.name {
            s += &format!("        name: {name}\n");
        }
        s += &format!("        nodeid: {}\n", n.nodeid);
        if n.votes != 1 {
            s += &format!("        quorum_votes: {}\n", n.votes);
        }
        s += &format!("        ring0_addr: {}\n    }}\n", n.ring0_addr);
    }
    s + "}\n"
}

/// `text` with its top-level section `name` replaced by `section` (a whole
/// `name { ... }` block), or `section` appended when there is none.
pub fn replace_section(text: &str, name: &str, section: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut depth = 0i32;
    let mut start = None;
    for (i, line) in lines.iter().enumerate() {
        let code = line.split('#').next().unwrap_or("").trim();
        if depth == 0 && start.is_none() && opens(code, name) {
            start = Some(i);
        }
        depth += code.matches('{').count() as i32;
        depth -= code.matches('}').count() as i32;
        if let Some(s) = start {
            if depth == 0 {
                let mut out: Vec<&str> = lines[..s].to_vec();
                out.push(section.trim_end());
                out.extend(&lines[i + 1..]);
                return out.join("\n") + "\n";
            }
        }
    }
    let mut out = text.trim_end().to_string();
    if !out.is_empty() {
        out += "\n\n";
    }
    out + section
}

fn opens(code: &str, name: &str) -> bool {
    code.strip_prefix(name)
        .is_some_and(|rest| rest.trim_start().starts_with('{'))
}

/// Writes `text` to `path` atomically (a temporary file renamed over it,
/// synced first), so a crash leaves the old file or the new, never half.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "# ours\ntotem {\n    version: 2\n    cluster_name: c\n    transport: udpu\n    crypto_cipher: none\n}\n\nnodelist {\n    node {\n        ring0_addr: 10.0.0.1\n        nodeid: 1\n    }\n}\n\nquorum {\n    provider: corosync_votequorum\n}\n";

    #[test]
    fn replaces_only_the_section() {
        let nodes = crate::config::parse(CONF).unwrap().nodes;
        let mut more = nodes.clone();
        more.push(NodeConfig {
            nodeid: 2,
            ring0_addr: "10.0.0.2".parse().unwrap(),
            name: Some("b".into()),
            votes: 1,
            line: 0,
        });
        let out = replace_section(CONF, "nodelist", &render_nodelist(&more));
        let parsed = crate::config::parse(&out).unwrap();
        assert_eq!(parsed.nodes.len(), 2);
        assert!(out.starts_with("# ours\ntotem {"));
        assert!(out.contains("cluster_name: c\n"));
        assert!(out.ends_with("provider: corosync_votequorum\n}\n"));
        let appended = replace_section("totem {\n}\n", "logging", "logging {\n}\n");
        assert_eq!(appended, "totem {\n}\n\nlogging {\n}\n");
    }
}
