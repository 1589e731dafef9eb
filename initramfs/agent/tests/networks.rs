//! Networks (issue 15), on this host in network namespaces: the agent runs
//! in a node namespace whose uplink leads to an "internet" namespace.
//! Guests are probe VMs (their frames cross a real virtio-net and the tap
//! the agent made) and, where a guest must speak DHCP or IP, which the
//! probe cannot, stand-in namespaces on the same bridge. Every assertion
//! about reachability counts real frames or answers.

mod net_common;
mod vm_common;

use std::time::Duration;

use net_common::{
    port_of, probe_vm, run_echo_vm, udhcpc_script, wait_until, FrameCounter, Lab, BOOT,
    INTERNET_IP, NODE_UPLINK_IP,
};
use serde_json::json;
use vm_common::{Agent, Node};

#[test]
fn bad_definitions_change_nothing_and_networks_come_back_after_a_reboot() {
    let lab = Lab::new("nv");
    lab.enter_node();
    let node = Node::new("net-valid");
    let mut agent = node.agent(&[]);

    let created = agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "lab", "kind": "nat", "subnet": "10.77.0.0/24", "uplink": "up0"})),
        201,
    );
    assert_eq!(created["bridge"], "vr-lab");
    assert_eq!(created["gateway"], "10.77.0.1/24");
    assert_eq!(created["active"], true);
    assert!(
        lab.nft_tables().contains("table inet vireo_lab"),
        "{}",
        lab.nft_tables()
    );
    assert!(node.state().join("networks/lab.json").is_file());

    let before = lab.node_networking();
    let bad = [
        (
            json!({"name": "iso", "kind": "isolated", "subnet": "10.77.0.128/25"}),
            400,
            "overlaps network 'lab'",
        ),
        (
            json!({"name": "up", "kind": "nat", "subnet": "198.51.100.0/25"}),
            400,
            "overlaps the node's address",
        ),
        (
            json!({"name": "lan", "kind": "bridge", "uplink": "nope0"}),
            400,
            "no such interface",
        ),
        (
            json!({"name": "lan", "kind": "bridge", "uplink": "up0"}),
            400,
            "carries the node's address",
        ),
        (
            json!({"name": "lab", "kind": "isolated"}),
            409,
            "exists already",
        ),
        (json!({"name": "x", "kind": "nat"}), 400, "needs a subnet"),
        (
            json!({"name": "x", "kind": "nat", "subnet": "10.1.0.0/24", "colour": 1}),
            400,
            "unknown field",
        ),
        (
            json!({"name": "x", "kind": "isolated", "subnet": "10.2.0.0/24",
                "reservations": [{"mac": "02:00:00:00:00:01", "ip": "10.3.0.5"}]}),
            400,
            "not a guest address",
        ),
    ];
    for (spec, status, why) in bad {
        let (got, body) = agent.call("POST", "/networks", Some(spec.clone()));
        assert_eq!(got, status, "{spec}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(why),
            "{spec}: {body}"
        );
        assert_eq!(
            lab.node_networking(),
            before,
            "{spec} changed the node's networking"
        );
    }
    // A VLAN: this host's kernel has no 8021q, so the sub-interface cannot
    // be made; the error says so and nothing is left. (Where it can, a
    // second network on VLAN 10 of up0 is refused: the unit tests.)
    let (got, body) = agent.call(
        "POST",
        "/networks",
        Some(json!({"name": "v10", "kind": "nat", "uplink": "up0", "vlan": 10, "subnet": "10.10.0.0/24"})),
    );
    if got == 201 {
        let (again, why) = agent.call(
            "POST",
            "/networks",
            Some(json!({"name": "v10b", "kind": "bridge", "uplink": "up0", "vlan": 10})),
        );
        assert_eq!(again, 400, "{why}");
        assert!(
            why["error"].as_str().unwrap().contains("VLAN 10 on up0"),
            "{why}"
        );
        agent.ok("DELETE", "/networks/v10", None, 204);
    } else {
        assert_eq!(got, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("8021q"), "{body}");
        assert_eq!(
            lab.node_networking(),
            before,
            "a failed VLAN left links behind"
        );
    }

    bridge_networks_over_a_free_link_and_over_an_existing_bridge(&lab, &agent);

    // A VM naming a network that does not exist is refused at define.
    let (got, body) = agent.call(
        "POST",
        "/vms",
        Some(probe_vm(&node, "v", "probe.hold", "nope", None)),
    );
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no network named 'nope'"),
        "{body}"
    );
    // A network a VM names cannot be deleted.
    agent.ok(
        "POST",
        "/vms",
        Some(probe_vm(&node, "v", "probe.hold", "lab", None)),
        201,
    );
    let (got, body) = agent.call("DELETE", "/networks/lab", None);
    assert_eq!(got, 409, "{body}");
    agent.ok("DELETE", "/vms/v", None, 204);

    // A reboot: the node's links are gone, the agent makes them again.
    agent.kill9();
    lab.node.ip("link del vr-lab");
    lab.node.ip("link set up0 up");
    let agent = node.agent(&[]);
    wait_until(Duration::from_secs(20), "vr-lab made again", || {
        agent.ok("GET", "/networks/lab", None, 200)["active"] == true
    });
    let addrs = lab.node_json("addr show vr-lab");
    assert_eq!(addrs[0]["addr_info"][0]["local"], "10.77.0.1", "{addrs}");

    agent.ok("DELETE", "/networks/lab", None, 204);
    assert!(!lab.has_link("vr-lab"));
    assert!(
        !lab.nft_tables().contains("vireo_lab"),
        "{}",
        lab.nft_tables()
    );
    assert!(!node.state().join("networks/lab.json").exists());
    agent.ok("GET", "/networks/lab", None, 404);
}

