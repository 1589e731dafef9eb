//! Forming a cluster the operator's way, with no daemon restarted: `vireo
//! cluster create` on node 1, `vireo cluster join` on the others (through
//! any member), a real corosync 3.1.7 node joining too and following the
//! nodelist with `corosync-cfgtool -R`, then `vireo cluster leave`. Every
//! node, the real one included, must see the right members and votes.

use std::time::{Duration, Instant};

use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::formation::{cli, cli_env};
use vireo_cluster_tests::{wait_until, Cluster, ClusterSpec, Kind};
use vireo_membership::config;

const FORM: Duration = Duration::from_secs(30);
const C: Kind = Kind::Corosync;
const V: Kind = Kind::Vireo;

/// Every running node agrees on `members` and expects `members.len()` votes.
fn all_see(c: &mut Cluster, members: &[usize]) -> Duration {
    let (statuses, took) = wait_for_view(c, members, members, true, FORM).unwrap();
    for s in &statuses {
        assert_eq!(
            s.expected_votes as usize,
            members.len(),
            "node {}: {s:?}",
            s.node_id
        );
    }
    took
}

#[test]
fn create_joins_real_node_and_leave_without_restarts() {
    // Node ids go by join order: the real node joins third, so it is node 3.
    let mut c = Cluster::new(ClusterSpec::new(&[V, V, C, V])).unwrap();
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    all_see(&mut c, &[0]);
    let first_pid = c.nodes[0].pid();

    let start = Instant::now();
    let cmd = c.join_on(1, 0, &token).unwrap();
    c.restart(1).unwrap();
    let ring = all_see(&mut c, &[0, 1]);
    eprintln!(
        "join 2: command {cmd:?}, ring of 2 after {:?}",
        start.elapsed()
    );
    let second_pid = c.nodes[1].pid();
    let _ = ring;

    // A real corosync node joins through node 2: the conf it gets runs it.
    c.join_on(2, 1, &token).unwrap();
    c.restart(2).unwrap();
    all_see(&mut c, &[0, 1, 2]);

    // Node 4 joins through node 1; the real node reloads the grown list
    // before node 4 starts (it drops datagrams from unlisted addresses).
    let start = Instant::now();
    c.join_on(3, 0, &token).unwrap();
    c.sync_real_nodelist(2, 0).unwrap();
    c.restart(3).unwrap();
    all_see(&mut c, &[0, 1, 2, 3]);
    eprintln!(
        "join 4 (with the real node's reload): {:?}",
        start.elapsed()
    );
    let real = c.status(2).unwrap();
    assert_eq!(
        (real.total_votes, real.expected_votes, real.quorum),
        (4, 4, 3)
    );
    assert_eq!(c.nodes[0].pid(), first_pid, "node 1's daemon was restarted");
    assert_eq!(
        c.nodes[1].pid(),
        second_pid,
        "node 2's daemon was restarted"
    );

    // Every member's conf lists the four and is one corosync itself accepts.
    for i in [0, 1, 3] {
        let text = std::fs::read_to_string(c.nodes[i].conf_path()).unwrap();
        assert_eq!(
            config::parse(&text).unwrap().nodes.len(),
            4,
            "node {}",
            i + 1
        );
        let real_ok = c.nodes[2].run_in_namespace(&[
            "sh",
            "-c",
            &format!(
                "corosync -t -c {} && echo ok",
                c.nodes[i].conf_path().display()
            ),
        ]);
        assert!(
            real_ok.as_deref().unwrap_or("").contains("ok"),
            "corosync -t: {real_ok:?}"
        );
    }

    // Node 2 leaves: its daemon drops out by itself, the others shrink.
    let start = Instant::now();
    cli(&c.nodes[1], &["cluster", "leave"]).unwrap();
    wait_until(
        Duration::from_secs(5),
        "node 2's daemon exits",
        || match c.nodes[1].is_running() {
            false => Ok(()),
            true => Err("still running".into()),
        },
    )
    .unwrap();
    c.sync_real_nodelist(2, 0).unwrap();
    all_see(&mut c, &[0, 2, 3]);
    eprintln!("leave: {:?}", start.elapsed());
    let real = c.status(2).unwrap();
    assert_eq!(
        (real.total_votes, real.expected_votes, real.quorum),
        (3, 3, 2)
    );
    assert!(c.nodes[1]
        .conf_path()
        .with_extension("conf.removed")
        .exists());
    assert!(
        !c.nodes[1].conf_path().exists(),
        "a left node keeps no corosync.conf"
    );
    assert_eq!(c.nodes[0].pid(), first_pid);
}

