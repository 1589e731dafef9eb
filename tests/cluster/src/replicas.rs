//! Store replicas on a test cluster's nodes, and the one figure the scale
//! test and the bench both take: how long a write takes from `put` on one
//! node until every replica has applied it.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use vireo_cluster::store::{Change, Store, StoreOptions};

use crate::cluster::Cluster;

pub const GROUP: &str = "vireo-store";

/// One replica per node (saved under the node's directory), each ready.
pub fn open_all(c: &Cluster, timeout: Duration) -> Result<Vec<Store>, String> {
    let stores: Vec<Store> = c
        .nodes
        .iter()
        .map(|n| {
            let o = StoreOptions::new(n.group_socket_path(), GROUP).persist(n.dir.join("store"));
            Store::open(o).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    for (i, s) in stores.iter().enumerate() {
        s.wait_ready(timeout)
            .map_err(|e| format!("replica on node {}: {e}", i + 1))?;
    }
    Ok(stores)
}

/// Waits until `rx` reports version `v` applied (or later).
fn until_applied(rx: &Receiver<Change>, v: u64, deadline: Instant) -> Result<Instant, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Change::Applied { version, .. }) if version >= v => return Ok(Instant::now()),
            Ok(_) => {}
            Err(e) => return Err(format!("version {v} not applied: {e}")),
        }
    }
}

/// `put` on `writer`, then the time until the last replica applied it.
pub fn write_to_all(stores: &[Store], writer: usize, key: &str) -> Result<Duration, String> {
    let subs: Vec<Receiver<Change>> = stores.iter().map(Store::subscribe).collect();
    let start = Instant::now();
    let v = stores[writer]
        .put(key, "x", None)
        .map_err(|e| e.to_string())?;
    let deadline = start + Duration::from_secs(30);
    let mut last = start;
    for rx in &subs {
        last = last.max(until_applied(rx, v, deadline)?);
    }
    Ok(last - start)
}
