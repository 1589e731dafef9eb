//! The totem section: transport, crypto and the protocol timers, with defaults
//! computed the way corosync computes them (totem_volatile_config_read in
//! exec/totemconfig.c).

use super::{
    int_key, last_key, parse_int, warn, ConfigError, ConfigErrorKind, ConfigWarning, Item, Section,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udpu,
}

/// Only unencrypted traffic for now; knet with crypto comes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoCipher {
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoHash {
    None,
}

/// Effective protocol timers and limits, in milliseconds or counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Token loss timeout, with token_coefficient applied for clusters above 2 nodes.
    pub token: u32,
    pub token_retransmit: u32,
    pub hold: u32,
    pub token_retransmits_before_loss_const: u32,
    pub join: u32,
    pub send_join: u32,
    pub consensus: u32,
    pub merge: u32,
    pub downcheck: u32,
    pub fail_recv_const: u32,
    pub seqno_unchanged_const: u32,
    pub max_network_delay: u32,
    pub window_size: u32,
    pub max_messages: u32,
    pub miss_count_const: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotemConfig {
    pub cluster_name: Option<String>,
    pub transport: Transport,
    pub crypto_cipher: CryptoCipher,
    pub crypto_hash: CryptoHash,
    pub config_version: u64,
    /// UDP port of every member (interface mcastport).
    pub port: u16,
    pub netmtu: u32,
    pub block_unlisted_ips: bool,
    pub cancel_token_hold_on_retransmit: bool,
    /// `token` as configured (default 3000), before the coefficient.
    pub token: u32,
    pub token_coefficient: u32,
    pub timers: Timers,
}

const TOKEN_DEFAULT: u32 = 3000;
const TOKEN_COEFFICIENT_DEFAULT: u32 = 650;
/// corosync's MINIMUM_TIMEOUT: (1000 / HZ) * 3 with HZ = 100.
const MINIMUM_TIMEOUT: u32 = 30;
/// corosync's MINIMUM_TIMEOUT_HOLD: MINIMUM_TIMEOUT * 0.8 - 1000 / HZ.
const MINIMUM_TIMEOUT_HOLD: u32 = 14;

/// Integer keys corosync types as uint32 that we only validate, not use.
const IGNORED_U32_KEYS: &[&str] = &[
    "token_warning",
    "heartbeat_failures_allowed",
    "threads",
    "nodeid",
];
const TIMER_KEYS: &[&str] = &[
    "token",
    "token_coefficient",
    "token_retransmit",
    "hold",
    "token_retransmits_before_loss_const",
    "join",
    "send_join",
    "consensus",
    "merge",
    "downcheck",
    "fail_recv_const",
    "seqno_unchanged_const",
    "max_network_delay",
    "window_size",
    "max_messages",
    "miss_count_const",
    "netmtu",
];