#[test]
fn nat_guests_get_leases_reach_the_internet_masqueraded_and_keep_their_address() {
    let lab = Lab::new("nn");
    lab.enter_node();
    let node = Node::new("net-nat");
    // The node's resolver, for the agent's DNS forwarder: the internet
    // namespace (the agents this test starts inherit it).
    std::env::set_var("VIREO_DNS_UPSTREAM", INTERNET_IP);
    let mut agent = node.agent(&[]);
    agent.ok(
        "POST",
        "/networks",
        Some(
            json!({"name": "lab", "kind": "nat", "subnet": "10.77.0.0/24", "uplink": "up0",
                    "reservations": [{"mac": "02:aa:00:00:00:09", "ip": "10.77.0.99"}]}),
        ),
        201,
    );
    let script = udhcpc_script(&node.dir);
    let g1 = lab.stand_in("g1", "vr-lab", false);
    let g2 = lab.stand_in("g2", "vr-lab", false);
    let ip1 = g1.dhcp(&script).expect("g1 got no lease");
    let ip2 = g2.dhcp(&script).expect("g2 got no lease");
    assert_eq!(ip1, "10.77.0.2");
    assert_eq!(ip2, "10.77.0.3");
    let leases = agent.ok("GET", "/networks/lab/leases", None, 200);
    let leased: Vec<(String, String)> = leases
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap().into(),
                l["ip"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(leased.contains(&(g1.mac.clone(), ip1.clone())), "{leases}");
    let dns = std::fs::read_to_string(node.dir.join("udhcpc.dns")).unwrap_or_default();
    assert_eq!(dns.trim(), "10.77.0.1", "the DNS server in the lease");
    names_resolve_through_the_gateway(&lab, &g1);

    // Out to the internet namespace, which has no route back to 10.77.0.0/24:
    // the answers come only because the node masquerades.
    let sent = 20;
    assert_eq!(g1.ping(INTERNET_IP, sent), sent, "guest → internet");
    // The internet sees the node's uplink address, never the guest's.
    let seen = udp_from_guest(&lab, &g1, 50);
    assert_eq!(
        seen,
        vec![NODE_UPLINK_IP.to_string(); 50],
        "sources the internet saw"
    );
    // Nothing from outside reaches a guest (no forwarded port): with a route
    // to the guests, the internet's pings die at the node.
    lab.internet
        .ip(&format!("route add 10.77.0.0/24 via {NODE_UPLINK_IP}"));
    assert_eq!(
        net_common::ping_in(&lab.internet.name, &ip1, 5),
        0,
        "internet → guest"
    );
    forwarded_port_reaches_only_its_guest(&lab, &agent, &node, &g1.ns.name, &ip1);

    // A reservation wins over the pool.
    drop(g2);
    let g3 = lab.stand_in("g3", "vr-lab", false);
    g3.exec(&["ip", "link", "set", "g0", "address", "02:aa:00:00:00:09"]);
    assert_eq!(g3.dhcp(&script).as_deref(), Some("10.77.0.99"));

    // Leases survive the agent: a restarted agent gives g1 its address again
    // and a newcomer the next free one.
    agent.kill9();
    let agent = node.agent(&[]);
    g1.exec(&["ip", "addr", "flush", "dev", "g0"]);
    assert_eq!(
        g1.dhcp(&script).as_deref(),
        Some(ip1.as_str()),
        "same MAC, same address"
    );
    let g4 = lab.stand_in("g4", "vr-lab", false);
    assert_eq!(g4.dhcp(&script).as_deref(), Some("10.77.0.4"));
    let n = agent
        .ok("GET", "/networks/lab/leases", None, 200)
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 4, "g1, g2, g3 (reserved), g4");
}

