//! What a remote peer can make a node hold above totemsrp: reassembly state
//! and votequorum's node table stay bounded by the configuration's members,
//! whatever sender ids the delivered messages claim; and totemsrp's join
//! lists by the nodelist.

use super::{Node, NodeAction};
use crate::config;
use crate::totempg::TotempgPacket;
use crate::totemsrp::Destination;
use crate::votequorum::{NodeInfo, VotequorumMessage};
use crate::wire::{Header, MembJoin, TotemMessage};

fn lone_node() -> Node {
    let cfg = config::parse(&super::sim_config_text(3, "")).unwrap();
    // Not started: its configuration is itself alone.
    Node::new(&cfg, 1, 0)
}

/// A packet that begins a message and leaves it unfinished.
fn first_fragment(len: usize) -> Vec<u8> {
    TotempgPacket {
        fragmented: 1,
        chunks: vec![vec![0x55; len]],
        ..Default::default()
    }
    .encode()
}

#[test]
fn reassembly_is_kept_only_for_members() {
    let mut node = lone_node();
    // Ordered packets claiming 500 different senders, none of them members.
    for sender in 1000..1500 {
        node.deliver_packet(sender, &first_fragment(1000));
    }
    let stats = node.status().stats;
    assert_eq!(
        (stats.reassembly_bytes, stats.foreign_packets_dropped),
        (0, 500)
    );
    assert!(node.assembly.is_empty());
    // A member's unfinished message is held, as it must be.
    node.deliver_packet(1, &first_fragment(1000));
    assert_eq!(node.status().stats.reassembly_bytes, 1000);
}

#[test]
fn nodeinfo_about_another_node_is_ignored() {
    let mut node = lone_node();
    let before = node.quorum.status(node.view.0, &node.view.1);
    // Node 1 itself "reports" 200 other nodes with 5 votes each: corosync
    // nodes only send NODEINFO about themselves, so these are forged.
    for nodeid in 100..300 {
        let info = NodeInfo {
            nodeid,
            votes: 5,
            expected_votes: 3,
            flags: 0,
        };
        node.service_message(1, &VotequorumMessage::NodeInfo(info).encode());
    }
    let after = node.quorum.status(node.view.0, &node.view.1);
    assert_eq!(
        (after.total_votes, after.quorate, after.highest_expected),
        (before.total_votes, before.quorate, before.highest_expected)
    );
}

#[test]
fn joins_carry_only_nodelist_ids() {
    let mut node = lone_node();
    node.start();
    // Node 2 (listed) names ids the nodelist (1..=3) does not have.
    let join = MembJoin {
        header: Header::new(2),
        system_from: 2,
        ring_seq: 1,
        proc_list: vec![2, 77, 1],
        failed_list: vec![78],
    };
    let actions = node.receive(TotemMessage::MembJoin(join));
    let ours = actions.iter().find_map(|a| match a {
        NodeAction::Send(Destination::All, TotemMessage::MembJoin(j)) => Some(j),
        _ => None,
    });
    let ours = ours.expect("node 1 regathers with node 2");
    assert_eq!(
        (&ours.proc_list[..], &ours.failed_list[..]),
        (&[1, 2][..], &[][..])
    );
}

/// A reload brings the timers of the new nodelist: corosync adds
/// token_coefficient per node beyond two on every reload, so a cluster
/// grown by joins has one token timeout on every member.
#[test]
fn a_reload_applies_the_timers_of_the_new_nodelist() {
    let two = config::parse(&super::sim_config_text(2, "")).unwrap();
    let mut node = Node::new(&two, 1, 0);
    assert_eq!(node.srp.timers().token, two.totem.timers.token);
    let sixteen = config::parse(&super::sim_config_text(16, "")).unwrap();
    let t = &sixteen.totem;
    assert_eq!(
        t.timers.token,
        t.token + 14 * t.token_coefficient,
        "the parser applies the coefficient"
    );
    node.reconfigure(&sixteen);
    assert_eq!(node.srp.timers(), sixteen.totem.timers);
    assert_eq!(
        node.consensus_ms,
        sixteen.totem.timers.consensus + 4 * sixteen.totem.timers.join
    );
}
