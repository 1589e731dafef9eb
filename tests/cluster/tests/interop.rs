//! Vireo nodes in clusters with real corosync 3.1.7 nodes: the interop list of
//! issue 5. Each test needs vireo-membershipd; without it every test fails at
//! the first Vireo start with a message saying the daemon is missing.

use std::time::{Duration, Instant};

use vireo_cluster_tests::command::run_ok;
use vireo_cluster_tests::expect::{member_ids, wait_for_expected_votes, wait_for_view};
use vireo_cluster_tests::node::cli_binary;
use vireo_cluster_tests::{Cluster, ClusterSpec, Kind, QuorumOptions};
use vireo_membership::status::ClusterStatus;

const FORM: Duration = Duration::from_secs(30);
const C: Kind = Kind::Corosync;
const V: Kind = Kind::Vireo;

/// A Vireo node and a real node of the same ring report the same cluster: only
/// their own node ids differ.
fn same_view(real: &ClusterStatus, vireo: &ClusterStatus) {
    let fields = |s: &ClusterStatus| {
        (
            s.provider.clone(),
            s.ring_id,
            s.quorate,
            s.expected_votes,
            s.highest_expected,
            s.total_votes,
            s.quorum,
            s.flags.clone(),
            s.members.clone(),
        )
    };
    assert_eq!(fields(vireo), fields(real), "Vireo node vs real node");
}

/// Index of the first Vireo and the first real status in `statuses`, taken in
/// the order of `observers`.
fn pick(
    c: &Cluster,
    observers: &[usize],
    statuses: &[ClusterStatus],
) -> (ClusterStatus, ClusterStatus) {
    let of = |kind| {
        let at = observers.iter().position(|&i| c.kind(i) == kind).unwrap();
        statuses[at].clone()
    };
    (of(C), of(V))
}

#[test]
fn three_real_and_one_vireo_count_four() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, C, V])).unwrap();
    let all = [0, 1, 2, 3];
    let (statuses, took) = wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    eprintln!(
        "3 real + 1 Vireo formed in {took:?} on ring {}",
        statuses[0].ring_id
    );
    for s in &statuses[..3] {
        assert_eq!((s.members.len(), s.total_votes), (4, 4));
        assert!(s
            .members
            .iter()
            .any(|m| m.node_id == 4 && m.name == "node4"));
    }
    let (real, vireo) = pick(&c, &all, &statuses);
    same_view(&real, &vireo);
    cli_prints_what_quorumtool_prints(&c, 0, 3);
}

/// `vireo cluster status` on the Vireo node against `corosync-quorumtool -s` on
/// a real one: line for line, apart from the Date line, the Node ID and where
/// "(local)" stands.
fn cli_prints_what_quorumtool_prints(c: &Cluster, real: usize, vireo: usize) {
    let out = run_ok(
        std::process::Command::new(cli_binary().unwrap())
            .args(["cluster", "status", "--socket"])
            .arg(c.nodes[vireo].socket_path()),
    );
    let comparable = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("Date:") && !l.starts_with("Node ID:"))
            .map(|l| l.trim_end_matches(" (local)").to_string())
            .collect()
    };
    let real_text = c.nodes[real].quorumtool_text().unwrap();
    let ours = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        comparable(&ours),
        comparable(&real_text),
        "vireo cluster status:\n{ours}"
    );
}

#[test]
fn killed_vireo_node_leaves_the_real_ring_in_time_and_rejoins() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, C, V])).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    let deadline = c.failure_deadline();
    let killed = Instant::now();
    c.kill9(3).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, deadline).unwrap();
    eprintln!(
        "kill -9 Vireo -> reals show 3 after {:?} (limit {deadline:?})",
        killed.elapsed()
    );
    c.restart(3).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    same_view(&statuses[0], &statuses[3]);
}

#[test]
fn vireo_sees_a_killed_real_node_as_the_reals_do() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, C, V])).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    c.kill9(0).unwrap();
    let deadline = c.failure_deadline();
    let survivors = [1, 2, 3];
    let (statuses, took) = wait_for_view(&mut c, &survivors, &survivors, true, deadline).unwrap();
    eprintln!("kill -9 real -> Vireo and reals agree on 3 after {took:?}");
    let (real, vireo) = pick(&c, &survivors, &statuses);
    same_view(&real, &vireo);
    assert_eq!((vireo.expected_votes, vireo.total_votes), (4, 3));
    c.restart(0).unwrap();
    let all = [0, 1, 2, 3];
    let (statuses, _) = wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    let (real, vireo) = pick(&c, &all, &statuses);
    same_view(&real, &vireo);
}