/// Sends `count` UDP datagrams from the stand-in to the internet
/// namespace; the sources the internet saw.
fn udp_from_guest(lab: &Lab, guest: &net_common::StandIn, count: usize) -> Vec<String> {
    let ns = lab.internet.name.clone();
    let listener = std::thread::spawn(move || {
        net_common::enter(&ns);
        let sock = std::net::UdpSocket::bind((INTERNET_IP, 9000)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            seen.push(from.ip().to_string());
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(300));
    let gns = guest.ns.name.clone();
    let sender = std::thread::spawn(move || {
        net_common::enter(&gns);
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..count {
            sock.send_to(&(i as u32).to_be_bytes(), (INTERNET_IP, 9000))
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    sender.join().unwrap();
    listener.join().unwrap()
}

fn exec_in(ns: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn isolated_guests_reach_each_other_but_not_outside_private_ones_not_even_each_other() {
    let lab = Lab::new("ni");
    lab.enter_node();
    let node = Node::new("net-iso");
    let mut agent = node.agent(&[]);
    agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "iso", "kind": "isolated", "subnet": "10.78.0.0/24"})),
        201,
    );
    agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "prv", "kind": "private", "subnet": "10.79.0.0/24"})),
        201,
    );
    let script = udhcpc_script(&node.dir);

    // isolated: a probe VM's frames reach another guest (echoed, and
    // counted at a third), guests ping each other, nothing leaves the node.
    let echo = lab.stand_in("e1", "vr-iso", false);
    let other = lab.stand_in("o1", "vr-iso", false);
    let seen = FrameCounter::start(&other.ns.name, "g0");
    let (log, mac) = run_echo_vm(
        (&agent, &node, &lab),
        "p-iso",
        ("iso", None),
        (&echo.ns, "g0"),
        200,
    );
    assert_eq!(
        seen.finish(),
        200,
        "probe frames another isolated guest saw"
    );
    let ip_e = echo.dhcp(&script).expect("lease on iso");
    let ip_o = other.dhcp(&script).expect("lease on iso");
    assert_eq!(other.ping(&ip_e, 10), 10, "isolated guest → guest");
    // No router on an isolated network: the guests try the node anyway.
    for g in [&other, &echo] {
        g.exec(&["ip", "route", "replace", "default", "via", "10.78.0.1"]);
    }
    assert_eq!(other.ping(INTERNET_IP, 5), 0, "isolated guest → outside");
    assert_eq!(
        echo.ping(NODE_UPLINK_IP, 5),
        0,
        "isolated guest → the node's other addresses"
    );
    assert_ne!(ip_e, ip_o);
    // The guest's MAC is the one the agent derived (locally administered)
    // and listed.
    assert!(log.contains(&format!("mac={mac} ")), "{mac}: {log}");
    assert_eq!(u8::from_str_radix(&mac[..2], 16).unwrap() & 3, 2, "{mac}");

    // private: the VM's port is isolated; a non-isolated port (standing for
    // the node's side) still gets its frames, an isolated one (another
    // guest) none; two guests cannot ping each other.
    let echo = lab.stand_in("e2", "vr-prv", false);
    let guest = lab.stand_in("o2", "vr-prv", true);
    let seen = FrameCounter::start(&guest.ns.name, "g0");
    agent.ok(
        "POST",
        "/vms",
        Some(probe_vm(&node, "p-hold", "probe.hold", "prv", None)),
        201,
    );
    agent.ok("POST", "/vms/p-hold/start", None, 200);
    let (tap, _) = port_of(&agent, "prv", "p-hold");
    let flag = std::fs::read_to_string(format!("/sys/class/net/{tap}/brport/isolated")).unwrap();
    assert_eq!(
        flag.trim(),
        "1",
        "the agent's port on a private network is isolated"
    );
    let held_tap = FrameCounter::start(&lab.node.name, &tap);
    run_echo_vm(
        (&agent, &node, &lab),
        "p-prv",
        ("prv", None),
        (&echo.ns, "g0"),
        200,
    );
    assert_eq!(seen.finish(), 0, "probe frames another private guest saw");
    assert_eq!(
        held_tap.finish(),
        0,
        "probe frames another private VM's tap carried"
    );
    let g3 = lab.stand_in("o3", "vr-prv", true);
    guest.dhcp(&script).expect("lease on prv");
    let ip3 = g3.dhcp(&script).expect("lease on prv");
    assert_eq!(guest.ping(&ip3, 5), 0, "private guest → guest");
    // An agent killed while the VM runs: the new one re-adopts the VM and
    // still knows its port, which goes when the VM is destroyed.
    agent.kill9();
    let agent = node.agent(&[]);
    agent.wait_vm("p-hold", BOOT, "re-adopted", |v| v["state"] == "running");
    assert_eq!(port_of(&agent, "prv", "p-hold").0, tap);
    agent.ok("POST", "/vms/p-hold/destroy", None, 200);
    wait_until(
        Duration::from_secs(10),
        "the re-adopted VM's tap removed",
        || !lab.has_link(&tap),
    );
}

