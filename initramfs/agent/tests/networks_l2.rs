//! Networks without a bridge of their own or beyond one node (issue 15):
//! macvtap in its four modes, and an overlay (VXLAN) across two node
//! namespaces, each with probe VMs whose frames cross a real virtio-net;
//! and the node's own bonds and VLANs, kept for the next boot.

mod net_common;
mod vm_common;

use std::time::Duration;

use net_common::{
    port_of, probe_vm, run_echo_vm, wait_until, FrameCounter, Lab, INTERNET_IP, NODE_UPLINK_IP,
};
use serde_json::json;
use vm_common::Node;

/// macvtap networks on the uplink up0 (a veth whose peer is in the
/// internet namespace). A probe VM sends 200 broadcast frames out through
/// its macvtap, echoed from the internet side; a held VM's macvtap on the
/// same uplink counts what reaches it inside the node: all in bridge mode,
/// none in private mode, none in vepa mode until the peer hairpins them
/// back (a bridge with `hairpin on` on the peer, as a VEPA switch would).
/// passthru: one guest owns the NIC, a second cannot start.
#[test]
fn macvtap_modes_behave_as_the_kernel_documents() {
    let lab = Lab::new("nm");
    lab.enter_node();
    let node = Node::new("net-mvt");
    let agent = node.agent(&[]);
    for (mode, want) in [
        ("bridge", 200),
        ("private", 0),
        ("vepa", 0),
        ("vepa-hairpin", 200),
    ] {
        let kernel_mode = mode.trim_end_matches("-hairpin");
        let net = format!("mv-{}", &mode[..3]) + if mode.ends_with("hairpin") { "h" } else { "" };
        agent.ok("POST", "/networks", Some(json!({"name": net, "kind": "macvtap", "uplink": "up0", "macvtap_mode": kernel_mode})), 201);
        if mode == "vepa-hairpin" {
            lab.internet.ip("link add hbr type bridge");
            lab.internet.ip("link set inet0 master hbr");
            lab.internet
                .ip("link set inet0 type bridge_slave hairpin on");
            lab.internet.ip("link set hbr up");
        }
        let held = format!("h-{net}");
        agent.ok(
            "POST",
            "/vms",
            Some(probe_vm(&node, &held, "probe.hold", &net, None)),
            201,
        );
        agent.ok("POST", &format!("/vms/{held}/start"), None, 200);
        let (link, _) = port_of(&agent, &net, &held);
        let seen = FrameCounter::start(&lab.node.name, &link);
        let echo_if = if mode == "vepa-hairpin" {
            "hbr"
        } else {
            "inet0"
        };
        run_echo_vm(
            (&agent, &node, &lab),
            &format!("s-{net}"),
            (&net, None),
            (&lab.internet, echo_if),
            200,
        );
        let got = seen.finish();
        eprintln!("macvtap {mode}: the other guest's macvtap got {got} of 200 frames");
        assert_eq!(got, want, "macvtap {mode}");
        agent.ok("POST", &format!("/vms/{held}/destroy"), None, 200);
        wait_until(
            Duration::from_secs(10),
            "the held VM's port removed",
            || !lab.has_link(&link),
        );
    }
    lab.internet.ip("link set inet0 nomaster");
    agent.ok("POST", "/networks", Some(json!({"name": "mv-pt", "kind": "macvtap", "uplink": "up0", "macvtap_mode": "passthru"})), 201);
    run_echo_vm(
        (&agent, &node, &lab),
        "s-pt",
        ("mv-pt", None),
        (&lab.internet, "inet0"),
        200,
    );
    agent.ok(
        "POST",
        "/vms",
        Some(probe_vm(&node, "pt1", "probe.hold", "mv-pt", None)),
        201,
    );
    agent.ok(
        "POST",
        "/vms",
        Some(probe_vm(&node, "pt2", "probe.hold", "mv-pt", None)),
        201,
    );
    agent.ok("POST", "/vms/pt1/start", None, 200);
    let (got, body) = agent.call("POST", "/vms/pt2/start", None);
    assert_eq!(got, 503, "a second guest on a passthru NIC: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("macvtap on up0"),
        "{body}"
    );
    agent.ok("POST", "/vms/pt1/destroy", None, 200);
}

