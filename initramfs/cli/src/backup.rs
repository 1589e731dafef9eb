//! `vireo backup ...`, `vireo template ...` and `vireo task ...`.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vireo_agent::cluster_types::ClusterTasks;
use vireo_agent::types::TaskInfo;

use crate::http::Client;
use crate::storage::{bytes, show, task, Conn};

/// `vireo backup VM --storage POOL` takes a backup; the subcommands
/// manage the ones taken.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The VM to back up.
    #[arg(required = true)]
    pub vm: Option<String>,
    /// The pool the backup goes to.
    #[arg(long, required = true)]
    pub storage: Option<String>,
    /// zstd (default) or none (a sparse raw file per disk).
    #[arg(long, default_value = "zstd", value_parser = ["zstd", "none"])]
    pub compress: String,
    /// Keep only the newest N backups of this VM in that pool.
    #[arg(long)]
    pub max_backups: Option<u32>,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// The backups in a pool (of one VM with --vm).
    List {
        #[arg(long)]
        storage: String,
        #[arg(long)]
        vm: Option<String>,
    },
    /// Restore POOL/BACKUP into its VM (stopped) or a new one (--vm).
    Restore {
        backup: String,
        #[arg(long)]
        vm: Option<String>,
        /// The pool for the restored volumes (default: each disk's own).
        #[arg(long)]
        storage: Option<String>,
    },
    /// Check every file of POOL/BACKUP against its manifest.
    Verify { backup: String },
    /// Delete POOL/BACKUP.
    Delete { backup: String },
}

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Mark a stopped VM (and its disks) as a template.
    Create { vm: String },
    /// Make a new VM from a template: linked clones of its disks (--full: copies).
    Clone {
        template: String,
        name: String,
        #[arg(long)]
        full: bool,
        /// Pool for the copies (with --full).
        #[arg(long)]
        storage: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Every task this agent ran since it started.
    List {
        /// Every online node's tasks, each with its node (in a cluster).
        #[arg(long)]
        all: bool,
    },
    Show {
        id: String,
        /// The node that runs the task (as `task list --all` names it).
        #[arg(long)]
        node: Option<String>,
    },
    /// Ask a running task to stop.
    Cancel {
        id: String,
        /// The node that runs the task (as `task list --all` names it).
        #[arg(long)]
        node: Option<String>,
    },
}

/// `POOL/BACKUP` → the backup's path.
fn backup_path(spec: &str) -> Result<String, String> {
    match spec.split_once('/') {
        Some((pool, id)) if !pool.is_empty() && !id.is_empty() && !id.contains('/') => {
            Ok(format!("/pools/{pool}/backups/{id}"))
        }
        _ => Err(format!("'{spec}' is not POOL/BACKUP")),
    }
}

pub fn backup(conn: &Conn, args: BackupArgs) -> Result<(), String> {
    let c = Client::new(&conn.host);
    let Some(command) = args.command else {
        let (Some(vm), Some(storage)) = (args.vm, args.storage) else {
            return Err("give a VM and --storage POOL".into());
        };
        let body = json!({"vm": vm, "storage": storage, "compress": args.compress, "max_backups": args.max_backups});
        let t = task(&c, conn, "POST", "/backups", Some(&body), "backup")?;
        return show(conn, &t, |t| {
            let r = &t["result"];
            let m = &r["backup"];
            let pause = m["pause_ms"]
                .as_f64()
                .map_or(String::new(), |p| format!(", guest paused {p:.1} ms"));
            Ok(format!(
                "backup {}/{} of {vm}{pause}; removed: {}\n",
                r["pool"].as_str().unwrap_or("?"),
                m["id"].as_str().unwrap_or("?"),
                r["removed"]
            ))
        });
    };
    match command {
        BackupCommand::List { storage, vm } => {
            let query = vm.map_or(String::new(), |vm| format!("?vm={vm}"));
            let v: Value = c.json("GET", &format!("/pools/{storage}/backups{query}"), None)?;
            show(conn, &v, backups_table)
        }
        BackupCommand::Restore {
            backup,
            vm,
            storage,
        } => {
            let path = format!("{}/restore", backup_path(&backup)?);
            let t = task(
                &c,
                conn,
                "POST",
                &path,
                Some(&json!({"vm": vm, "storage": storage})),
                "restore",
            )?;
            show(conn, &t, |t| {
                Ok(format!(
                    "restored VM {} from {backup}\n",
                    t["result"]["vm"].as_str().unwrap_or("?")
                ))
            })
        }
        BackupCommand::Verify { backup } => {
            let path = format!("{}/verify", backup_path(&backup)?);
            let t = task(&c, conn, "POST", &path, None, "verify")?;
            show(conn, &t, |_| {
                Ok(format!("{backup}: every checksum matches\n"))
            })
        }
        BackupCommand::Delete { backup } => {
            c.call("DELETE", &backup_path(&backup)?, None)?;
            show(conn, &json!({"deleted": backup}), |_| {
                Ok(format!("{backup} deleted\n"))
            })
        }
    }
}

