//! The replicated store on three Vireo nodes: concurrent writes applied in
//! one order everywhere, a minority refusing writes and catching up after,
//! a restarted daemon's replica answering only once it has the current
//! state, and locks of a dead node's clients released at the next view.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vireo_cluster::store::{Change, Refusal, Store, StoreError, StoreOptions};
use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{wait_until, Cluster, ClusterSpec};

const FORM: Duration = Duration::from_secs(30);
const GROUP: &str = "vireo-store";

fn stores(c: &Cluster) -> Vec<Store> {
    c.nodes
        .iter()
        .map(|n| {
            let o = StoreOptions::new(n.group_socket_path(), GROUP).persist(n.dir.join("store"));
            Store::open(o).unwrap()
        })
        .collect()
}

fn formed(n: usize) -> (Cluster, Vec<Store>) {
    let mut c = Cluster::start(ClusterSpec::vireo(n)).unwrap();
    let all: Vec<usize> = (0..n).collect();
    wait_for_view(&mut c, &all, &all, true, FORM).unwrap();
    let s = stores(&c);
    for st in &s {
        st.wait_ready(FORM).unwrap();
    }
    (c, s)
}

/// The writes a subscriber saw, as (version, key).
fn applied(rx: &Receiver<Change>, until_version: u64) -> Vec<(u64, String)> {
    let deadline = Instant::now() + FORM;
    let mut out = Vec::new();
    while out.last().map_or(0, |(v, _)| *v) < until_version {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Change::Applied { version, op, .. }) => out.push((version, op.key().to_string())),
            Ok(_) => {}
            Err(e) => panic!(
                "waiting for version {until_version}: {e}; got {}",
                out.len()
            ),
        }
    }
    out
}