/// Two nodes (the lab's node namespace and its "internet" namespace playing
/// a second node, 198.51.100.1 and .2), an agent on each, one overlay
/// network (VXLAN 42): a stand-in guest on each node pings the other by IP,
/// and a probe VM on node A exchanges 200 frames with the guest on node B
/// through the tunnel. Without B's overlay, nothing crosses.
#[test]
fn overlay_joins_guests_on_two_nodes() {
    let lab = Lab::new("no");
    lab.enter_node();
    let node_a = Node::new("net-ov-a");
    let node_b = Node::new("net-ov-b");
    let agent_a = node_a.agent(&[]);
    let b_ns = lab.internet.name.clone();
    // Agent B runs in the second node's namespace and is called from there.
    let on_b = |f: &(dyn Fn() + Sync)| {
        std::thread::scope(|s| {
            s.spawn(|| {
                net_common::enter_with_sysfs(&b_ns);
                f()
            })
            .join()
            .unwrap()
        })
    };
    let agent_b = std::sync::Mutex::new(None);
    on_b(&|| *agent_b.lock().unwrap() = Some(node_b.agent(&[])));
    let agent_b = agent_b.into_inner().unwrap().unwrap();
    let overlay = |uplink: &str, peer: &str| json!({"name": "ov", "kind": "overlay", "uplink": uplink, "vni": 42, "peers": [peer]});
    agent_a.ok("POST", "/networks", Some(overlay("up0", INTERNET_IP)), 201);
    on_b(&|| {
        agent_b.ok(
            "POST",
            "/networks",
            Some(overlay("inet0", NODE_UPLINK_IP)),
            201,
        );
    });
    let (got, body) = agent_a.call(
        "POST",
        "/networks",
        Some(json!({"name": "ov2", "kind": "overlay", "uplink": "up0", "vni": 42, "peers": [INTERNET_IP]})),
    );
    assert_eq!(
        (got, body["error"].as_str().unwrap().contains("vni 42")),
        (400, true),
        "{body}"
    );
    let ga = lab.stand_in_on(&lab.node, "ga", "vr-ov", false);
    let gb = lab.stand_in_on(&lab.internet, "gb", "vr-ov", false);
    ga.exec(&["ip", "addr", "add", "10.90.0.1/24", "dev", "g0"]);
    gb.exec(&["ip", "addr", "add", "10.90.0.2/24", "dev", "g0"]);
    assert_eq!(ga.ping("10.90.0.2", 10), 10, "guest on A → guest on B");
    run_echo_vm(
        (&agent_a, &node_a, &lab),
        "p-ov",
        ("ov", None),
        (&gb.ns, "g0"),
        200,
    );
    on_b(&|| {
        agent_b.ok("DELETE", "/networks/ov", None, 204);
    });
    assert_eq!(ga.ping("10.90.0.2", 5), 0, "with B's overlay gone");
}

/// The node's own bonds and VLANs (PUT /node/network): checked against
/// the node's links, kept on the state disk for vireo-init's next boot,
/// never applied live; a bad definition is refused, says why, and leaves
/// the stored settings and the node's networking as they were. (vireo-init
/// making them at boot: the rig's net-bond job, whose kernel has bonding
/// and 8021q.)
#[test]
fn node_bonds_and_vlans_are_checked_and_kept_for_the_boot() {
    let lab = Lab::new("nb");
    lab.enter_node();
    let node = Node::new("net-node");
    let agent = node.agent(&[]);
    lab.node.ip("link add nic1 type veth peer name nic1p");
    let empty = agent.ok("GET", "/node/network", None, 200);
    assert_eq!(empty, json!({"bonds": [], "vlans": []}));
    let before = lab.node_networking();
    let good = json!({
        "bonds": [{"name": "bond0", "mode": "active-backup", "links": ["up0", "nic1"]}],
        "vlans": [{"link": "bond0", "id": 10}],
        "uplink": "bond0.10"
    });
    assert_eq!(
        agent.ok("PUT", "/node/network", Some(good.clone()), 200),
        good
    );
    let file = node.state().join("node-network.json");
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(kept, good);
    assert_eq!(lab.node_networking(), before, "applied live");

    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let bad = [
        (
            with(&|v| v["bonds"][0]["links"][1] = json!("nope0")),
            "no interface 'nope0'",
        ),
        (
            with(&|v| v["bonds"][0]["mode"] = json!("xor")),
            "mode 'xor'",
        ),
        (
            with(&|v| {
                v["vlans"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"link": "bond0", "id": 10}))
            }),
            "given twice",
        ),
        (with(&|v| v["vlans"][0]["id"] = json!(4095)), "1-4094"),
        (with(&|v| v["uplink"] = json!("nic1")), "link of a bond"),
        (with(&|v| v["colour"] = json!(1)), "unknown field"),
    ];
    for (spec, why) in bad {
        let (got, body) = agent.call("PUT", "/node/network", Some(spec.clone()));
        assert_eq!(got, 400, "{spec}: {body}");
        let error = body["error"].as_str().unwrap_or("");
        assert!(error.contains(why), "{spec}: {body}");
        assert_eq!(agent.ok("GET", "/node/network", None, 200), good, "{spec}");
        assert_eq!(lab.node_networking(), before, "{spec}");
    }
    agent.ok("DELETE", "/node/network", None, 204);
    assert!(!file.exists());
    assert_eq!(agent.ok("GET", "/node/network", None, 200), empty);
}
