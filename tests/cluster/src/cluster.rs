//! A running test cluster: the lab network, one [`Node`] per spec entry, and
//! the operations tests need (start, kill -9, restart, partition, status).
//! Dropping it stops every node and removes every namespace, also when a test
//! panics; the node directories are kept after a failure for the post-mortem.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use vireo_membership::config;
use vireo_membership::status::ClusterStatus;

use crate::conf::{ClusterSpec, Kind};
use crate::net::Lab;
use crate::node::Node;

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

pub struct Cluster {
    pub spec: ClusterSpec,
    pub nodes: Vec<Node>,
    lab: Lab,
    root: PathBuf,
    /// Effective totem timers (ms), as Vireo's parser derives them from the file.
    pub token_ms: u32,
    pub consensus_ms: u32,
}

impl Cluster {
    /// Builds the network and writes every node's corosync.conf; starts nothing.
    pub fn new(spec: ClusterSpec) -> Result<Cluster, String> {
        let n = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("vireo-cluster-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lab = Lab::new(spec.kinds.len())?;
        let mut nodes = Vec::new();
        let mut timers = None;
        for (i, &kind) in spec.kinds.iter().enumerate() {
            let dir = root.join(ClusterSpec::node_name(i));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let text = spec.render(&dir);
            // The file must be one Vireo reads too: same input, same timers.
            let parsed = config::parse(&text).map_err(|e| format!("generated conf: {e}"))?;
            timers = Some((parsed.totem.timers.token, parsed.totem.timers.consensus));
            let node = Node::new(kind, lab.namespace(i).to_string(), dir);
            std::fs::write(node.conf_path(), text).map_err(|e| e.to_string())?;
            nodes.push(node);
        }
        let (token_ms, consensus_ms) = timers.ok_or("a cluster needs nodes")?;
        Ok(Cluster {
            spec,
            nodes,
            lab,
            root,
            token_ms,
            consensus_ms,
        })
    }

    /// New cluster with every node started.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        let mut c = Cluster::new(spec)?;
        for i in 0..c.nodes.len() {
            c.nodes[i].start()?;
        }
        Ok(c)
    }

    /// The longest a crash may go unnoticed in a status: token + consensus + 1 s.
    pub fn failure_deadline(&self) -> Duration {
        Duration::from_millis(u64::from(self.token_ms + self.consensus_ms) + 1000)
    }

    pub fn kind(&self, i: usize) -> Kind {
        self.nodes[i].kind
    }

    pub fn status(&mut self, i: usize) -> Result<ClusterStatus, String> {
        self.nodes[i].status()
    }

    pub fn kill9(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].kill9()
    }

    /// SIGTERM node `i` and wait for it to exit (it leaves the ring cleanly).
    pub fn terminate(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].terminate()
    }

    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].start()
    }

    pub fn partition(&mut self, islands: &[&[usize]]) -> Result<(), String> {
        self.lab.partition(islands)
    }

    pub fn heal(&mut self) -> Result<(), String> {
        self.lab.heal()
    }

    /// Indices of the nodes whose process runs.
    pub fn running(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect()
    }

    /// Every node's log directory, for failure messages.
    pub fn root(&self) -> &PathBuf {
        &self.root
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if node.is_running() {
                let _ = node.kill9();
            }
        }
        if std::thread::panicking() {
            eprintln!("cluster files kept for inspection: {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        // The lab (namespaces) drops after this, with the nodes already gone.
    }
}