#[test]
fn bad_joins_are_refused_with_reasons() {
    let mut c = Cluster::new(ClusterSpec::new(&[V, V])).unwrap();
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    all_see(&mut c, &[0]);
    let at = "10.77.0.1";
    let wrong = "vireo1-00112233445566778899aabbccddeeff";
    // (node, join arguments after ADDR, what the refusal says)
    let refused: [(usize, &[&str], &str); 4] = [
        (
            1,
            &["--token", wrong, "--addr", "10.77.0.2", "--name", "node2"],
            "wrong join token",
        ),
        (
            1,
            &["--token", "hello", "--addr", "10.77.0.2"],
            "not a Vireo join token",
        ),
        // The name of node 1 with another address: refused by the ordered change.
        (
            1,
            &["--token", &token, "--addr", "10.77.0.2", "--name", "node1"],
            "name node1 is already node 1",
        ),
        // Node 1 is in a cluster already.
        (
            0,
            &["--token", &token, "--addr", "10.77.0.1", "--name", "x"],
            "already in cluster",
        ),
    ];
    for (node, rest, reason) in refused {
        let args: Vec<&str> = ["cluster", "join", at]
            .iter()
            .chain(rest)
            .copied()
            .collect();
        let e = cli(&c.nodes[node], &args).unwrap_err();
        assert!(e.contains(reason), "{args:?}: {e}");
    }
    let e = cli(&c.nodes[0], &["cluster", "create", "other"]).unwrap_err();
    assert!(e.contains("already in cluster"), "{e}");
    // Nothing listens at node 2 yet.
    let e = cli(
        &c.nodes[0],
        &["cluster", "join", "10.77.0.2", "--token", &token],
    )
    .unwrap_err();
    assert!(e.contains("already in cluster"), "{e}");
    std::fs::create_dir_all(c.nodes[1].dir.join("x")).unwrap();
    let e = cli(
        &c.nodes[1],
        &[
            "cluster",
            "join",
            "10.77.0.2",
            "--token",
            &token,
            "--addr",
            "10.77.0.2",
            "--name",
            "node2",
        ],
    )
    .unwrap_err();
    assert!(e.contains("cannot reach the join service"), "{e}");
    // A malformed request straight at the port.
    use std::io::{BufRead, BufReader, Write};
    let out = c.nodes[1].run_in_namespace(&[
        "sh",
        "-c",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 busybox nc 10.77.0.1 5406 || true",
    ]);
    let _ = (
        BufReader::new(std::io::empty()).lines(),
        std::io::sink().flush(),
    );
    if let Ok(text) = out {
        assert!(
            text.contains("refused") && text.contains("malformed"),
            "{text}"
        );
    }
    // The token command prints what create printed.
    assert_eq!(
        cli(&c.nodes[0], &["cluster", "token"]).unwrap().trim(),
        token
    );
    // Still one healthy node.
    all_see(&mut c, &[0]);
}

/// What init runs for `vireo.cluster=ADDR vireo.join_token=T`: `vireo cluster
/// join ADDR` with the token in the environment and nothing else, so the
/// address is the one towards the member and the name the host name.
#[test]
fn the_zero_touch_join_needs_only_the_address_and_the_token() {
    let mut c = Cluster::new(ClusterSpec::new(&[V, V])).unwrap();
    let token = c.create_on(0).unwrap();
    c.restart(0).unwrap();
    all_see(&mut c, &[0]);
    let env = [("VIREO_JOIN_TOKEN", token.as_str())];
    let out = cli_env(&c.nodes[1], &["cluster", "join", "10.77.0.1"], &env).unwrap();
    assert!(out.contains("as node 2"), "{out}");
    let text = std::fs::read_to_string(c.nodes[1].conf_path()).unwrap();
    let nodes = config::parse(&text).unwrap().nodes;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(nodes[1].ring0_addr.to_string(), "10.77.0.2");
    assert_eq!(nodes[1].name.as_deref(), Some(host.trim()));
    c.restart(1).unwrap();
    all_see(&mut c, &[0, 1]);
    // The joined node keeps the token and can admit the next one.
    assert_eq!(
        cli(&c.nodes[1], &["cluster", "token"]).unwrap().trim(),
        token
    );
}
