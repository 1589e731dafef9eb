//! The lab network alone: partitions really cut the links they should, and
//! only those (checked with busybox ping between the node namespaces).

use std::process::{Command, Stdio};

use vireo_cluster_tests::net::{node_addr, Lab};

/// Every pair (a < b) that answers a ping, all pings at once (a lost one
/// waits its full second).
fn connectivity(lab: &Lab, n: usize) -> Vec<(usize, usize)> {
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let pings: Vec<_> = pairs
        .iter()
        .map(|&(a, b)| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    lab.namespace(a),
                    "busybox",
                    "ping",
                    "-c1",
                    "-W1",
                ])
                .arg(node_addr(b).to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    pairs
        .into_iter()
        .zip(pings)
        .filter_map(|(pair, mut ping)| ping.wait().unwrap().success().then_some(pair))
        .collect()
}

#[test]
fn islands_and_cut_ports_isolate_exactly() {
    let mut lab = Lab::new(5).unwrap();
    assert_eq!(connectivity(&lab, 5).len(), 10);
    // Islands {0,2,3} and {1}; node 4 cut off.
    lab.partition(&[&[0, 2, 3], &[1]]).unwrap();
    assert_eq!(connectivity(&lab, 5), [(0, 2), (0, 3), (2, 3)]);
    lab.partition(&[&[1, 4], &[0]]).unwrap();
    assert_eq!(connectivity(&lab, 5), [(1, 4)]);
    lab.heal().unwrap();
    assert_eq!(connectivity(&lab, 5).len(), 10);
}