fn backups_table(v: &Value) -> Result<String, String> {
    let mut out = format!(
        "{:<36} {:<12} {:<5} {:>10}  notes\n",
        "backup", "vm", "live", "stored"
    );
    for b in v.as_array().ok_or("unexpected answer")? {
        let m = &b["manifest"];
        let stored: u64 = m["disks"].as_array().map_or(0, |d| {
            d.iter().filter_map(|d| d["stored_bytes"].as_u64()).sum()
        });
        let notes = b["error"]
            .as_str()
            .map_or(String::new(), |e| format!("UNUSABLE: {e}"));
        let _ = writeln!(
            out,
            "{:<36} {:<12} {:<5} {:>10}  {notes}",
            format!(
                "{}/{}",
                b["pool"].as_str().unwrap_or("?"),
                b["id"].as_str().unwrap_or("?")
            ),
            m["vm"].as_str().unwrap_or("-"),
            m["live"]
                .as_bool()
                .map_or("-", |l| if l { "yes" } else { "no" }),
            bytes(stored),
        );
    }
    Ok(out)
}

pub fn template(conn: &Conn, command: TemplateCommand) -> Result<(), String> {
    let c = Client::new(&conn.host);
    match command {
        TemplateCommand::Create { vm } => {
            let v: Value = c.json("POST", "/templates", Some(&json!({"vm": vm})))?;
            show(conn, &v, |_| Ok(format!("VM {vm} is a template\n")))
        }
        TemplateCommand::Clone {
            template,
            name,
            full,
            storage,
        } => {
            let body = json!({"name": name, "full": full, "storage": storage});
            let t = task(
                &c,
                conn,
                "POST",
                &format!("/templates/{template}/clone"),
                Some(&body),
                "clone",
            )?;
            show(conn, &t, |_| {
                Ok(format!("VM {name} cloned from template {template}\n"))
            })
        }
    }
}

pub fn tasks(conn: &Conn, command: TaskCommand) -> Result<(), String> {
    let c = Client::new(&conn.host);
    match command {
        TaskCommand::List { all: false } => {
            let v: Value = c.json("GET", "/tasks", None)?;
            show(conn, &v, tasks_table)
        }
        TaskCommand::List { all: true } => {
            let v: Value = c.json("GET", "/cluster/tasks", None)?;
            show(conn, &v, cluster_tasks_table)
        }
        TaskCommand::Show { id, node } => {
            let c = c.on_node(node);
            let v: Value = c.json("GET", &format!("/tasks/{id}"), None)?;
            show(conn, &v, |v| tasks_table(&json!([v])))
        }
        TaskCommand::Cancel { id, node } => {
            let c = c.on_node(node);
            c.call("DELETE", &format!("/tasks/{id}"), None)?;
            show(conn, &json!({"cancelling": id}), |_| {
                Ok(format!("asked {id} to stop\n"))
            })
        }
    }
}

fn tasks_table(v: &Value) -> Result<String, String> {
    let tasks: Vec<TaskInfo> = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<10} {:<16} {:<28} {:<10} {:>6}  error\n",
        "task", "kind", "target", "state", "done"
    );
    for t in tasks {
        task_row(&mut out, "", t);
    }
    Ok(out)
}

/// `GET /cluster/tasks`: the tasks with their nodes, and the nodes that
/// did not answer.
fn cluster_tasks_table(v: &Value) -> Result<String, String> {
    let all: ClusterTasks = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<10} {:<10} {:<16} {:<28} {:<10} {:>6}  error\n",
        "node", "task", "kind", "target", "state", "done"
    );
    for t in all.tasks {
        task_row(&mut out, &format!("{:<10} ", t.node), t.item);
    }
    if !all.unanswered.is_empty() {
        let _ = writeln!(
            out,
            "no answer from {}: their tasks are missing",
            all.unanswered.join(", ")
        );
    }
    Ok(out)
}

fn task_row(out: &mut String, prefix: &str, t: TaskInfo) {
    let pct = (t.done * 100)
        .checked_div(t.total)
        .map_or("-".into(), |p| format!("{p}%"));
    let _ = writeln!(
        out,
        "{prefix}{:<10} {:<16} {:<28} {:<10} {:>6}  {}",
        t.id,
        t.kind,
        t.target,
        format!("{:?}", t.state).to_lowercase(),
        pct,
        t.error.unwrap_or_default()
    );
}
