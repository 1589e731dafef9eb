//! The cluster API's types, shared by the agent and the `vireo` CLI:
//! GET /cluster/nodes (`ClusterNode`), GET /cluster/vms (`ClusterVm`) and
//! GET /cluster/tasks (`ClusterTasks`, each task `OnNode`).

use serde::{Deserialize, Serialize};

/// One node of the cluster as the replicated store knows it: its nodelist
/// entry, whether it is in this node's current view, and the statistics it
/// last published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterNode {
    pub id: u32,
    pub name: String,
    /// Its ring0 address.
    pub address: String,
    /// `online` (in the current view), `offline`, or `fenced` (offline past
    /// the fencing bound: its HA VMs may run elsewhere).
    pub state: String,
    /// Where its agent listens (`ADDR:PORT`), once it has published.
    pub api: Option<String>,
    pub stats: Option<NodeStats>,
    /// Seconds since the epoch of its last publication.
    pub updated: Option<u64>,
    /// In maintenance (`vireo node drain`): it takes no new VMs.
    #[serde(default)]
    pub drained: bool,
}

/// What each agent publishes about its node every few seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    pub uptime_s: f64,
    pub load_1m: f64,
    pub cpus: u32,
    /// Busy share of all CPUs since the previous publication, 0–100.
    pub cpu_percent: f64,
    pub memory_total: u64,
    pub memory_used: u64,
    /// The state directory's file system.
    pub disk_total: u64,
    pub disk_used: u64,
    /// VMs defined on the node, and how many of them have a VMM.
    pub vms: u32,
    pub vms_running: u32,
    /// Cores its VMMs used since the previous publication (1.5: one and a
    /// half cores busy); what load balancing by CPU compares.
    #[serde(default)]
    pub vms_cpu: f64,
}

/// A VM anywhere in the cluster: its owner node and the state that node
/// last published for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterVm {
    pub name: String,
    pub node: String,
    pub node_id: u32,
    pub state: String,
    pub ha: bool,
}

/// `GET /cluster/tasks`: every node's tasks, each with its node, and the
/// online nodes whose agents did not answer (their tasks are missing).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterTasks {
    pub tasks: Vec<OnNode<crate::types::TaskInfo>>,
    pub unanswered: Vec<String>,
}

/// Something of node `node`'s (a task: `GET /tasks/{id}` there, or with
/// `x-vireo-node: NODE` on any node; a VM of `GET /vms?all=true`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OnNode<T> {
    pub node: String,
    #[serde(flatten)]
    pub item: T,
}
