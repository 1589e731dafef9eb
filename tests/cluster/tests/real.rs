//! Real corosync only: pins the harness (namespaces, configs, status parsing,
//! kills, partitions) against corosync 3.1.7 and records what a Vireo node has
//! to match. Every figure printed here is what the interop tests hold Vireo to.

use std::time::{Duration, Instant};

use vireo_cluster_tests::expect::{same_ring, wait_for_expected_votes, wait_for_view};
use vireo_cluster_tests::{Cluster, ClusterSpec, QuorumOptions};
use vireo_membership::status::QuorumFlag;

/// Forming from cold takes corosync a few seconds; this leaves room for a
/// loaded CI machine.
const FORM: Duration = Duration::from_secs(30);

/// With `VIREO_CLUSTER_CAPTURE=DIR` the raw quorumtool text is saved there (the
/// fixtures of vireo-membership's quorumtool tests were made this way).
fn capture(c: &Cluster, node: usize, name: &str) {
    if let Some(dir) = std::env::var_os("VIREO_CLUSTER_CAPTURE") {
        let text = c.nodes[node].quorumtool_text().unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), text).unwrap();
    }
}

#[test]
fn three_real_nodes_form_one_quorate_ring() {
    let mut c = Cluster::start(ClusterSpec::real(3)).unwrap();
    let (statuses, took) = wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    eprintln!(
        "3 real nodes formed in {took:?} on ring {}",
        statuses[0].ring_id
    );
    for s in &statuses {
        assert_eq!(s.provider, "corosync_votequorum");
        assert_eq!(
            (
                s.expected_votes,
                s.highest_expected,
                s.total_votes,
                s.quorum
            ),
            (3, 3, 3, 2)
        );
        assert_eq!(s.flags, vec![QuorumFlag::Quorate]);
        let names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["node1", "node2", "node3"]);
    }
    // The timers Vireo's parser derives from the same file are corosync's own.
    let token = c.nodes[0].cmap_get("runtime.config.totem.token").unwrap();
    let consensus = c.nodes[0]
        .cmap_get("runtime.config.totem.consensus")
        .unwrap();
    assert_eq!(token, c.token_ms.to_string());
    assert_eq!(consensus, c.consensus_ms.to_string());
    capture(&c, 0, "quorumtool-3node.txt");
}

#[test]
fn killed_real_node_leaves_within_token_plus_consensus() {
    let mut c = Cluster::start(ClusterSpec::real(3)).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    let deadline = c.failure_deadline();
    let killed_at = Instant::now();
    c.kill9(2).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    let took = killed_at.elapsed();
    eprintln!(
        "kill -9 -> 2 survivors on ring {} after {took:?} (token {} + consensus {} ms)",
        statuses[0].ring_id, c.token_ms, c.consensus_ms
    );
    assert!(took <= deadline, "{took:?} > {deadline:?}");
    // Expected votes stay 3 (no last_man_standing): 2 of 3 is still quorate.
    assert_eq!(
        (statuses[0].expected_votes, statuses[0].total_votes),
        (3, 2)
    );
    // Restarted, it rejoins.
    c.restart(2).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
}

#[test]
fn two_node_cluster_keeps_quorum_with_one_node() {
    let two_node = QuorumOptions {
        two_node: true,
        ..Default::default()
    };
    let mut c = Cluster::new(ClusterSpec::real(2).with_quorum(two_node)).unwrap();
    c.restart(0).unwrap();
    // Alone at start, two_node implies wait_for_all: blocked until both were seen.
    let (s, _) = vireo_cluster_tests::wait_until(FORM, "node1 alone", || {
        let s = c.status(0)?;
        match s.members.len() {
            1 => Ok(s),
            n => Err(format!("{n} members")),
        }
    })
    .unwrap();
    assert!(!s.quorate);
    assert_eq!(s.flags, vec![QuorumFlag::TwoNode, QuorumFlag::WaitForAll]);
    assert_eq!((s.expected_votes, s.quorum), (2, 1));
    capture(&c, 0, "quorumtool-2node-blocked.txt");
    c.restart(1).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, FORM).unwrap();
    assert!(statuses[0].flags.contains(&QuorumFlag::TwoNode));
    c.kill9(1).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[0], &[0], true, deadline).unwrap();
}

#[test]
fn wait_for_all_blocks_until_every_node_was_seen() {
    let wfa = QuorumOptions {
        wait_for_all: true,
        ..Default::default()
    };
    let mut c = Cluster::new(ClusterSpec::real(3).with_quorum(wfa)).unwrap();
    c.restart(0).unwrap();
    c.restart(1).unwrap();
    // 2 of 3 votes would be a majority, but not every node has been seen yet.
    let (statuses, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], false, FORM).unwrap();
    assert!(statuses[0].flags.contains(&QuorumFlag::WaitForAll));
    c.restart(2).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    // Once all were seen, losing one keeps the majority quorate.
    c.kill9(2).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
}

#[test]
fn partition_leaves_only_the_majority_quorate() {
    let mut c = Cluster::start(ClusterSpec::real(3)).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    c.partition(&[&[0, 1]]).unwrap();
    let deadline = c.failure_deadline();
    let (majority, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    let (minority, _) = wait_for_view(&mut c, &[2], &[2], false, deadline).unwrap();
    assert!(majority[0].ring_id != minority[0].ring_id);
    c.heal().unwrap();
    let (all, _) = wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    same_ring(&all).unwrap();
}

#[test]
fn auto_tie_breaker_gives_an_even_split_to_the_lowest_node_id() {
    let atb = QuorumOptions {
        auto_tie_breaker: true,
        ..Default::default()
    };
    let mut c = Cluster::start(ClusterSpec::real(4).with_quorum(atb)).unwrap();
    let all = [0, 1, 2, 3];
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    c.partition(&[&[0, 1], &[2, 3]]).unwrap();
    let deadline = c.failure_deadline();
    // 2 of 4 votes is no majority, but node 1 is on this side.
    let (low, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    assert!(low[0].flags.contains(&QuorumFlag::AutoTieBreaker));
    wait_for_view(&mut c, &[2, 3], &[2, 3], false, deadline).unwrap();
}

/// last_man_standing with a 1 s window: each loss lowers expected votes, so
/// 2 of the original 4 stay quorate (without it 2 of 4 would be blocked).
#[test]
fn last_man_standing_keeps_the_last_two_of_four_quorate() {
    let lms = QuorumOptions {
        last_man_standing: true,
        last_man_standing_window_ms: Some(1000),
        ..Default::default()
    };
    let mut c = Cluster::start(ClusterSpec::real(4).with_quorum(lms)).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    let deadline = c.failure_deadline() + Duration::from_secs(3);
    c.kill9(3).unwrap();
    wait_for_expected_votes(&mut c, &[0, 1, 2], 3, deadline).unwrap();
    c.kill9(2).unwrap();
    let statuses = wait_for_expected_votes(&mut c, &[0, 1], 2, deadline).unwrap();
    assert!(statuses[0].flags.contains(&QuorumFlag::LastManStanding));
}
