//! The quorum section: votequorum and its options, with the defaults and the
//! option interplay votequorum applies at startup (votequorum_readconfig in
//! exec/votequorum.c).

use super::{
    int_key, last_key, warn, ConfigError, ConfigErrorKind, ConfigWarning, Item, NodeConfig, Section,
};

/// Which partition wins a tie under auto_tie_breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoTieBreaker {
    Lowest,
    Highest,
    /// The first listed node present wins.
    Nodes(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// Configured expected_votes; None means the sum of the nodelist's votes.
    pub expected_votes: Option<u32>,
    pub two_node: bool,
    /// Effective: defaults to two_node when not configured.
    pub wait_for_all: bool,
    pub last_man_standing: bool,
    /// Milliseconds; default 10000.
    pub last_man_standing_window: u32,
    /// Effective: None when disabled (also when corosync would disable it).
    pub auto_tie_breaker: Option<AutoTieBreaker>,
}

const KNOWN: &[&str] = &[
    "provider",
    "expected_votes",
    "two_node",
    "wait_for_all",
    "last_man_standing",
    "last_man_standing_window",
    "auto_tie_breaker",
    "auto_tie_breaker_node",
];

pub(super) fn parse(
    s: &Section,
    nodes: &[NodeConfig],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<QuorumConfig, ConfigError> {
    check_keys(s, warnings)?;
    match last_key(s, "provider") {
        Some(("corosync_votequorum", _)) => {}
        Some((v, line)) => {
            return Err(ConfigError::new(
                line,
                ConfigErrorKind::UnsupportedValue {
                    key: "quorum.provider".into(),
                    value: v.into(),
                    supported: "corosync_votequorum",
                },
            ))
        }
        None => {
            return Err(ConfigError::new(
                s.line,
                ConfigErrorKind::Missing {
                    key: "quorum.provider".into(),
                    why: "set it to corosync_votequorum",
                },
            ))
        }
    }
    let flag = |key: &str| -> Result<Option<bool>, ConfigError> {
        Ok(int_key::<u8>(s, "quorum", key)?.map(|v| v != 0))
    };
    let mut two_node = flag("two_node")?.unwrap_or(false);
    let wait_for_all = flag("wait_for_all")?.unwrap_or(two_node);
    let last_man_standing = flag("last_man_standing")?.unwrap_or(false);
    let mut atb = if flag("auto_tie_breaker")?.unwrap_or(false) {
        Some(tie_breaker(s)?)
    } else {
        None
    };
    if two_node && atb.is_some() {
        // corosync keeps running with two_node turned off.
        warn(
            warnings,
            s.line,
            "two_node and auto_tie_breaker are incompatible: two_node disabled, as corosync does"
                .into(),
        );
        two_node = false;
    }
    let node_votes: u64 = nodes.iter().map(|n| u64::from(n.votes)).sum();
    if atb.is_some() && node_votes % 2 == 1 && !wait_for_all {
        if last_man_standing {
            return Err(ConfigError::new(
                s.line,
                ConfigErrorKind::Invalid("auto_tie_breaker & last_man_standing not available in odd sized cluster without wait_for_all".into()),
            ));
        }
        warn(warnings, s.line, "auto_tie_breaker needs wait_for_all in an odd-sized cluster: disabled, as corosync does".into());
        atb = None;
    }
    Ok(QuorumConfig {
        expected_votes: int_key(s, "quorum", "expected_votes")?,
        two_node,
        wait_for_all,
        last_man_standing,
        last_man_standing_window: int_key(s, "quorum", "last_man_standing_window")?
            .unwrap_or(10_000),
        auto_tie_breaker: atb,
    })
}

fn check_keys(s: &Section, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
    for item in &s.items {
        match item {
            Item::Section(sub) if sub.name == "device" => {
                return Err(ConfigError::new(
                    sub.line,
                    ConfigErrorKind::UnsupportedKey {
                        key: "quorum.device".into(),
                        why: "quorum devices (qdevice) are not supported",
                    },
                ))
            }
            Item::Section(sub) => warn(warnings, sub.line, format!("quorum.{} ignored", sub.name)),
            Item::Key { key, value, line } => match key.as_str() {
                k if KNOWN.contains(&k) => {}
                "allow_downscale" | "expected_votes_tracking" if value != "0" => {
                    return Err(ConfigError::new(
                        *line,
                        ConfigErrorKind::UnsupportedKey {
                            key: format!("quorum.{key}"),
                            why: "expected-votes tracking is not implemented",
                        },
                    ))
                }
                k => warn(warnings, *line, format!("quorum.{k} ignored")),
            },
        }
    }
    Ok(())
}

/// "lowest", "highest", or a space-separated list of node ids; corosync falls back
/// to disabling the tie breaker on anything else, we refuse it instead.
fn tie_breaker(s: &Section) -> Result<AutoTieBreaker, ConfigError> {
    let Some((v, line)) = last_key(s, "auto_tie_breaker_node") else {
        return Ok(AutoTieBreaker::Lowest);
    };
    match v {
        "lowest" => Ok(AutoTieBreaker::Lowest),
        "highest" => Ok(AutoTieBreaker::Highest),
        list => list
            .split_whitespace()
            .map(|id| id.parse::<u32>().ok().filter(|&id| id != 0))
            .collect::<Option<Vec<_>>>()
            .filter(|ids| !ids.is_empty())
            .map(AutoTieBreaker::Nodes)
            .ok_or_else(|| {
                ConfigError::new(
                    line,
                    ConfigErrorKind::UnsupportedValue {
                        key: "quorum.auto_tie_breaker_node".into(),
                        value: v.into(),
                        supported: "lowest, highest, or a space-separated list of node ids",
                    },
                )
            }),
    }
}