#[test]
fn vireo_started_first_then_the_real_nodes() {
    let mut c = Cluster::new(ClusterSpec::new(&[C, C, C, V])).unwrap();
    c.restart(3).unwrap();
    wait_for_view(&mut c, &[3], &[3], false, FORM).unwrap();
    for i in 0..3 {
        c.restart(i).unwrap();
    }
    let all = [0, 1, 2, 3];
    let (statuses, _) = wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    let (real, vireo) = pick(&c, &all, &statuses);
    same_view(&real, &vireo);
}

#[test]
fn two_node_with_one_real_and_one_vireo() {
    let two_node = QuorumOptions {
        two_node: true,
        ..Default::default()
    };
    let mut c = Cluster::start(ClusterSpec::new(&[C, V]).with_quorum(two_node)).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, FORM).unwrap();
    same_view(&statuses[0], &statuses[1]);
    // Either one alone keeps quorum (two_node), as corosync does.
    c.kill9(0).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[1], &[1], true, deadline).unwrap();
    c.restart(0).unwrap();
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, FORM).unwrap();
    c.kill9(1).unwrap();
    wait_for_view(&mut c, &[0], &[0], true, deadline).unwrap();
}

#[test]
fn wait_for_all_with_vireo_nodes() {
    let wfa = QuorumOptions {
        wait_for_all: true,
        ..Default::default()
    };
    let mut c = Cluster::new(ClusterSpec::new(&[C, C, V]).with_quorum(wfa)).unwrap();
    c.restart(0).unwrap();
    c.restart(2).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 2], &[0, 2], false, FORM).unwrap();
    same_view(&statuses[0], &statuses[1]);
    c.restart(1).unwrap();
    let (statuses, _) = wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    same_view(&statuses[0], &statuses[2]);
}

#[test]
fn partition_leaves_only_the_majority_quorate_on_both_implementations() {
    let mut c = Cluster::start(ClusterSpec::new(&[C, C, V])).unwrap();
    let all = [0, 1, 2];
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    let deadline = c.failure_deadline();
    // The Vireo node cut off: it is the minority.
    c.partition(&[&[0, 1]]).unwrap();
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    wait_for_view(&mut c, &[2], &[2], false, deadline).unwrap();
    c.heal().unwrap();
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    // A real node cut off: Vireo is in the majority with the other real node.
    c.partition(&[&[0, 2]]).unwrap();
    let (majority, _) = wait_for_view(&mut c, &[0, 2], &[0, 2], true, deadline).unwrap();
    same_view(&majority[0], &majority[1]);
    let (minority, _) = wait_for_view(&mut c, &[1], &[1], false, deadline).unwrap();
    assert_eq!(member_ids(&minority[0]), [2]);
}

#[test]
fn auto_tie_breaker_splits_a_mixed_cluster_the_same_way() {
    let atb = QuorumOptions {
        auto_tie_breaker: true,
        ..Default::default()
    };
    let mut c = Cluster::start(ClusterSpec::new(&[C, V, C, V]).with_quorum(atb)).unwrap();
    let all = [0, 1, 2, 3];
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    c.partition(&[&[0, 1], &[2, 3]]).unwrap();
    let deadline = c.failure_deadline();
    // Each side has a real and a Vireo node; the side with node 1 keeps quorum.
    let (low, _) = wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    same_view(&low[0], &low[1]);
    let (high, _) = wait_for_view(&mut c, &[2, 3], &[2, 3], false, deadline).unwrap();
    same_view(&high[0], &high[1]);
}

#[test]
fn last_man_standing_in_a_mixed_cluster() {
    let lms = QuorumOptions {
        last_man_standing: true,
        last_man_standing_window_ms: Some(1000),
        ..Default::default()
    };
    let mut c = Cluster::start(ClusterSpec::new(&[C, V, C, V]).with_quorum(lms)).unwrap();
    wait_for_view(&mut c, &[0, 1, 2, 3], &[0, 1, 2, 3], true, FORM).unwrap();
    let deadline = c.failure_deadline() + Duration::from_secs(3);
    c.kill9(3).unwrap();
    wait_for_expected_votes(&mut c, &[0, 1, 2], 3, deadline).unwrap();
    c.kill9(2).unwrap();
    let last_two = wait_for_expected_votes(&mut c, &[0, 1], 2, deadline).unwrap();
    same_view(&last_two[0], &last_two[1]);
}
