//! Group messaging (vireo-membershipd's CPG) between three Vireo nodes: one
//! client per node joins a group; every client sees the same views and the
//! same messages in the same order, also across a partition, and a client on
//! the minority side is refused when it sends.

use std::time::{Duration, Instant};

use vireo_cluster::client::{ClientError, Delivery, Event, GroupClient, GroupError};
use vireo_cluster_tests::expect::wait_for_view;
use vireo_cluster_tests::{Cluster, ClusterSpec};

const FORM: Duration = Duration::from_secs(30);
const GROUP: &str = "g";

/// Events until `until` holds for the list, or the deadline.
fn collect(c: &GroupClient, seen: &mut Vec<Delivery>, until: impl Fn(&[Delivery]) -> bool) {
    let deadline = Instant::now() + FORM;
    while !until(seen) {
        assert!(Instant::now() < deadline, "gave up waiting; saw {seen:#?}");
        if let Some(d) = c.recv(Duration::from_millis(100)).unwrap() {
            seen.push(d);
        }
    }
}

fn members_of_last_view(seen: &[Delivery]) -> usize {
    seen.iter()
        .rev()
        .find_map(|d| match &d.event {
            Event::View { members, .. } => Some(members.len()),
            _ => None,
        })
        .unwrap_or(0)
}

fn messages(seen: &[Delivery]) -> usize {
    seen.iter()
        .filter(|d| matches!(d.event, Event::Message { .. }))
        .count()
}

/// From the last view with `n` members on: what every client must share.
fn from_full_view(seen: &[Delivery], n: usize) -> Vec<Delivery> {
    let start = seen
        .iter()
        .rposition(|d| matches!(&d.event, Event::View { members, .. } if members.len() == n))
        .expect("a full view");
    seen[start..]
        .iter()
        .filter(|d| !matches!(d.event, Event::Transitional { .. }))
        .cloned()
        .collect()
}

/// Equal sequences, or a short message naming the first difference.
fn same(a: &[Delivery], b: &[Delivery], what: &str) {
    if a == b {
        return;
    }
    let at = (0..a.len().min(b.len())).find(|&k| a[k] != b[k]);
    let show = |s: &[Delivery], k: Option<usize>| {
        k.and_then(|k| s.get(k)).map(|d| format!("{:?}", d.event))
    };
    panic!(
        "{what}: {} vs {} events, first difference at {at:?}: {:?} / {:?}",
        a.len(),
        b.len(),
        show(a, at),
        show(b, at)
    );
}

#[test]
fn one_order_one_view_and_the_minority_refuses() {
    let mut c = Cluster::start(ClusterSpec::vireo(3)).unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    let clients: Vec<GroupClient> = (0..3)
        .map(|i| GroupClient::connect(&c.nodes[i].group_socket_path()).unwrap())
        .collect();
    for cl in &clients {
        cl.join(GROUP).unwrap();
    }
    let mut seen: Vec<Vec<Delivery>> = vec![Vec::new(); 3];
    for (cl, s) in clients.iter().zip(&mut seen) {
        collect(cl, s, |s| members_of_last_view(s) == 3);
    }
    // 100 messages from each client at once.
    std::thread::scope(|scope| {
        for (i, cl) in clients.iter().enumerate() {
            scope.spawn(move || {
                for k in 0..100 {
                    cl.send(GROUP, format!("{i}:{k}").into_bytes()).unwrap();
                }
            });
        }
    });
    for (cl, s) in clients.iter().zip(&mut seen) {
        collect(cl, s, |s| messages(s) >= 300);
    }
    let first = from_full_view(&seen[0], 3);
    assert_eq!(messages(&first), 300);
    for s in &seen[1..] {
        same(
            &from_full_view(s, 3),
            &first,
            "clients disagree on the order",
        );
    }

    // Node 3 alone: its client is refused; nodes 1 and 2 go on without it.
    c.partition(&[&[0, 1], &[2]]).unwrap();
    let deadline = c.failure_deadline();
    wait_for_view(&mut c, &[0, 1], &[0, 1], true, deadline).unwrap();
    wait_for_view(&mut c, &[2], &[2], false, deadline).unwrap();
    for (cl, s) in clients.iter().zip(&mut seen).take(2) {
        collect(cl, s, |s| members_of_last_view(s) == 2);
    }
    let refused = clients[2].send(GROUP, b"from the minority".to_vec());
    assert_eq!(
        refused,
        Err(ClientError::Refused(GroupError::NotQuorate)),
        "a minority client must be refused"
    );
    clients[0].send(GROUP, b"majority".to_vec()).unwrap();
    for (cl, s) in clients.iter().zip(&mut seen).take(2) {
        collect(cl, s, |s| messages(s) >= 301);
    }
    same(
        &from_full_view(&seen[0], 2),
        &from_full_view(&seen[1], 2),
        "the majority's clients disagree",
    );

    // Healed: one view of three again, the same on every client.
    c.heal().unwrap();
    wait_for_view(&mut c, &[0, 1, 2], &[0, 1, 2], true, FORM).unwrap();
    for (cl, s) in clients.iter().zip(&mut seen) {
        s.clear();
        collect(cl, s, |s| members_of_last_view(s) == 3);
    }
    clients[2].send(GROUP, b"back".to_vec()).unwrap();
    for (cl, s) in clients.iter().zip(&mut seen) {
        collect(cl, s, |s| messages(s) >= 1);
    }
    // After a merge each side's `joined` and `left` say what changed for it;
    // the view itself (id, members, quorum) and the messages must agree.
    let last = |s: &[Delivery]| -> Vec<Delivery> {
        from_full_view(s, 3)
            .into_iter()
            .map(|mut d| {
                if let Event::View { joined, left, .. } = &mut d.event {
                    joined.clear();
                    left.clear();
                }
                d
            })
            .collect()
    };
    same(&last(&seen[0]), &last(&seen[1]), "after the heal");
    same(&last(&seen[0]), &last(&seen[2]), "after the heal");
}
