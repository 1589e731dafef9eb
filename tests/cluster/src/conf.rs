//! What a test cluster is made of, and the corosync.conf every node gets. Real
//! and Vireo nodes read the same file (only the paths differ), so both
//! implementations run with the same timers and quorum options.

use std::fmt::Write;
use std::path::Path;

use crate::net::node_addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// corosync from the distribution (Debian 12: 3.1.7).
    Corosync,
    /// vireo-membershipd.
    Vireo,
}

/// votequorum options, all off by default (corosync's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuorumOptions {
    pub two_node: bool,
    pub wait_for_all: bool,
    pub last_man_standing: bool,
    pub auto_tie_breaker: bool,
    /// last_man_standing_window in ms (corosync's default is 10000).
    pub last_man_standing_window_ms: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub cluster_name: String,
    /// totem.token in ms, before the coefficient.
    pub token_ms: u32,
    /// totem.token_coefficient: added to token per node above two.
    pub token_coefficient_ms: u32,
    pub quorum: QuorumOptions,
    /// One entry per node, in node-id order (node i has id i+1).
    pub kinds: Vec<Kind>,
}

impl ClusterSpec {
    /// `kinds.len()` nodes with a 1 s token and corosync's default coefficient.
    pub fn new(kinds: &[Kind]) -> ClusterSpec {
        ClusterSpec {
            cluster_name: "vireolab".into(),
            token_ms: 1000,
            token_coefficient_ms: 650,
            quorum: QuorumOptions::default(),
            kinds: kinds.to_vec(),
        }
    }

    pub fn real(n: usize) -> ClusterSpec {
        ClusterSpec::new(&vec![Kind::Corosync; n])
    }

    pub fn vireo(n: usize) -> ClusterSpec {
        ClusterSpec::new(&vec![Kind::Vireo; n])
    }

    pub fn with_quorum(mut self, quorum: QuorumOptions) -> ClusterSpec {
        self.quorum = quorum;
        self
    }

    pub fn node_id(index: usize) -> u32 {
        index as u32 + 1
    }

    pub fn node_name(index: usize) -> String {
        format!("node{}", index + 1)
    }

    /// The corosync.conf of a node whose files live in `dir`.
    pub fn render(&self, dir: &Path) -> String {
        let mut c = String::new();
        let _ = write!(
            c,
            "totem {{\n    version: 2\n    cluster_name: {}\n    transport: udpu\n    \
             crypto_cipher: none\n    crypto_hash: none\n    token: {}\n    \
             token_coefficient: {}\n}}\n\nnodelist {{\n",
            self.cluster_name, self.token_ms, self.token_coefficient_ms
        );
        for i in 0..self.kinds.len() {
            let _ = write!(
                c,
                "    node {{\n        ring0_addr: {}\n        nodeid: {}\n        name: {}\n    }}\n",
                node_addr(i),
                Self::node_id(i),
                Self::node_name(i)
            );
        }
        // Only the options that are on: an explicit `wait_for_all: 0` would
        // override the wait_for_all that two_node turns on by default.
        c.push_str("}\n\nquorum {\n    provider: corosync_votequorum\n");
        let q = self.quorum;
        let options = [
            ("two_node", q.two_node),
            ("wait_for_all", q.wait_for_all),
            ("last_man_standing", q.last_man_standing),
            ("auto_tie_breaker", q.auto_tie_breaker),
        ];
        for (key, _) in options.iter().filter(|(_, on)| *on) {
            let _ = writeln!(c, "    {key}: 1");
        }
        if let Some(ms) = q.last_man_standing_window_ms {
            let _ = writeln!(c, "    last_man_standing_window: {ms}");
        }
        c.push_str("}\n\n");
        let _ = write!(
            c,
            "logging {{\n    to_logfile: yes\n    logfile: {}\n    to_stderr: no\n    \
             to_syslog: no\n}}\n\nsystem {{\n    state_dir: {}\n    \
             sched_rr: no\n    move_to_root_cgroup: no\n}}\n",
            dir.join("corosync.log").display(),
            dir.display()
        );
        c
    }
}
