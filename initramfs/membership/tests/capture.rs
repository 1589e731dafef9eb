//! Replays the shared capture of a real 3-node corosync 3.1.7 udpu cluster
//! (forming, syncing, running) through every codec layer and checks that each
//! datagram, totempg packet and application message re-encodes byte for byte.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};

use support::{totem_datagrams, Prng};
use vireo_membership::service::{AppMessage, ServiceMessage};
use vireo_membership::sync::SyncMessage;
use vireo_membership::totempg::{Packer, Reassembler, TotempgPacket, UDPU_MAX_PACKET_LEN};
use vireo_membership::votequorum::VotequorumMessage;
use vireo_membership::wire::{self, type_name, Mcast, MessageType, RingId, TotemMessage};

/// The capture's MCASTs once each (every MCAST appears once per receiver), in ring
/// order: the order totemsrp delivers them in.
fn ordered_mcasts() -> Vec<Mcast> {
    let mut by_order: BTreeMap<(u64, u32, u32), Mcast> = BTreeMap::new();
    for d in totem_datagrams() {
        if let Ok(TotemMessage::Mcast(m)) = wire::decode(&d.payload) {
            let key = (m.ring_id.seq, m.ring_id.rep, m.seq);
            if let Some(seen) = by_order.get(&key) {
                assert_eq!(
                    seen.payload, m.payload,
                    "two different MCASTs share ring/seq {key:?}"
                );
            }
            by_order.entry(key).or_insert(m);
        }
    }
    by_order.into_values().collect()
}

#[test]
fn every_datagram_round_trips() {
    let mut counts: BTreeMap<MessageType, usize> = BTreeMap::new();
    let datagrams = totem_datagrams();
    for (i, d) in datagrams.iter().enumerate() {
        let msg = wire::decode(&d.payload)
            .unwrap_or_else(|e| panic!("datagram {i} ({} bytes): {e}", d.payload.len()));
        assert_eq!(
            wire::encode(&msg),
            d.payload,
            "datagram {i} re-encodes differently"
        );
        *counts.entry(msg.message_type()).or_default() += 1;
    }
    println!("{} totem datagrams on port 5405:", datagrams.len());
    for (t, n) in &counts {
        println!("  {:<18} {n}", type_name(*t));
    }
    // This capture shows a cluster forming and idling, which exercises all six.
    for t in MessageType::ALL {
        assert!(
            counts.get(&t).copied().unwrap_or(0) > 0,
            "no {} in capture",
            type_name(t)
        );
    }
}

fn label(msg: &AppMessage) -> String {
    match msg {
        AppMessage::Sync(SyncMessage::Barrier { .. }) => "sync barrier".into(),
        AppMessage::Sync(SyncMessage::ServiceBuild { .. }) => "sync service_build".into(),
        AppMessage::Service(ServiceMessage::Votequorum(VotequorumMessage::NodeInfo(_))) => {
            "votequorum nodeinfo".into()
        }
        AppMessage::Service(ServiceMessage::Votequorum(VotequorumMessage::Reconfigure(_))) => {
            "votequorum reconfigure".into()
        }
        AppMessage::Service(ServiceMessage::Other { header, .. }) => format!(
            "service {} fn {} (opaque)",
            header.service(),
            header.function()
        ),
        AppMessage::OtherGroup(_) => "other group".into(),
    }
}

#[test]
fn mcast_payloads_round_trip_through_every_layer() {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut assembly: HashMap<u32, Reassembler> = HashMap::new();
    let mut rings: HashSet<RingId> = HashSet::new();
    let mcasts = ordered_mcasts();
    for m in &mcasts {
        assert!(!m.is_encapsulated(), "capture has no recovery traffic");
        let packet = TotempgPacket::decode(&m.payload)
            .unwrap_or_else(|e| panic!("MCAST seq {} of ring {}: {e}", m.seq, m.ring_id));
        assert_eq!(packet.encode(), m.payload);
        let got = assembly.entry(m.header.nodeid).or_default().feed(&packet);
        assert_eq!(got.discarded, 0, "fragment lost at MCAST seq {}", m.seq);
        for bytes in got.messages {
            let app = AppMessage::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                app.encode(),
                bytes,
                "{} re-encodes differently",
                label(&app)
            );
            if let AppMessage::Sync(s) = &app {
                rings.insert(s.ring_id());
            }
            *counts.entry(label(&app)).or_default() += 1;
        }
    }
    println!("{} distinct MCASTs; application messages:", mcasts.len());
    for (l, n) in &counts {
        println!("  {l:<28} {n}");
    }
    println!("  rings synced: {}", rings.len());
    for l in ["sync barrier", "sync service_build", "votequorum nodeinfo"] {
        assert!(counts.get(l).copied().unwrap_or(0) > 0, "no {l} in capture");
    }
}

