//! `vireo vm migrate NAME NODE`: the VM's live migration to another node of
//! the cluster (any node's agent passes it to the VM's owner), followed
//! with a progress bar until the destination runs the VM; `vireo node
//! drain`, the same for every running VM of a node.

use serde_json::{json, Value};
use vireo_agent::cluster_types::{ClusterNode, ClusterVm};
use vireo_agent::types::TaskInfo;

use crate::http::Client;
use crate::print_out;

/// How a migration goes (`vireo vm migrate`'s options).
#[derive(Default)]
pub struct Options {
    /// `shared` or `copy`.
    pub disks: String,
    pub max_downtime_ms: Option<u64>,
    pub bandwidth_mbps: Option<u64>,
}

pub fn migrate(
    host: &str,
    name: &str,
    node: &str,
    opts: &Options,
    json: bool,
) -> Result<(), String> {
    let result = migrate_vm(host, name, node, opts, json)?;
    if json {
        return crate::vm::print_json(&result);
    }
    let ms = |k: &str| {
        result[k]
            .as_f64()
            .map_or("?".into(), |v| format!("{v:.1} ms"))
    };
    print_out(&format!(
        "VM {name} now runs on {}: downtime {}, total {}, {} sent\n",
        result["node"].as_str().unwrap_or(node),
        ms("downtime_ms"),
        ms("total_ms"),
        crate::format::bytes(result["bytes_sent"].as_u64().unwrap_or(0)),
    ))
}

/// Starts the migration on the VM's owner and follows its task (a bar
/// unless `quiet`); the task's result.
fn migrate_vm(
    host: &str,
    name: &str,
    node: &str,
    opts: &Options,
    quiet: bool,
) -> Result<Value, String> {
    let c = Client::new(&owner_agent(host, name)?);
    let mut body = json!({"node": node, "disks": opts.disks});
    if let Some(ms) = opts.max_downtime_ms {
        body["max_downtime_ms"] = ms.into();
    }
    if let Some(mbps) = opts.bandwidth_mbps {
        body["bandwidth_mbps"] = mbps.into();
    }
    let task: TaskInfo = c.json("POST", &format!("/vms/{name}/migrate"), Some(&body))?;
    let what = format!("migrating {name} to {node}");
    let done = crate::progress::follow(&c, task, &what, quiet)?;
    Ok(done.result.unwrap_or(Value::Null))
}

/// `vireo vm migrate NAME --cancel`: the VM's migration task (on its
/// owner) is cancelled and followed until it ends.
pub fn cancel(host: &str, name: &str, json: bool) -> Result<(), String> {
    let c = Client::new(&owner_agent(host, name)?);
    let tasks: Vec<TaskInfo> = c.json("GET", "/tasks", None)?;
    let task = tasks
        .into_iter()
        .find(|t| t.kind == "vm-migrate" && t.target == name && t.finished.is_none())
        .ok_or_else(|| format!("VM '{name}' is not being migrated"))?;
    c.call("DELETE", &format!("/tasks/{}", task.id), None)?;
    let what = format!("the migration of {name}");
    let done = crate::progress::follow(&c, task, &what, true);
    match (done, json) {
        (Ok(t), _) => Err(format!(
            "too late: the migration had completed ({})",
            t.result.unwrap_or(Value::Null)
        )),
        (Err(e), true) => crate::vm::print_json(&json!({"vm": name, "cancelled": e})),
        (Err(e), false) => print_out(&format!("{e}\n")),
    }
}

/// The agent of the node that runs `name` (its migration task lives
/// there), as the cluster's tables name it; `host` itself if it has the VM
/// or is in no cluster.
fn owner_agent(host: &str, name: &str) -> Result<String, String> {
    let c = Client::new(host);
    let Ok(vms) = c.json::<Value>("GET", "/cluster/vms", None) else {
        return Ok(host.to_string());
    };
    let owner = vms
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .and_then(|v| v["node_id"].as_u64())
        .ok_or_else(|| format!("no VM named '{name}' in the cluster"))?;
    let nodes: Value = c.json("GET", "/cluster/nodes", None)?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"].as_u64() == Some(owner))
        .and_then(|n| n["api"].as_str())
        // The owner speaks what the node asked does (a cluster's agents
        // all serve TLS, or none).
        .map_or_else(
            || host.to_string(),
            |api| match crate::base_url(host).starts_with("https://") {
                true => format!("https://{api}"),
                false => api.to_string(),
            },
        ))
}

/// `vireo node drain NODE`: `node` marked as taking no new VMs, then every
/// running VM of it live-migrated, one after another, each to the other
/// online node with the most free memory at that moment (counting the VMs
/// this drain already sent there).
pub fn drain(host: &str, node: &str, disks: &str, json: bool) -> Result<(), String> {
    let c = Client::new(host);
    c.call("PUT", &format!("/cluster/nodes/{node}/drain"), None)?;
    let nodes: Vec<ClusterNode> = c.json("GET", "/cluster/nodes", None)?;
    let from = nodes
        .iter()
        .find(|n| n.name == node || n.id.to_string() == node)
        .ok_or_else(|| format!("no node named '{node}' in the cluster"))?;
    let vms: Vec<ClusterVm> = c.json("GET", "/cluster/vms", None)?;
    let mut free: Vec<(String, i64)> = nodes
        .iter()
        .filter(|n| n.id != from.id && n.state == "online" && !n.drained)
        .filter_map(|n| {
            let s = n.stats.as_ref()?;
            Some((n.name.clone(), s.memory_total as i64 - s.memory_used as i64))
        })
        .collect();
    let mut moved = Vec::new();
    for vm in vms
        .iter()
        .filter(|v| v.node_id == from.id && v.state == "running")
    {
        let Some(to) = free.iter_mut().max_by_key(|(_, f)| *f) else {
            return Err(format!("no other online node to take {}", vm.name));
        };
        let spec: Value = c.json("GET", &format!("/vms/{}", vm.name), None)?;
        to.1 -= spec["spec"]["memory_mib"].as_i64().unwrap_or(0) << 20;
        let target = to.0.clone();
        let opts = Options {
            disks: disks.to_string(),
            ..Options::default()
        };
        let result = migrate_vm(host, &vm.name, &target, &opts, json)?;
        moved.push(json!({"vm": vm.name, "node": target, "downtime_ms": result["downtime_ms"]}));
        if !json {
            print_out(&format!("VM {} now runs on {target}\n", vm.name))?;
        }
    }
    match json {
        true => crate::vm::print_json(&moved),
        false => print_out(&format!("node {} runs no VM now\n", from.name)),
    }
}

/// `vireo node undrain NODE`: the node takes new VMs again.
pub fn undrain(host: &str, node: &str) -> Result<(), String> {
    let c = Client::new(host);
    c.call("DELETE", &format!("/cluster/nodes/{node}/drain"), None)?;
    print_out(&format!("node {node} takes new VMs again\n"))
}
