//! The nodelist: on udpu every member, ourselves included, with an explicit
//! nodeid and an IPv4 ring0 address (no name resolution).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{int_key, last_key, warn, ConfigError, ConfigErrorKind, ConfigWarning, Item, Section};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub nodeid: u32,
    pub ring0_addr: Ipv4Addr,
    pub name: Option<String>,
    /// quorum_votes, default 1.
    pub votes: u32,
    /// Line of the node's opening brace.
    pub line: usize,
}

pub(super) fn parse(
    s: &Section,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<NodeConfig>, ConfigError> {
    let mut nodes = Vec::new();
    for item in &s.items {
        match item {
            Item::Section(node) if node.name == "node" => nodes.push(parse_node(node, warnings)?),
            Item::Section(other) => warn(
                warnings,
                other.line,
                format!("nodelist.{} ignored", other.name),
            ),
            Item::Key { key, line, .. } => warn(warnings, *line, format!("nodelist.{key} ignored")),
        }
    }
    if nodes.is_empty() {
        return Err(ConfigError::new(
            s.line,
            ConfigErrorKind::Missing {
                key: "nodelist.node".into(),
                why: "udpu needs every member listed",
            },
        ));
    }
    check_unique(&nodes)?;
    Ok(nodes)
}

fn parse_node(s: &Section, warnings: &mut Vec<ConfigWarning>) -> Result<NodeConfig, ConfigError> {
    for item in &s.items {
        let Item::Key { key, line, .. } = item else {
            warn(warnings, s.line, "subsection of a node ignored".into());
            continue;
        };
        match key.as_str() {
            "nodeid" | "ring0_addr" | "name" | "quorum_votes" => {}
            k if k.starts_with("ring") && k.ends_with("_addr") => {
                return Err(ConfigError::new(
                    *line,
                    ConfigErrorKind::UnsupportedKey {
                        key: format!("nodelist.node.{k}"),
                        why: "one link only (ring0_addr)",
                    },
                ))
            }
            k => warn(warnings, *line, format!("nodelist.node.{k} ignored")),
        }
    }
    let missing = |key: &str, why| {
        ConfigError::new(
            s.line,
            ConfigErrorKind::Missing {
                key: format!("nodelist.node.{key}"),
                why,
            },
        )
    };
    let nodeid = int_key::<u32>(s, "nodelist.node", "nodeid")?
        .ok_or_else(|| missing("nodeid", "every node needs an explicit nodeid"))?;
    if nodeid == 0 {
        let line = last_key(s, "nodeid").map_or(s.line, |(_, l)| l);
        return Err(ConfigError::new(
            line,
            ConfigErrorKind::Invalid("nodeid 0 is reserved".into()),
        ));
    }
    let (addr, addr_line) =
        last_key(s, "ring0_addr").ok_or_else(|| missing("ring0_addr", "udpu sends to it"))?;
    let ring0_addr = addr.parse().map_err(|_| {
        ConfigError::new(
            addr_line,
            ConfigErrorKind::UnsupportedValue {
                key: "nodelist.node.ring0_addr".into(),
                value: addr.into(),
                supported: "an IPv4 address (host names are not resolved)",
            },
        )
    })?;
    Ok(NodeConfig {
        nodeid,
        ring0_addr,
        name: last_key(s, "name").map(|(v, _)| v.to_string()),
        votes: int_key(s, "nodelist.node", "quorum_votes")?.unwrap_or(1),
        line: s.line,
    })
}

fn check_unique(nodes: &[NodeConfig]) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let mut addrs = HashSet::new();
    for n in nodes {
        if !ids.insert(n.nodeid) {
            return Err(ConfigError::new(
                n.line,
                ConfigErrorKind::Invalid(format!("nodeid {} listed twice", n.nodeid)),
            ));
        }
        if !addrs.insert(n.ring0_addr) {
            return Err(ConfigError::new(
                n.line,
                ConfigErrorKind::Invalid(format!("ring0_addr {} listed twice", n.ring0_addr)),
            ));
        }
    }
    Ok(())
}