/// Two tenants' VMs on one network: a probe VM of each tenant sends 1,000
/// frames (broadcast, so the bridge floods them to every port); a held VM
/// of the same tenant gets all of them, one of the other tenant none.
#[test]
fn tenants_on_one_bridge_exchange_no_frame() {
    let lab = Lab::new("nt");
    lab.enter_node();
    let node = Node::new("net-ten");
    let agent = node.agent(&[]);
    agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "shared", "kind": "isolated"})),
        201,
    );
    // The echo is an untagged port (the node's side): not restricted.
    let echo = lab.stand_in("e", "vr-shared", false);
    for (vm, tenant) in [("a-held", "a"), ("b-held", "b")] {
        agent.ok(
            "POST",
            "/vms",
            Some(probe_vm(&node, vm, "probe.hold", "shared", Some(tenant))),
            201,
        );
        agent.ok("POST", &format!("/vms/{vm}/start"), None, 200);
    }
    let (a_tap, _) = port_of(&agent, "shared", "a-held");
    let (b_tap, _) = port_of(&agent, "shared", "b-held");
    const FRAMES: usize = 1000;
    for (sender, tenant) in [("a-send", "a"), ("b-send", "b")] {
        let to_a = FrameCounter::start(&lab.node.name, &a_tap);
        let to_b = FrameCounter::start(&lab.node.name, &b_tap);
        run_echo_vm(
            (&agent, &node, &lab),
            sender,
            ("shared", Some(tenant)),
            (&echo.ns, "g0"),
            FRAMES,
        );
        std::thread::sleep(Duration::from_millis(300));
        let (got_a, got_b) = (to_a.finish(), to_b.finish());
        eprintln!("tenant {tenant} sent {FRAMES}: a-held got {got_a}, b-held got {got_b}");
        let (same, other) = match tenant {
            "a" => (got_a, got_b),
            _ => (got_b, got_a),
        };
        assert_eq!(same, FRAMES, "frames delivered within tenant {tenant}");
        assert_eq!(
            other, 0,
            "frames from tenant {tenant} delivered to the other tenant"
        );
    }
    let rules = exec_in(
        &lab.node.name,
        &["nft", "list", "table", "bridge", "vireo_shared"],
    )
    .1;
    assert!(rules.contains("drop"), "{rules}");
}

