//! corosync.conf, read as corosync 3.1.x reads it (exec/coroparse.c for syntax and
//! value types, exec/totemconfig.c and exec/votequorum.c for defaults), into a
//! typed configuration restricted to what Vireo speaks: udpu, no crypto, one IPv4
//! link, explicit node ids, votequorum.
//!
//! Options that would change behaviour we do not implement are errors naming the
//! line and what is supported. Keys corosync would merely store (or that do not
//! matter on udpu) are accepted and reported in [`CorosyncConfig::warnings`].

pub mod edit;
mod nodelist;
mod quorum;
mod syntax;
mod totem;

use thiserror::Error;

pub use nodelist::NodeConfig;
pub use quorum::{AutoTieBreaker, QuorumConfig};
pub use syntax::{Item, Section, MAX_LINE_LEN};
pub use totem::{CryptoCipher, CryptoHash, Timers, TotemConfig, Transport};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorosyncConfig {
    pub totem: TotemConfig,
    /// In file order.
    pub nodes: Vec<NodeConfig>,
    pub quorum: QuorumConfig,
    /// system.state_dir: where corosync keeps `ringid_<nodeid>` (None: the
    /// daemon's default, /var/lib/corosync).
    pub state_dir: Option<String>,
    /// Accepted but ignored settings, with their lines.
    pub warnings: Vec<ConfigWarning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("corosync.conf{}: {kind}", at_line(*.line))]
pub struct ConfigError {
    /// 1-based; 0 when the problem is the file as a whole (e.g. a missing section).
    pub line: usize,
    pub kind: ConfigErrorKind,
}

fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" line {line}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigErrorKind {
    /// corosync's own parser message for the same mistake.
    #[error("parser error: {0}")]
    Syntax(&'static str),
    #[error("value of key \"{key}\" is expected to be integer in range ({min}..{max}), but \"{value}\" was given")]
    NotInteger {
        key: String,
        value: String,
        min: i64,
        max: u64,
    },
    #[error("{key}: \"{value}\" is not supported; supported: {supported}")]
    UnsupportedValue {
        key: String,
        value: String,
        supported: &'static str,
    },
    #[error("{key} is not supported: {why}")]
    UnsupportedKey { key: String, why: &'static str },
    #[error("{key} is missing: {why}")]
    Missing { key: String, why: &'static str },
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    pub(crate) fn new(line: usize, kind: ConfigErrorKind) -> Self {
        ConfigError { line, kind }
    }
}

/// Parses and validates a whole corosync.conf.
pub fn parse(text: &str) -> Result<CorosyncConfig, ConfigError> {
    let root = syntax::parse(text)?;
    let mut warnings = Vec::new();
    let mut totem = None;
    let mut nodelist = None;
    let mut quorum = None;
    let mut state_dir = None;
    for item in &root.items {
        match item {
            Item::Section(s) if s.name == "totem" => totem = Some(s),
            Item::Section(s) if s.name == "nodelist" => nodelist = Some(s),
            Item::Section(s) if s.name == "quorum" => quorum = Some(s),
            Item::Section(s) if s.name == "system" => {
                state_dir = last_key(s, "state_dir").map(|(v, _)| v.to_string());
            }
            // Local concerns of the daemon, not of the protocol.
            Item::Section(s) if IGNORED_SECTIONS.contains(&s.name.as_str()) => {}
            Item::Section(s) => warn(
                &mut warnings,
                s.line,
                format!("unknown section \"{}\" ignored", s.name),
            ),
            Item::Key { key, line, .. } => warn(
                &mut warnings,
                *line,
                format!("top-level key \"{key}\" ignored"),
            ),
        }
    }
    let nodes = nodelist::parse(
        require(nodelist, "nodelist", "udpu needs every member listed")?,
        &mut warnings,
    )?;
    let totem_section = require(totem, "totem", "transport udpu must be chosen there")?;
    let totem = totem::parse(totem_section, nodes.len(), &mut warnings)?;
    let quorum_section = require(quorum, "quorum", "provider corosync_votequorum is required")?;
    let quorum = quorum::parse(quorum_section, &nodes, &mut warnings)?;
    Ok(CorosyncConfig {
        totem,
        nodes,
        quorum,
        state_dir,
        warnings,
    })
}

const IGNORED_SECTIONS: &[&str] = &["logging", "system", "resources", "uidgid", "qb", "nozzle"];

fn require<'a>(
    s: Option<&'a Section>,
    name: &str,
    why: &'static str,
) -> Result<&'a Section, ConfigError> {
    s.ok_or_else(|| {
        ConfigError::new(
            0,
            ConfigErrorKind::Missing {
                key: name.into(),
                why,
            },
        )
    })
}

pub(crate) fn warn(warnings: &mut Vec<ConfigWarning>, line: usize, message: String) {
    warnings.push(ConfigWarning { line, message });
}

/// The last value given for `key` in `section`, with its line: corosync stores
/// keys in a map, so a repeated key overrides the earlier one.
pub(crate) fn last_key<'a>(section: &'a Section, key: &str) -> Option<(&'a str, usize)> {
    section.items.iter().rev().find_map(|i| match i {
        Item::Key {
            key: k,
            value,
            line,
        } if k == key => Some((value.as_str(), *line)),
        _ => None,
    })
}

/// Integers as corosync's safe_atoq reads them: base 10, optional sign, whole
/// value, within the target type's range.
pub(crate) fn parse_int<T: TryFrom<i64> + Bounded>(
    path: &str,
    value: &str,
    line: usize,
) -> Result<T, ConfigError> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| {
            ConfigError::new(
                line,
                ConfigErrorKind::NotInteger {
                    key: path.into(),
                    value: value.into(),
                    min: 0,
                    max: T::MAX_U64,
                },
            )
        })
}

/// The largest value of each unsigned type corosync's config uses.
pub(crate) trait Bounded {
    const MAX_U64: u64;
}
impl Bounded for u8 {
    const MAX_U64: u64 = u8::MAX as u64;
}
impl Bounded for u16 {
    const MAX_U64: u64 = u16::MAX as u64;
}
impl Bounded for u32 {
    const MAX_U64: u64 = u32::MAX as u64;
}

/// An optional integer key of `section`, last occurrence winning.
pub(crate) fn int_key<T: TryFrom<i64> + Bounded>(
    section: &Section,
    prefix: &str,
    key: &str,
) -> Result<Option<T>, ConfigError> {
    last_key(section, key)
        .map(|(v, line)| parse_int(&format!("{prefix}.{key}"), v, line))
        .transpose()
}

#[cfg(test)]
mod tests;