#[test]
fn concurrent_writes_one_order_and_a_minority_refuses() {
    let (mut c, s) = formed(3);
    let subs: Vec<_> = s.iter().map(Store::subscribe).collect();
    let base = s[0].status().version;
    std::thread::scope(|scope| {
        for (i, st) in s.iter().enumerate() {
            scope.spawn(move || {
                for k in 0..40 {
                    st.put(&format!("n{i}/{k}"), &format!("{k}"), Some(i as u32 + 1))
                        .unwrap();
                    st.put("shared", &format!("{i}:{k}"), None).unwrap();
                }
            });
        }
    });
    let want = base + 240;
    let orders: Vec<_> = subs.iter().map(|rx| applied(rx, want)).collect();
    assert_eq!(orders[0].len(), 240);
    assert_eq!(
        orders[0], orders[1],
        "nodes 1 and 2 applied different orders"
    );
    assert_eq!(
        orders[0], orders[2],
        "nodes 1 and 3 applied different orders"
    );
    let snap = s[0].snapshot().unwrap();
    assert_eq!(s[1].snapshot().unwrap(), snap);
    assert_eq!(s[2].snapshot().unwrap(), snap);
    assert_eq!(snap.entries["n2/39"].owner, Some(3));

    // Node 3 cut off: its writes are refused, the majority's go on.
    c.partition(&[&[0, 1], &[2]]).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[2], &[2], false, deadline).unwrap();
    wait_until(deadline, "node 3's store sees no quorum", || {
        match s[2].status().quorate {
            false => Ok(()),
            true => Err("still quorate".into()),
        }
    })
    .unwrap();
    assert_eq!(
        s[2].put("split", "minority", None),
        Err(StoreError::NotQuorate)
    );
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    let v = s[0].put("split", "majority", None).unwrap();
    assert_eq!(
        s[2].get("split").unwrap(),
        None,
        "the minority applied nothing"
    );

    // Healed: the minority takes the majority's state.
    c.heal().unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    wait_until(FORM, "node 3 catches up", || match s[2].get("split") {
        Ok(Some(e)) if e.value == "majority" && s[2].status().version >= v => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap();
    assert_eq!(s[2].snapshot().unwrap(), s[0].snapshot().unwrap());
}

#[test]
fn a_restarted_node_answers_only_with_the_current_state() {
    let (mut c, s) = formed(3);
    s[2].put("k", "old", None).unwrap();
    wait_until(FORM, "everyone has old", || match s[0].get("k") {
        Ok(Some(e)) if e.value == "old" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap();
    c.kill9(2).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    s[0].put("k", "new", None).unwrap();
    c.restart(2).unwrap();
    // Node 3's replica still holds "old" in memory: it must not answer with it.
    let (first, took) = wait_until(FORM, "node 3 answers", || match s[2].get("k") {
        Ok(v) => Ok(v),
        Err(StoreError::NotReady) => Err("not ready".into()),
        Err(e) => panic!("{e}"),
    })
    .unwrap();
    assert_eq!(
        first.map(|e| e.value).as_deref(),
        Some("new"),
        "a stale answer"
    );
    eprintln!("restarted node's replica ready after {took:?}");
    // A replica opened afresh from its saved state catches up the same way.
    s[2].close();
    let again = Store::open(
        StoreOptions::new(c.nodes[2].group_socket_path(), GROUP)
            .persist(c.nodes[2].dir.join("store")),
    )
    .unwrap();
    again.wait_ready(FORM).unwrap();
    assert_eq!(again.get("k").unwrap().unwrap().value, "new");
}

#[test]
fn locks_of_a_dead_node_are_released_at_the_view_change() {
    let (mut c, s) = formed(3);
    s[2].try_lock("vm/100").unwrap();
    let held = s[0].try_lock("vm/100");
    assert!(
        matches!(held, Err(StoreError::Refused(Refusal::Held { ref holder, .. })) if holder.node == 3),
        "{held:?}"
    );
    // Its holder may release it, nobody else.
    assert!(matches!(
        s[1].unlock("vm/100"),
        Err(StoreError::Refused(Refusal::NotHolder { .. }))
    ));
    let changes = s[0].subscribe();
    let killed = Instant::now();
    c.kill9(2).unwrap();
    let deadline = c.failure_deadline();
    wait_until(deadline, "the lock is released", || {
        match changes.try_recv() {
            Ok(Change::Released(l)) if l.iter().any(|(n, m)| n == "vm/100" && m.node == 3) => {
                Ok(())
            }
            _ => Err("not yet".into()),
        }
    })
    .unwrap();
    eprintln!("lock released {:?} after kill -9", killed.elapsed());
    s[0].try_lock("vm/100").unwrap();
    assert_eq!(s[1].locks().unwrap()["vm/100"].holder.node, 1);
}

/// Replicas on two Vireo nodes of a ring with a real corosync 3.1.7 node
/// between them: the real node sends no JoinList, yet group sync completes,
/// writes go round the real node's ring, and the real node sees three
/// members throughout, also across its own crash.
#[test]
fn the_store_runs_through_a_ring_with_a_real_node() {
    use vireo_cluster_tests::Kind;
    let mut c = Cluster::start(ClusterSpec::new(&[
        Kind::Vireo,
        Kind::Corosync,
        Kind::Vireo,
    ]))
    .unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    let open = |i: usize| {
        let o = StoreOptions::new(c.nodes[i].group_socket_path(), GROUP);
        let s = Store::open(o).unwrap();
        s.wait_ready(FORM).unwrap();
        s
    };
    let (a, b) = (open(0), open(2));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for k in 0..50 {
                a.put(&format!("a{k}"), "x", Some(1)).unwrap();
            }
        });
        scope.spawn(|| {
            for k in 0..50 {
                b.put(&format!("b{k}"), "x", Some(3)).unwrap();
            }
        });
    });
    wait_until(FORM, "both replicas equal", || {
        let (sa, sb) = (a.snapshot().unwrap(), b.snapshot().unwrap());
        match sa == sb && sa.entries.len() == 100 {
            true => Ok(()),
            false => Err(format!(
                "{} / {} entries",
                sa.entries.len(),
                sb.entries.len()
            )),
        }
    })
    .unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, Duration::ZERO).unwrap();
    // The real node crashes: two of three votes remain, writes go on.
    c.kill9(1).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[0, 2], &[0, 2], true, deadline).unwrap();
    a.put("after", "crash", None).unwrap();
    c.restart(1).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    b.put("after", "return", None).unwrap();
    // A write returns once its own node applied it; the other replica
    // applies it in the same order, a moment later.
    wait_until(FORM, "node 1's replica to apply node 3's write", || match a
        .get("after")
        .unwrap()
        .map(|e| e.value)
    {
        Some(v) if v == "return" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap();
}
