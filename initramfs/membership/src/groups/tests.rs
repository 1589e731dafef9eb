//! Several daemons' state machines fed one agreed order by hand.

use std::net::Ipv4Addr;

use super::*;
use crate::config;

fn conf(n: u32) -> config::CorosyncConfig {
    let mut text =
        String::from("totem {\n version: 2\n cluster_name: t\n transport: udpu\n}\nnodelist {\n");
    for i in 1..=n {
        text += &format!(" node {{\n  ring0_addr: 10.0.0.{i}\n  nodeid: {i}\n  name: n{i}\n }}\n");
    }
    text += "}\nquorum {\n provider: corosync_votequorum\n}\n";
    config::parse(&text).unwrap()
}

/// Daemons 1..=n on one agreed order.
struct Ring {
    daemons: Vec<Groups>,
    /// Per daemon: frames to clients, in order.
    seen: Vec<Vec<(u32, Event, Vec<u8>)>>,
    nodelists: Vec<Vec<u32>>,
}

impl Ring {
    fn new(n: u32) -> Ring {
        let c = conf(n);
        Ring {
            daemons: (1..=n).map(|id| Groups::new(id, 7, &c)).collect(),
            seen: vec![Vec::new(); n as usize],
            nodelists: vec![Vec::new(); n as usize],
        }
    }

    /// Runs every daemon's outputs; broadcasts are delivered to all daemons
    /// in `members` (in the order produced) until nothing is left.
    fn run(&mut self, members: &[u32]) {
        loop {
            let mut casts = Vec::new();
            for (i, d) in self.daemons.iter_mut().enumerate() {
                for o in d.take() {
                    match o {
                        Output::Broadcast(b) => casts.push((i as u32 + 1, b)),
                        Output::Client(conn, f) => {
                            self.seen[i].push((conn, f.parse().unwrap(), f.data))
                        }
                        Output::Nodelist { nodes, .. } => {
                            self.nodelists[i] = nodes.iter().map(|n| n.nodeid).collect()
                        }
                        Output::NodelistRefused { .. } => {}
                    }
                }
            }
            if casts.is_empty() {
                return;
            }
            for (sender, b) in casts {
                for &m in members {
                    self.daemons[m as usize - 1].deliver(sender, b.clone());
                }
            }
        }
    }

    /// A new ring: each member's JoinList (queued before its sync), then
    /// the sync completes everywhere.
    fn config(&mut self, seq: u64, members: &[u32]) {
        let mut lists = Vec::new();
        for &m in members {
            let d = &mut self.daemons[m as usize - 1];
            d.config(seq, members);
            lists.push((m, Groups::joinlist(seq, d.local_list())));
        }
        for (sender, b) in lists {
            for &m in members {
                self.daemons[m as usize - 1].deliver(sender, b.clone());
            }
        }
        for &m in members {
            self.daemons[m as usize - 1].sync_completed(seq);
        }
        self.run(members);
    }

    /// What daemon `id`'s client `conn` saw, replies left out.
    fn events(&self, id: u32, conn: u32) -> Vec<(Event, Vec<u8>)> {
        self.seen[id as usize - 1]
            .iter()
            .filter(|(c, e, _)| *c == conn && !matches!(e, Event::Reply { .. }))
            .map(|(_, e, d)| (e.clone(), d.clone()))
            .collect()
    }
}

#[test]
fn one_view_and_one_order_everywhere() {
    let mut r = Ring::new(3);
    for d in &mut r.daemons {
        d.join(1, 1, "g");
    }
    r.config(4, &[1, 2, 3]);
    for (i, d) in r.daemons.iter_mut().enumerate() {
        for k in 0..3u8 {
            let b = d.send(1, "g", vec![i as u8, k], true).unwrap();
            d.out.push(Output::Broadcast(b));
        }
    }
    r.run(&[1, 2, 3]);
    let first = r.events(1, 1);
    assert!(
        matches!(&first[0].0, Event::View { members, quorate: true, .. } if members.len() == 3)
    );
    let msgs = first
        .iter()
        .filter(|(e, _)| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(msgs, 9);
    assert_eq!(r.events(2, 1), first);
    assert_eq!(r.events(3, 1), first);
}

#[test]
fn a_minority_refuses_and_a_nodelist_change_lands_everywhere() {
    let mut r = Ring::new(3);
    for d in &mut r.daemons {
        d.join(1, 1, "g");
    }
    r.config(4, &[1, 2, 3]);
    // Node 3 alone: not a majority of 3.
    r.daemons[2].transitional(&[3]);
    r.config(8, &[3]);
    assert_eq!(
        r.daemons[2].send(1, "g", vec![1], true),
        Err(GroupError::NotQuorate)
    );
    assert!(r.daemons[2].send(1, "g", vec![1], false).is_ok());
    // Nor may it change the nodelist.
    let lone = Ipv4Addr::new(10, 0, 0, 8);
    r.daemons[2].nodelist(
        1,
        4,
        NodelistOp::Add {
            name: "n8".into(),
            addr: lone,
        },
    );
    r.config(9, &[3]);
    assert!(r.nodelists[2].is_empty(), "a minority changed the nodelist");
    assert!(r.daemons[0].send(1, "g", vec![1], true).is_ok());
    // Nodes 1 and 2 add a fourth node: same id on both, views re-issued.
    let addr = Ipv4Addr::new(10, 0, 0, 9);
    r.daemons[0].nodelist(
        1,
        5,
        NodelistOp::Add {
            name: "n9".into(),
            addr,
        },
    );
    r.config(12, &[1, 2]);
    assert_eq!(r.nodelists[0], vec![1, 2, 3, 4]);
    assert_eq!(r.nodelists[1], vec![1, 2, 3, 4]);
    // 2 of 4 votes is no majority any more.
    assert!(!r.daemons[0].quorate());
    let bad = NodelistOp::Add {
        name: "n1".into(),
        addr: Ipv4Addr::new(10, 0, 0, 10),
    };
    assert!(state::nodelist_after(&conf(3).nodes, &bad)
        .unwrap_err()
        .contains("name n1"));
    let again = NodelistOp::Add {
        name: "n2".into(),
        addr: Ipv4Addr::new(10, 0, 0, 2),
    };
    assert_eq!(state::nodelist_after(&conf(3).nodes, &again).unwrap().1, 2);
}

#[test]
fn a_closed_connection_leaves_its_groups() {
    let mut r = Ring::new(2);
    r.daemons[0].join(1, 1, "g");
    r.daemons[1].join(1, 1, "g");
    r.config(4, &[1, 2]);
    r.daemons[0].gone(1);
    r.run(&[1, 2]);
    let last = r.events(2, 1).pop().unwrap().0;
    let Event::View { members, left, .. } = last else {
        panic!("{last:?}")
    };
    assert_eq!((members.len(), left.len()), (1, 1));
    assert_eq!(left[0].node, 1);
    assert_eq!(
        r.daemons[1].send(9, "g", vec![], true),
        Err(GroupError::NotMember("g".into()))
    );
}
