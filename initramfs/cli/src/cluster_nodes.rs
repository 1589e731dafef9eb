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
            n.id, n.name, n.address, n.state
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