/// Feeds each sender's messages to our packer in the order they completed, flushing
/// where the capture shows a packet that ended cleanly (the token's arrival), and
/// checks that the packer cuts exactly the packets corosync sent.
#[test]
fn packer_cuts_packets_like_corosync() {
    let mut senders: BTreeMap<u32, Vec<TotempgPacket>> = BTreeMap::new();
    for m in ordered_mcasts() {
        let p = TotempgPacket::decode(&m.payload).expect("decodes");
        senders.entry(m.header.nodeid).or_default().push(p);
    }
    for (node, captured) in senders {
        let mut reassembler = Reassembler::new();
        let mut packer = Packer::new(UDPU_MAX_PACKET_LEN);
        let mut ours = Vec::new();
        for p in &captured {
            for msg in reassembler.feed(p).messages {
                let group = AppMessage::decode(&msg).expect("decodes").to_group();
                ours.extend(packer.push_group(&group));
            }
            if p.fragmented == 0 {
                ours.extend(packer.flush());
            }
        }
        assert_eq!(ours.len(), captured.len(), "node {node}: packet count");
        for (i, (a, b)) in ours.iter().zip(&captured).enumerate() {
            assert_eq!(a, b, "node {node}: packet {i} differs");
        }
    }
}

/// Decodes as deep as one datagram allows: totem message, then the totempg packet
/// of a plain MCAST, then each complete chunk.
fn decode_deep(bytes: &[u8]) -> Result<(), wire::WireError> {
    if let TotemMessage::Mcast(m) = wire::decode(bytes)? {
        if let Some(inner) = m.encapsulated_mcast() {
            inner?;
            return Ok(());
        }
        let p = TotempgPacket::decode(&m.payload)?;
        let mut r = Reassembler::new();
        for msg in r.feed(&p).messages {
            let _ = AppMessage::decode(&msg);
        }
    }
    Ok(())
}

#[test]
fn every_truncation_is_an_error() {
    let unique: HashSet<Vec<u8>> = totem_datagrams().into_iter().map(|d| d.payload).collect();
    let mut cuts = 0;
    for d in &unique {
        decode_deep(d).expect("whole datagram decodes");
        for len in 0..d.len() {
            assert!(
                decode_deep(&d[..len]).is_err(),
                "{len}-byte prefix of {d:02x?} decoded"
            );
            cuts += 1;
        }
    }
    println!(
        "{} distinct datagrams, {cuts} truncations, all rejected",
        unique.len()
    );
}

#[test]
fn random_and_mutated_input_never_panics() {
    let datagrams: Vec<Vec<u8>> = totem_datagrams().into_iter().map(|d| d.payload).collect();
    let mut rng = Prng(0x5eed_c070_0003_1507);
    let mut buf = Vec::new();
    for _ in 0..200_000 {
        buf.clear();
        if rng.below(4) == 0 {
            buf.extend((0..rng.below(1600)).map(|_| rng.next() as u8));
        } else {
            // Mutating real packets gets past the magic and reaches the deep layers.
            buf.extend_from_slice(&datagrams[rng.below(datagrams.len())]);
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(buf.len());
                buf[at] = rng.next() as u8;
            }
            buf.truncate(rng.below(buf.len() + 8));
        }
        let _ = decode_deep(&buf);
        let _ = AppMessage::decode(&buf);
        let _ = TotempgPacket::decode(&buf);
    }
}
