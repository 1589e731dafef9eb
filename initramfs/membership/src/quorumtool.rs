//! The text of `corosync-quorumtool -s` (corosync 3.1.7, tools/corosync-quorumtool.c),
//! both ways: [`render`] prints a [`ClusterStatus`] in that layout (what
//! `vireo cluster status` shows), [`parse`] reads the real tool's output back into
//! one, so tests compare a real corosync node with a Vireo node field by field.
//!
//! Differences from the real tool, on purpose:
//! - no `Date:` line (the time the tool ran says nothing about the cluster, and it
//!   makes two outputs differ for no reason); [`parse`] skips it;
//! - flags the status does not model (`AllowDownscale`, `Qdevice`) are not printed
//!   and are ignored when parsed; a Qdevice column in the table is rejected.
//!
//! Everything else, trailing spaces included, is printed the way the tool prints it.

use std::fmt::Write;

use crate::status::{ClusterStatus, MemberView, QuorumFlag, RingIdView};

const ALL_FLAGS: [QuorumFlag; 5] = [
    QuorumFlag::TwoNode,
    QuorumFlag::Quorate,
    QuorumFlag::WaitForAll,
    QuorumFlag::LastManStanding,
    QuorumFlag::AutoTieBreaker,
];

/// `corosync-quorumtool -s` without its `Date:` line.
pub fn render(s: &ClusterStatus) -> String {
    let mut out = String::new();
    out.push_str("Quorum information\n------------------\n");
    let _ = writeln!(out, "Quorum provider:  {}", s.provider);
    let _ = writeln!(out, "Nodes:            {}", s.members.len());
    let _ = writeln!(out, "Node ID:          {}", s.node_id);
    let _ = writeln!(out, "Ring ID:          {}", s.ring_id);
    let _ = writeln!(out, "Quorate:          {}", yes_no(s.quorate));
    out.push_str("\nVotequorum information\n----------------------\n");
    let _ = writeln!(out, "Expected votes:   {}", s.expected_votes);
    let _ = writeln!(out, "Highest expected: {}", s.highest_expected);
    let _ = writeln!(out, "Total votes:      {}", s.total_votes);
    // The tool keys this on the QUORATE flag, and prints " " when it is set.
    let blocked = match s.flags.contains(&QuorumFlag::Quorate) {
        true => " ",
        false => "Activity blocked",
    };
    let _ = writeln!(out, "Quorum:           {} {blocked}", s.quorum);
    out.push_str("Flags:            ");
    for flag in ALL_FLAGS.iter().filter(|f| s.flags.contains(f)) {
        let _ = write!(out, "{} ", flag.label());
    }
    out.push_str("\n\nMembership information\n----------------------\n");
    let _ = writeln!(out, "{:>10} {:>10} Name", "Nodeid", "Votes");
    for m in &s.members {
        let local = if m.node_id == s.node_id {
            " (local)"
        } else {
            ""
        };
        let _ = writeln!(out, "{:>10} {:>10} {}{local}", m.node_id, m.votes, m.name);
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Reads the output of the real `corosync-quorumtool -s` (with or without its
/// `Date:` line). Members keep the tool's order.
pub fn parse(text: &str) -> Result<ClusterStatus, String> {
    let field = |name: &str| -> Result<&str, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .ok_or_else(|| format!("no \"{name}:\" line in quorumtool output"))
    };
    let number = |name: &str| -> Result<u32, String> {
        let value = field(name)?;
        let digits = value.split_whitespace().next().unwrap_or("");
        digits
            .parse()
            .map_err(|_| format!("{name}: \"{value}\" is not a number"))
    };
    let members = parse_members(text)?;
    let nodes = number("Nodes")? as usize;
    if nodes != members.len() {
        return Err(format!(
            "Nodes: {nodes} but the table lists {}",
            members.len()
        ));
    }
    Ok(ClusterStatus {
        provider: field("Quorum provider")?.to_string(),
        node_id: number("Node ID")?,
        ring_id: parse_ring_id(field("Ring ID")?)?,
        quorate: match field("Quorate")? {
            "Yes" => true,
            "No" => false,
            other => return Err(format!("Quorate: \"{other}\" is neither Yes nor No")),
        },
        expected_votes: number("Expected votes")?,
        highest_expected: number("Highest expected")?,
        total_votes: number("Total votes")?,
        quorum: number("Quorum")?,
        flags: parse_flags(field("Flags")?),
        members,
        stats: Default::default(),
    })
}

/// `1.1c` (3.1.x); `1/28` is the newer tools' decimal form.
fn parse_ring_id(text: &str) -> Result<RingIdView, String> {
    let bad = || format!("Ring ID: \"{text}\" is not rep.seq");
    let (rep, seq, radix) = match text.split_once('.') {
        Some((r, s)) => (r, s, 16),
        None => text
            .split_once('/')
            .map(|(r, s)| (r, s, 10))
            .ok_or_else(bad)?,
    };
    Ok(RingIdView {
        rep: u32::from_str_radix(rep, radix).map_err(|_| bad())?,
        seq: u64::from_str_radix(seq, radix).map_err(|_| bad())?,
    })
}

fn parse_flags(text: &str) -> Vec<QuorumFlag> {
    let words: Vec<&str> = text.split_whitespace().collect();
    ALL_FLAGS
        .into_iter()
        .filter(|f| words.contains(&f.label()))
        .collect()
}

/// The rows after the `Nodeid Votes Name` header.
fn parse_members(text: &str) -> Result<Vec<MemberView>, String> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Nodeid"));
    let header = lines
        .next()
        .ok_or("no membership table in quorumtool output")?;
    if header.split_whitespace().collect::<Vec<_>>() != ["Nodeid", "Votes", "Name"] {
        return Err(format!("unexpected membership table header \"{header}\""));
    }
    let mut members = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let mut cols = line.split_whitespace();
        let (Some(id), Some(votes)) = (cols.next(), cols.next()) else {
            return Err(format!("short membership row \"{line}\""));
        };
        let name: Vec<&str> = cols.filter(|c| *c != "(local)").collect();
        let bad = || format!("bad membership row \"{line}\"");
        members.push(MemberView {
            node_id: id.parse().map_err(|_| bad())?,
            votes: votes.parse().map_err(|_| bad())?,
            name: name.join(" "),
        });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a real corosync 3.1.7 node by the cluster harness
    /// (tests/cluster, `real_three_nodes_form`).
    const REAL: &str = include_str!("../tests/data/quorumtool-3node.txt");
    const REAL_BLOCKED: &str = include_str!("../tests/data/quorumtool-2node-blocked.txt");

    fn without_date(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with("Date:"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn parse_then_render_gives_the_real_text_back() {
        for real in [REAL, REAL_BLOCKED] {
            let status = parse(real).unwrap();
            assert_eq!(render(&status), without_date(real));
        }
    }

    #[test]
    fn reads_every_field_of_a_real_output() {
        let s = parse(REAL).unwrap();
        assert_eq!(s.provider, "corosync_votequorum");
        assert_eq!(s.members.len(), 3);
        assert!(s.quorate);
        assert_eq!((s.expected_votes, s.total_votes, s.quorum), (3, 3, 2));
        assert_eq!(s.flags, vec![QuorumFlag::Quorate]);
        assert!(s.members.iter().any(|m| m.node_id == s.node_id));
        let b = parse(REAL_BLOCKED).unwrap();
        assert!(!b.quorate);
        assert!(b.flags.contains(&QuorumFlag::TwoNode));
    }

    #[test]
    fn ring_ids_in_both_notations() {
        let r = parse_ring_id("1.1c").unwrap();
        assert_eq!((r.rep, r.seq), (1, 0x1c));
        assert_eq!(r.to_string(), "1.1c");
        let r = parse_ring_id("3/40").unwrap();
        assert_eq!((r.rep, r.seq), (3, 40));
        assert!(parse_ring_id("x.1").is_err());
        assert!(parse_ring_id("17").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "Nodes: x", "Quorate: Maybe", &REAL[..REAL.len() / 2]] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        let wrong_count = REAL.replace("Nodes:            3", "Nodes:            4");
        assert!(parse(&wrong_count).unwrap_err().contains("table lists 3"));
    }
}
