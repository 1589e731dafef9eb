//! Vireo delivery logs (`VIREO_MEMBERSHIP_DELIVERY_LOG`): one line per event,
//! `config <rep.seq> <member ids…>` when a configuration is installed and
//! `deliver <sender nodeid> <hex payload>` per delivered message. The checks
//! here are the totem guarantees the chaos test asserts across all nodes.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Config { ring: String, members: Vec<u32> },
    Deliver { sender: u32, payload: String },
}

/// One run of one node.
#[derive(Debug, Clone)]
pub struct Log {
    pub node_id: u32,
    pub incarnation: u32,
    pub events: Vec<Event>,
}

/// Reads a log; a missing file is an empty log (the node never got that far)
/// and a last line without its newline is dropped (the node was killed while
/// writing it).
pub fn read(path: &Path) -> Result<Vec<Event>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(n, line)| parse_line(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1)))
        .collect()
}

fn parse_line(line: &str) -> Result<Event, String> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("config") => {
            let ring = words.next().ok_or("config without a ring id")?.to_string();
            let members = words
                .map(|w| w.parse().map_err(|_| format!("bad member id {w:?}")))
                .collect::<Result<Vec<u32>, String>>()?;
            Ok(Event::Config { ring, members })
        }
        Some("deliver") => {
            let sender = words.next().ok_or("deliver without a sender")?;
            let payload = words.next().unwrap_or("").to_string();
            Ok(Event::Deliver {
                sender: sender
                    .parse()
                    .map_err(|_| format!("bad sender {sender:?}"))?,
                payload,
            })
        }
        _ => Err(format!("unknown line {line:?}")),
    }
}

/// A message as delivered: sender node id and payload.
type Message = (u32, String);

/// One configuration as one node saw it: ring, sorted members, deliveries.
type RingView = (String, Vec<u32>, Vec<Message>);

/// The messages one log delivered in each configuration, in order.
fn per_ring(log: &Log) -> Result<Vec<RingView>, String> {
    let mut rings: Vec<RingView> = Vec::new();
    for event in &log.events {
        match event {
            Event::Config { ring, members } => {
                let mut sorted = members.clone();
                sorted.sort_unstable();
                rings.push((ring.clone(), sorted, Vec::new()));
            }
            Event::Deliver { sender, payload } => match rings.last_mut() {
                Some(r) => r.2.push((*sender, payload.clone())),
                None => {
                    return Err(format!(
                        "node {} run {} delivered before any configuration",
                        log.node_id, log.incarnation
                    ))
                }
            },
        }
    }
    Ok(rings)
}

#[derive(Debug, Default)]
pub struct Summary {
    pub configurations: usize,
    pub deliveries: usize,
}

/// Asserts across all logs: every node that installed a configuration lists the
/// same members and is one of them; within one configuration every node
/// delivered a prefix of the same message sequence, without duplicates.
pub fn check(logs: &[Log]) -> Result<Summary, String> {
    let mut members_of: BTreeMap<String, (Vec<u32>, u32)> = BTreeMap::new();
    let mut longest: BTreeMap<String, Vec<Message>> = BTreeMap::new();
    let mut summary = Summary::default();
    for log in logs {
        for (ring, members, msgs) in per_ring(log)? {
            summary.deliveries += msgs.len();
            if !members.contains(&log.node_id) {
                return Err(format!(
                    "node {} installed ring {ring} without itself: {members:?}",
                    log.node_id
                ));
            }
            let (first, by) = members_of
                .entry(ring.clone())
                .or_insert((members.clone(), log.node_id));
            if *first != members {
                return Err(format!(
                    "ring {ring}: node {by} has members {first:?}, node {} {members:?}",
                    log.node_id
                ));
            }
            let mut seen = HashSet::new();
            if let Some(dup) = msgs.iter().find(|m| !seen.insert(*m)) {
                return Err(format!(
                    "node {} delivered {dup:?} twice in ring {ring}",
                    log.node_id
                ));
            }
            let other = longest.entry(ring.clone()).or_default();
            let n = other.len().min(msgs.len());
            if other[..n] != msgs[..n] {
                let at = (0..n).find(|&k| other[k] != msgs[k]).unwrap_or(n);
                return Err(format!(
                    "ring {ring}: node {} delivered {:?} as message {at}, another node {:?}",
                    log.node_id, msgs[at], other[at]
                ));
            }
            if msgs.len() > other.len() {
                *other = msgs;
            }
        }
    }
    summary.configurations = members_of.len();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(node_id: u32, lines: &str) -> Log {
        Log {
            node_id,
            incarnation: 1,
            events: lines.lines().map(|l| parse_line(l).unwrap()).collect(),
        }
    }

    #[test]
    fn agreeing_logs_pass() {
        let a = log(
            1,
            "config 1.4 1 2\ndeliver 1 00\ndeliver 2 00\ndeliver 1 01",
        );
        let b = log(2, "config 1.4 2 1\ndeliver 1 00\ndeliver 2 00");
        let s = check(&[a, b]).unwrap();
        assert_eq!((s.configurations, s.deliveries), (1, 5));
    }

    #[test]
    fn each_violation_is_caught() {
        let a = log(1, "config 1.4 1 2\ndeliver 1 00\ndeliver 2 00");
        let reordered = log(2, "config 1.4 1 2\ndeliver 2 00\ndeliver 1 00");
        assert!(check(&[a.clone(), reordered])
            .unwrap_err()
            .contains("as message 0"));
        let other_members = log(2, "config 1.4 1 2 3");
        assert!(check(&[a.clone(), other_members])
            .unwrap_err()
            .contains("members"));
        let dup = log(2, "config 1.4 1 2\ndeliver 1 00\ndeliver 1 00");
        assert!(check(&[dup]).unwrap_err().contains("twice"));
        let outsider = log(3, "config 1.4 1 2");
        assert!(check(&[outsider]).unwrap_err().contains("without itself"));
        assert!(parse_line("hello").is_err());
        assert!(parse_line("deliver x 00").is_err());
    }
}
