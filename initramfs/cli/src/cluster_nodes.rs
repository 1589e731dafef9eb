//! `vireo cluster nodes` and `vireo vm list --all`: the cluster's node table
//! and every VM of the cluster, as any member's agent knows them.

use std::fmt::Write;
use std::time::Duration;

use vireo_agent::cluster_types::{ClusterNode, ClusterVm};

use crate::format::{bytes, duration};
use crate::vm::print_json;
use crate::{base_url, print_out, request};

const TIMEOUT: Duration = Duration::from_secs(30);

pub fn nodes(host: &str, json: bool) -> Result<(), String> {
    let body = request(&base_url(host), "GET", "/cluster/nodes", None, TIMEOUT)?;
    let nodes: Vec<ClusterNode> = parse(&body)?;
    match json {
        true => print_json(&nodes),
        false => print_out(&nodes_table(&nodes)),
    }
}

pub fn all_vms(base: &str, json: bool) -> Result<(), String> {
    let vms: Vec<ClusterVm> = parse(&request(base, "GET", "/cluster/vms", None, TIMEOUT)?)?;
    match json {
        true => print_json(&vms),
        false => print_out(&vms_table(&vms)),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("unexpected answer from the agent: {e}"))
}

pub fn nodes_table(nodes: &[ClusterNode]) -> String {
    let mut out = format!(
        "{:>3}  {:<12}  {:<15}  {:<8}  {:>9}  {:>5}  {:>4}  {:>5}  {:>19}  {:>19}  {:>3}\n",
        "ID", "NAME", "ADDRESS", "STATE", "UPTIME", "LOAD", "CPUS", "CPU%", "MEMORY", "DISK", "VMS"
    );
    for n in nodes {
        let _ = write!(
            out,
            "{:>3}  {:<12}  {:<15}  {:<8}",
            n.id,
            n.name,
            n.address,
            match (n.drained, n.state.as_str()) {
                (true, "online") => "drained",
                (_, state) => state,
            }
        );
        let _ = match &n.stats {
            Some(s) => writeln!(
                out,
                "  {:>9}  {:>5.2}  {:>4}  {:>5.1}  {:>19}  {:>19}  {:>3}",
                duration(s.uptime_s),
                s.load_1m,
                s.cpus,
                s.cpu_percent,
                format!("{}/{}", bytes(s.memory_used), bytes(s.memory_total)),
                format!("{}/{}", bytes(s.disk_used), bytes(s.disk_total)),
                s.vms
            ),
            None => writeln!(out, "  (no statistics published yet)"),
        };
    }
    out
}

pub fn vms_table(vms: &[ClusterVm]) -> String {
    let width = vms.iter().map(|v| v.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<width$}  {:<13}  {:<12}  HA\n", "NAME", "STATE", "NODE");
    for v in vms {
        let _ = writeln!(
            out,
            "{:<width$}  {:<13}  {:<12}  {}",
            v.name,
            v.state,
            v.node,
            if v.ha { "yes" } else { "no" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vireo_agent::cluster_types::NodeStats;

    fn node(id: u32, stats: Option<NodeStats>) -> ClusterNode {
        ClusterNode {
            id,
            name: format!("node{id}"),
            address: format!("10.0.0.{id}"),
            state: "online".into(),
            api: None,
            stats,
            updated: None,
            drained: false,
        }
    }

    #[test]
    fn node_table_rows() {
        let stats = NodeStats {
            memory_total: 8 << 30,
            memory_used: 2 << 30,
            vms: 3,
            cpus: 4,
            ..NodeStats::default()
        };
        let t = nodes_table(&[node(1, Some(stats)), node(2, None)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with(" ID  NAME"), "{t}");
        assert!(
            lines[1].contains("node1") && lines[1].contains("online"),
            "{t}"
        );
        assert!(
            lines[1].contains("2.0 GiB/8.0 GiB") && lines[1].ends_with("  3"),
            "{t}"
        );
        assert!(lines[2].contains("no statistics published yet"), "{t}");
    }

    #[test]
    fn vm_table_rows() {
        let vm = ClusterVm {
            name: "web".into(),
            node: "node2".into(),
            node_id: 2,
            state: "running".into(),
            ha: true,
        };
        let t = vms_table(&[vm]);
        assert_eq!(
            t.lines().nth(1),
            Some("web   running        node2         yes")
        );
    }
}
