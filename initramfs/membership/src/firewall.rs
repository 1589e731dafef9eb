//! nftables rules for the totem port (docs/security.md, "The cluster
//! network"). corosync 3's udpu carries no authentication: anyone who can
//! send UDP to the port can speak totem. These rules accept the port only
//! from the nodelist's ring0 addresses and drop it from everyone else
//! (IPv6 included: the nodelist is IPv4). They live in a table of their
//! own, replaced whole each time, so they never touch other rules.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::config::CorosyncConfig;

/// The nftables table the rules live in.
pub const TABLE: &str = "vireo_totem";

/// The ruleset for `config`, as `nft -f` reads it: the table made (so the
/// delete cannot fail), deleted, and made again with the current members.
pub fn ruleset(config: &CorosyncConfig) -> String {
    let members: Vec<String> = config
        .nodes
        .iter()
        .map(|n| n.ring0_addr.to_string())
        .collect();
    let port = config.totem.port;
    let set = match members.is_empty() {
        true => String::new(),
        false => format!("elements = {{ {} }}; ", members.join(", ")),
    };
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tset members {{ type ipv4_addr; {set}}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -10; policy accept;\n\
         \t\tmeta nfproto ipv4 udp dport {port} ip saddr @members accept\n\
         \t\tudp dport {port} counter drop\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads `ruleset(config)` with `nft -f -` (in the caller's network
/// namespace).
pub fn apply(config: &CorosyncConfig) -> io::Result<()> {
    nft(&ruleset(config))
}

/// Removes the table (leaving the cluster).
pub fn remove() -> io::Result<()> {
    nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"))
}

fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("nft: {e}")))?;
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(script.as_bytes()));
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "nft -f: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_names_every_member_and_the_port() {
        let text = "totem {\n\tversion: 2\n\tcluster_name: c\n\ttransport: udpu\n\tinterface {\n\t\tlinknumber: 0\n\t\tmcastport: 5500\n\t}\n}\n\
                    nodelist {\n\tnode {\n\t\tring0_addr: 10.0.0.1\n\t\tnodeid: 1\n\t}\n\tnode {\n\t\tring0_addr: 10.0.0.2\n\t\tnodeid: 2\n\t}\n}\n\
                    quorum {\n\tprovider: corosync_votequorum\n}\n";
        let config = crate::config::parse(text).unwrap();
        let rules = ruleset(&config);
        assert!(
            rules.contains("elements = { 10.0.0.1, 10.0.0.2 }"),
            "{rules}"
        );
        assert!(
            rules.contains("udp dport 5500 ip saddr @members accept"),
            "{rules}"
        );
        assert!(rules.contains("udp dport 5500 counter drop"), "{rules}");
        assert!(rules.starts_with("table inet vireo_totem\ndelete table inet vireo_totem\n"));
    }
}