pub(super) fn parse(
    s: &Section,
    nodes: usize,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<TotemConfig, ConfigError> {
    check_keys(s, warnings)?;
    let transport = match last_key(s, "transport") {
        Some(("udpu", _)) => Transport::Udpu,
        Some((v, line)) => return Err(unsupported(line, "totem.transport", v, "udpu")),
        None => {
            return Err(ConfigError::new(
                s.line,
                ConfigErrorKind::Missing {
                    key: "totem.transport".into(),
                    why: "corosync 3 defaults to knet, which Vireo does not speak yet; set udpu",
                },
            ))
        }
    };
    let token = nonzero_or(int_key(s, "totem", "token")?, TOKEN_DEFAULT);
    let token_coefficient =
        int_key(s, "totem", "token_coefficient")?.unwrap_or(TOKEN_COEFFICIENT_DEFAULT);
    Ok(TotemConfig {
        cluster_name: last_key(s, "cluster_name").map(|(v, _)| v.to_string()),
        transport,
        crypto_cipher: crypto(s)?.0,
        crypto_hash: crypto(s)?.1,
        config_version: config_version(s)?,
        port: interface_port(s)?,
        netmtu: nonzero_or(int_key(s, "totem", "netmtu")?, 1500),
        block_unlisted_ips: yes_no(s, "block_unlisted_ips", true)?,
        cancel_token_hold_on_retransmit: yes_no(s, "cancel_token_hold_on_retransmit", false)?,
        token,
        token_coefficient,
        timers: timers(s, nodes, token, token_coefficient)?,
    })
}

/// Every key is either understood, harmless, or refused.
fn check_keys(s: &Section, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
    for item in &s.items {
        let (key, value, line) = match item {
            Item::Key { key, value, line } => (key.as_str(), value.as_str(), *line),
            Item::Section(sub) if sub.name == "interface" => continue,
            Item::Section(sub) => {
                warn(
                    warnings,
                    sub.line,
                    format!("unknown section totem.{} ignored", sub.name),
                );
                continue;
            }
        };
        let path = format!("totem.{key}");
        match key {
            "version" if value != "2" => return Err(unsupported(line, &path, value, "2")),
            "secauth" if value != "off" => {
                return Err(unsupported(
                    line,
                    &path,
                    value,
                    "off (crypto is not supported yet)",
                ))
            }
            "ip_version" if !matches!(value, "ipv4" | "ipv4-6" | "ipv6-4") => {
                return Err(unsupported(
                    line,
                    &path,
                    value,
                    "ipv4, ipv4-6, ipv6-4 (IPv4 addresses only)",
                ))
            }
            k if IGNORED_U32_KEYS.contains(&k) => {
                parse_int::<u32>(&path, value, line)?;
                warn(warnings, line, format!("{path} ignored"));
            }
            k if k.starts_with("knet_") || k.starts_with("rrp_") || k == "link_mode" => {
                warn(
                    warnings,
                    line,
                    format!("{path} ignored: it has no effect with udpu"),
                );
            }
            "version"
            | "secauth"
            | "ip_version"
            | "cluster_name"
            | "transport"
            | "crypto_cipher"
            | "crypto_hash"
            | "crypto_model"
            | "config_version"
            | "block_unlisted_ips"
            | "cancel_token_hold_on_retransmit" => {}
            k if TIMER_KEYS.contains(&k) => {}
            _ => warn(warnings, line, format!("unknown key {path} ignored")),
        }
    }
    Ok(())
}

fn unsupported(line: usize, key: &str, value: &str, supported: &'static str) -> ConfigError {
    ConfigError::new(
        line,
        ConfigErrorKind::UnsupportedValue {
            key: key.into(),
            value: value.into(),
            supported,
        },
    )
}

/// corosync treats 0 as "not set" for most timers.
fn nonzero_or(v: Option<u32>, default: u32) -> u32 {
    v.filter(|&v| v != 0).unwrap_or(default)
}

fn crypto(s: &Section) -> Result<(CryptoCipher, CryptoHash), ConfigError> {
    let supported = "none (crypto is not supported yet)";
    if let Some((v, line)) = last_key(s, "crypto_cipher").filter(|(v, _)| *v != "none") {
        return Err(unsupported(line, "totem.crypto_cipher", v, supported));
    }
    if let Some((v, line)) = last_key(s, "crypto_hash").filter(|(v, _)| *v != "none") {
        return Err(unsupported(line, "totem.crypto_hash", v, supported));
    }
    Ok((CryptoCipher::None, CryptoHash::None))
}

fn config_version(s: &Section) -> Result<u64, ConfigError> {
    match last_key(s, "config_version") {
        None => Ok(0),
        Some((v, line)) => v.parse().map_err(|_| {
            ConfigError::new(
                line,
                ConfigErrorKind::NotInteger {
                    key: "totem.config_version".into(),
                    value: v.into(),
                    min: 0,
                    max: u64::MAX,
                },
            )
        }),
    }
}

fn yes_no(s: &Section, key: &str, default: bool) -> Result<bool, ConfigError> {
    match last_key(s, key) {
        None => Ok(default),
        Some(("yes", _)) => Ok(true),
        Some(("no", _)) => Ok(false),
        Some((v, line)) => Err(unsupported(line, &format!("totem.{key}"), v, "yes, no")),
    }
}

/// The port from the interface section; only link 0 exists on udpu here.
fn interface_port(s: &Section) -> Result<u16, ConfigError> {
    let mut port = 5405;
    for item in &s.items {
        let Item::Section(iface) = item else { continue };
        if iface.name != "interface" {
            continue;
        }
        if let Some((v, line)) = last_key(iface, "linknumber").filter(|(v, _)| *v != "0") {
            return Err(unsupported(
                line,
                "totem.interface.linknumber",
                v,
                "0 (one link)",
            ));
        }
        if let Some(p) = int_key::<u16>(iface, "totem.interface", "mcastport")? {
            port = p;
        }
    }
    Ok(port)
}

fn timers(s: &Section, nodes: usize, token: u32, coefficient: u32) -> Result<Timers, ConfigError> {
    let get = |key: &str, default: u32| -> Result<u32, ConfigError> {
        Ok(nonzero_or(int_key(s, "totem", key)?, default))
    };
    let mut token = token;
    if nodes > 2 {
        token = token.saturating_add(((nodes - 2) as u32).saturating_mul(coefficient));
    }
    let trbl = get("token_retransmits_before_loss_const", 4)?;
    let token_retransmit = get(
        "token_retransmit",
        (f64::from(token) / (f64::from(trbl) + 0.2)) as u32,
    )?;
    let t = Timers {
        token,
        token_retransmit,
        hold: get("hold", (f64::from(token_retransmit) * 0.8 - 10.0) as u32)?,
        token_retransmits_before_loss_const: trbl,
        join: get("join", 50)?,
        send_join: int_key(s, "totem", "send_join")?.unwrap_or(0),
        // corosync rounds through a float here.
        consensus: get("consensus", (1.2 * f64::from(token)) as f32 as u32)?,
        merge: get("merge", 200)?,
        downcheck: get("downcheck", 1000)?,
        fail_recv_const: get("fail_recv_const", 2500)?,
        seqno_unchanged_const: get("seqno_unchanged_const", 30)?,
        max_network_delay: get("max_network_delay", 50)?,
        window_size: get("window_size", 50)?,
        max_messages: get("max_messages", 17)?,
        miss_count_const: get("miss_count_const", 5)?,
    };
    validate(s, &t)?;
    Ok(t)
}

/// corosync's totem_volatile_config_validate lower bounds.
fn validate(s: &Section, t: &Timers) -> Result<(), ConfigError> {
    let checks = [
        ("max_network_delay", t.max_network_delay, MINIMUM_TIMEOUT),
        ("token", t.token, MINIMUM_TIMEOUT),
        ("token_retransmit", t.token_retransmit, MINIMUM_TIMEOUT),
        ("hold", t.hold, MINIMUM_TIMEOUT_HOLD),
        ("join", t.join, MINIMUM_TIMEOUT),
        ("consensus", t.consensus, MINIMUM_TIMEOUT.max(t.join)),
        ("merge", t.merge, MINIMUM_TIMEOUT),
        ("downcheck", t.downcheck, MINIMUM_TIMEOUT),
    ];
    for (key, value, min) in checks {
        if value < min {
            let line = last_key(s, key).map_or(s.line, |(_, l)| l);
            return Err(ConfigError::new(
                line,
                ConfigErrorKind::Invalid(format!(
                    "the totem {key} timeout ({value} ms) may not be less than {min} ms"
                )),
            ));
        }
    }
    Ok(())
}