/// Tenant t1 forwards the node's port 20022 to the guest's port 22: the
/// internet reaches the guest there (its own address seen: DNAT, no
/// masquerade), and nowhere once the forward is removed.
fn forwarded_port_reaches_only_its_guest(
    lab: &Lab,
    agent: &Agent,
    node: &Node,
    guest_ns: &str,
    guest_ip: &str,
) {
    let internet = lab.internet.name.as_str();
    let node_port = 20022;
    let listener = net_common::tcp_accept_one(guest_ns, 22);
    assert!(
        net_common::tcp_send(internet, NODE_UPLINK_IP, node_port, b"early").is_err(),
        "reached before a forward"
    );
    let fwd = json!({"tenant": "t1", "node_port": node_port, "to": format!("{guest_ip}:22")});
    let added = agent.ok("POST", "/networks/lab/forwards", Some(fwd.clone()), 201);
    assert_eq!(added["ip"], guest_ip);
    net_common::tcp_send(internet, NODE_UPLINK_IP, node_port, b"through the node").unwrap();
    let (peer, bytes) = listener
        .join()
        .unwrap()
        .expect("the guest accepted no connection");
    assert_eq!(
        (peer.as_str(), bytes.as_slice()),
        (INTERNET_IP, &b"through the node"[..])
    );
    let (got, body) = agent.call("POST", "/networks/lab/forwards", Some(fwd));
    assert_eq!(got, 409, "the same node port twice: {body}");
    assert_eq!(
        agent
            .ok("GET", "/networks/lab/forwards?tenant=t1", None, 200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        agent
            .ok("GET", "/networks/lab/forwards?tenant=t2", None, 200)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A VM target must be the tenant's own and have an address.
    let mut vm = probe_vm(node, "web", "probe.hold", "lab", Some("t1"));
    vm["nics"][0]["mac"] = json!("02:aa:00:00:00:77");
    agent.ok("POST", "/vms", Some(vm), 201);
    let other = json!({"tenant": "t2", "node_port": 20080, "to": "web:80"});
    let (got, body) = agent.call("POST", "/networks/lab/forwards", Some(other));
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not tenant 't2'"),
        "{body}"
    );
    let own = json!({"tenant": "t1", "node_port": 20080, "to": "web:80"});
    let (got, body) = agent.call("POST", "/networks/lab/forwards", Some(own));
    assert_eq!(got, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no address"),
        "{body}"
    );
    agent.ok("DELETE", "/vms/web", None, 204);
    agent.ok(
        "DELETE",
        &format!("/networks/lab/forwards/{node_port}"),
        None,
        204,
    );
    let again = net_common::tcp_accept_one(guest_ns, 22);
    assert!(
        net_common::tcp_send(internet, NODE_UPLINK_IP, node_port, b"late").is_err(),
        "reached after removal"
    );
    drop(again);
}

/// A bridge network over a free link takes it as its port (and gives it
/// back when deleted); over an existing bridge (vmbr0) it uses that bridge
/// and leaves it in place when deleted.
fn bridge_networks_over_a_free_link_and_over_an_existing_bridge(lab: &Lab, agent: &Agent) {
    lab.node.ip("link add lan0 type veth peer name lan1");
    let lan = agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "lan", "kind": "bridge", "uplink": "lan0"})),
        201,
    );
    assert_eq!(lan["bridge"], "vr-lan");
    let master = |link: &str| lab.node_json(&format!("link show {link}"))[0]["master"].clone();
    assert_eq!(master("lan0"), "vr-lan");
    let (got, body) = agent.call(
        "POST",
        "/networks",
        Some(json!({"name": "lan2", "kind": "bridge", "uplink": "lan0"})),
    );
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("port of network 'lan'"),
        "{body}"
    );
    agent.ok("DELETE", "/networks/lan", None, 204);
    assert_eq!(master("lan0"), serde_json::Value::Null);
    assert!(!lab.has_link("vr-lan"));
    lab.node.ip("link add vmbr0 type bridge");
    let mgmt = agent.ok(
        "POST",
        "/networks",
        Some(json!({"name": "mgmt", "kind": "bridge", "uplink": "vmbr0"})),
        201,
    );
    assert_eq!(mgmt["bridge"], "vmbr0");
    assert!(!lab.has_link("vr-mgmt"));
    agent.ok("DELETE", "/networks/mgmt", None, 204);
    assert!(lab.has_link("vmbr0"), "the node's own bridge stays");
    lab.node.ip("link del vmbr0");
    lab.node.ip("link del lan0");
}

/// A guest's name lookups through the forwarder on the gateway: the
/// queries reach the internet's resolver from the node's uplink address and
/// the answers come back to the guest; a name too big for UDP comes
/// truncated over UDP and whole over TCP, two queries on one connection.
fn names_resolve_through_the_gateway(lab: &Lab, guest: &net_common::StandIn) {
    use net_common::resolver::{self, Resolver, BIG_COUNT};
    let upstream = Resolver::start(&lab.internet.name);
    let (ok, out) = guest.exec(&["busybox", "nslookup", "host.vireo.test", "10.77.0.1"]);
    let answer = std::net::Ipv4Addr::from(resolver::ANSWER);
    assert!(ok && out.contains(&answer.to_string()), "nslookup: {out}");

    let ns = &guest.ns.name;
    let udp = resolver::ask_udp(ns, "10.77.0.1", resolver::query(0x5151, "big.vireo.test"))
        .expect("no UDP answer for big.vireo.test");
    assert!(udp.truncated && udp.addresses.is_empty(), "{udp:?}");
    let queries = vec![
        resolver::query(0x7001, "big.vireo.test"),
        resolver::query(0x7002, "host.vireo.test"),
    ];
    let tcp = resolver::ask_tcp(ns, "10.77.0.1", queries);
    let big = tcp[0].as_ref().expect("no TCP answer for big.vireo.test");
    assert_eq!((big.id, big.truncated), (0x7001, false), "{big:?}");
    let expected: Vec<_> = (1..=BIG_COUNT)
        .map(|i| std::net::Ipv4Addr::new(192, 0, 2, i))
        .collect();
    assert_eq!(big.addresses, expected);
    assert!(big.len > 512, "{} bytes fit UDP", big.len);
    let host = tcp[1].as_ref().expect("no second answer on the connection");
    assert_eq!((host.id, host.addresses.clone()), (0x7002, vec![answer]));

    let seen = upstream.finish();
    assert!(
        !seen.udp.is_empty() && seen.udp.iter().all(|s| s == NODE_UPLINK_IP),
        "the resolver saw UDP queries from {:?}",
        seen.udp
    );
    assert_eq!(
        seen.tcp,
        vec![NODE_UPLINK_IP.to_string(); 2],
        "the resolver's TCP queries"
    );
}
