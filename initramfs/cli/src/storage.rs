//! `vireo pool ...` and `vireo vol ...`: storage pools and volumes.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use vireo_agent::storage_api::{PoolInfo, VolumeFormat, VolumeInfo, VolumeRef};
use vireo_agent::types::TaskInfo;

use crate::http::Client;
use crate::progress::{byte_bar, follow, set_length};

/// Where the agent is and how to print: shared by every storage command.
#[derive(Args, Clone)]
pub struct Conn {
    /// The node's agent: HOST or HOST:PORT (port 8006 by default).
    #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// Print the agent's JSON instead of tables and bars.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Every pool: kind, where, free space, whether it is usable.
    List,
    /// One pool.
    Show { name: String },
    /// Define a pool: a directory (--dir) or an NFS export (--nfs SERVER:/EXPORT).
    Add {
        name: String,
        #[arg(long, conflicts_with = "nfs", required_unless_present = "nfs")]
        dir: Option<PathBuf>,
        #[arg(long)]
        nfs: Option<String>,
        /// NFS version: 4.2 (default), 4.1, 4, 3.
        #[arg(long, requires = "nfs")]
        nfs_version: Option<String>,
        /// More NFS mount options (e.g. timeo=100,retrans=3).
        #[arg(long, requires = "nfs")]
        options: Option<String>,
        /// Define it on every node of the cluster (a directory all nodes
        /// see, or the NFS export).
        #[arg(long)]
        cluster: bool,
    },
    /// Remove a pool's definition (its files stay; an NFS export is unmounted).
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum VolCommand {
    /// The volumes of a pool with their real and virtual sizes.
    List {
        #[arg(default_value = "local")]
        pool: String,
    },
    Show {
        volume: VolumeRef,
    },
    /// Create an empty volume.
    Create {
        volume: VolumeRef,
        /// Virtual size: bytes or with K, M, G, T.
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[arg(long, value_parser = parse_format, default_value = "qcow2")]
        format: VolumeFormat,
    },
    /// Delete a volume and its snapshots (refused while in use).
    Delete {
        volume: VolumeRef,
    },
    /// Grow a volume.
    Resize {
        volume: VolumeRef,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Convert a volume between raw and qcow2 (in place).
    Convert {
        volume: VolumeRef,
        #[arg(long, value_parser = parse_format)]
        format: VolumeFormat,
    },
    /// Copy a volume (full), or make a linked clone of a template.
    Clone {
        volume: VolumeRef,
        /// The new volume's name.
        name: String,
        /// Its pool (default: the source's).
        #[arg(long)]
        pool: Option<String>,
        /// A qcow2 overlay on the template instead of a copy.
        #[arg(long)]
        linked: bool,
        #[arg(long, value_parser = parse_format)]
        format: Option<VolumeFormat>,
    },
    /// Mark a volume as a template (--off: unmark it).
    Template {
        volume: VolumeRef,
        #[arg(long)]
        off: bool,
    },
    /// Take an external snapshot.
    Snapshot {
        volume: VolumeRef,
        name: String,
    },
    /// Go back to the newest snapshot, dropping what was written since.
    Revert {
        volume: VolumeRef,
        snapshot: String,
    },
    /// Delete a snapshot (its data is committed into the chain).
    DeleteSnapshot {
        volume: VolumeRef,
        snapshot: String,
    },
    /// Upload a file as a new volume (streamed).
    Upload {
        file: PathBuf,
        volume: VolumeRef,
        #[arg(long, value_parser = parse_format)]
        format: Option<VolumeFormat>,
    },
    /// Download a volume into a file (streamed; --raw: the guest's view).
    Download {
        volume: VolumeRef,
        file: PathBuf,
        #[arg(long)]
        raw: bool,
    },
}

/// `10G`, `512M`, `4096`: bytes (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 10G, 512M)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_format(s: &str) -> Result<VolumeFormat, String> {
    match s {
        "raw" => Ok(VolumeFormat::Raw),
        "qcow2" => Ok(VolumeFormat::Qcow2),
        _ => Err(format!("'{s}' is not raw or qcow2")),
    }
}

fn vol_path(v: &VolumeRef) -> String {
    format!("/pools/{}/volumes/{}", v.pool, v.name)
}

/// Prints `value` as JSON, or `text` from it.
pub fn show(
    conn: &Conn,
    value: &Value,
    text: impl FnOnce(&Value) -> Result<String, String>,
) -> Result<(), String> {
    let out = match conn.json {
        true => serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n",
        false => text(value)?,
    };
    crate::print_out(&out)
}

/// Starts a task and follows it; the final task as JSON.
pub fn task(
    client: &Client,
    conn: &Conn,
    method: &str,
    path: &str,
    body: Option<&Value>,
    what: &str,
) -> Result<Value, String> {
    let started: TaskInfo = client.json(method, path, body)?;
    let done = follow(client, started, what, conn.json)?;
    serde_json::to_value(done).map_err(|e| e.to_string())
}

pub fn pool(conn: &Conn, command: PoolCommand) -> Result<(), String> {
    let c = Client::new(&conn.host);
    match command {
        PoolCommand::List => {
            let v: Value = c.json("GET", "/pools", None)?;
            show(conn, &v, pools_table)
        }
        PoolCommand::Show { name } => {
            let v: Value = c.json("GET", &format!("/pools/{name}"), None)?;
            show(conn, &v, |v| pools_table(&json!([v])))
        }
        PoolCommand::Add {
            name,
            dir,
            nfs,
            nfs_version,
            options,
            cluster,
        } => {
            let mut body = match (dir, nfs) {
                (Some(path), _) => json!({"name": name, "kind": "dir", "path": path}),
                (None, Some(spec)) => {
                    let (server, export) = spec
                        .split_once(':')
                        .ok_or_else(|| format!("'{spec}' is not SERVER:/EXPORT"))?;
                    json!({"name": name, "kind": "nfs", "server": server, "export": export,
                           "version": nfs_version, "options": options})
                }
                (None, None) => return Err("give --dir PATH or --nfs SERVER:/EXPORT".into()),
            };
            body["cluster"] = cluster.into();
            let v: Value = c.json("POST", "/pools", Some(&body))?;
            show(conn, &v, |v| pools_table(&json!([v])))
        }
        PoolCommand::Remove { name } => {
            c.call("DELETE", &format!("/pools/{name}"), None)?;
            show(conn, &json!({"removed": name}), |_| {
                Ok(format!("pool {name} removed\n"))
            })
        }
    }
}

pub fn vol(conn: &Conn, command: VolCommand) -> Result<(), String> {
    let c = Client::new(&conn.host);
    let info = |v: &Value| volumes_table(&json!([v]));
    match command {
        VolCommand::List { pool } => {
            let v: Value = c.json("GET", &format!("/pools/{pool}/volumes"), None)?;
            show(conn, &v, volumes_table)
        }
        VolCommand::Show { volume } => show(conn, &c.json("GET", &vol_path(&volume), None)?, info),
        VolCommand::Create {
            volume,
            size,
            format,
        } => {
            let body = json!({"name": volume.name, "format": format, "size": size});
            let v = c.json(
                "POST",
                &format!("/pools/{}/volumes", volume.pool),
                Some(&body),
            )?;
            show(conn, &v, info)
        }
        VolCommand::Delete { volume } => {
            c.call("DELETE", &vol_path(&volume), None)?;
            show(conn, &json!({"deleted": volume}), |_| {
                Ok(format!("{volume} deleted\n"))
            })
        }
        VolCommand::Resize { volume, size } => {
            let path = format!("{}/resize", vol_path(&volume));
            show(
                conn,
                &c.json("POST", &path, Some(&json!({"size": size})))?,
                info,
            )
        }
        VolCommand::Convert { volume, format } => {
            let path = format!("{}/convert", vol_path(&volume));
            let t = task(
                &c,
                conn,
                "POST",
                &path,
                Some(&json!({"format": format})),
                "convert",
            )?;
            show(conn, &t, |t| info(&t["result"]["volume"]))
        }
        VolCommand::Clone {
            volume,
            name,
            pool,
            linked,
            format,
        } => {
            let path = format!("{}/clone", vol_path(&volume));
            let body = json!({"name": name, "pool": pool, "linked": linked, "format": format});
            if linked {
                return show(conn, &c.json("POST", &path, Some(&body))?, info);
            }
            let t = task(&c, conn, "POST", &path, Some(&body), "clone")?;
            show(conn, &t, |t| info(&t["result"]["volume"]))
        }
        other => vol_more(conn, &c, other),
    }
}

fn vol_more(conn: &Conn, c: &Client, command: VolCommand) -> Result<(), String> {
    let info = |v: &Value| volumes_table(&json!([v]));
    match command {
        VolCommand::Template { volume, off } => {
            let method = if off { "DELETE" } else { "PUT" };
            let path = format!("{}/template", vol_path(&volume));
            show(conn, &c.json(method, &path, None)?, info)
        }
        VolCommand::Snapshot { volume, name } => {
            let path = format!("{}/snapshots", vol_path(&volume));
            show(
                conn,
                &c.json("POST", &path, Some(&json!({"name": name})))?,
                info,
            )
        }
        VolCommand::Revert { volume, snapshot } => {
            let path = format!("{}/snapshots/{snapshot}/revert", vol_path(&volume));
            show(conn, &c.json("POST", &path, None)?, info)
        }
        VolCommand::DeleteSnapshot { volume, snapshot } => {
            let path = format!("{}/snapshots/{snapshot}", vol_path(&volume));
            let t = task(c, conn, "DELETE", &path, None, "commit")?;
            show(conn, &t, |t| info(&t["result"]["volume"]))
        }
        VolCommand::Upload {
            file,
            volume,
            format,
        } => upload(conn, c, &file, &volume, format),
        VolCommand::Download { volume, file, raw } => download(conn, c, &volume, &file, raw),
        _ => unreachable!("handled in vol()"),
    }
}

fn upload(
    conn: &Conn,
    c: &Client,
    file: &PathBuf,
    v: &VolumeRef,
    format: Option<VolumeFormat>,
) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let bar = byte_bar("upload", conn.json);
    set_length(&bar, len);
    let mut reader = bar.wrap_read(f);
    let query = format.map_or(String::new(), |f| format!("?format={}", f.as_str()));
    let text = c.upload(&format!("{}/data{query}", vol_path(v)), &mut reader, len)?;
    bar.finish();
    let info: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    show(conn, &info, |v| volumes_table(&json!([v])))
}

fn download(
    conn: &Conn,
    c: &Client,
    v: &VolumeRef,
    file: &PathBuf,
    raw: bool,
) -> Result<(), String> {
    let out = std::fs::File::create_new(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let bar = byte_bar("download", conn.json);
    let mut writer = bar.wrap_write(std::io::BufWriter::new(out));
    let query = if raw { "?format=raw" } else { "" };
    let got = c.download(
        &format!("{}/data{query}", vol_path(v)),
        &mut writer,
        &|len| set_length(&bar, len),
    );
    let got = match got {
        Ok(n) => n,
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
    };
    std::io::Write::flush(&mut writer).map_err(|e| e.to_string())?;
    bar.finish();
    let done = json!({"volume": v, "file": file, "bytes": got});
    show(conn, &done, |_| {
        Ok(format!("{v} → {} ({got} bytes)\n", file.display()))
    })
}

pub fn bytes(n: u64) -> String {
    crate::format::bytes(n)
}

fn pools_table(v: &Value) -> Result<String, String> {
    let pools: Vec<PoolInfo> = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<12} {:<5} {:<40} {:>10} {:>10}  status\n",
        "pool", "kind", "where", "size", "free"
    );
    for p in pools {
        let (kind, place) = match &p.def.kind {
            vireo_agent::storage_api::PoolKind::Dir { path } => ("dir", path.display().to_string()),
            vireo_agent::storage_api::PoolKind::Nfs { server, export, .. } => {
                ("nfs", format!("{server}:{export}"))
            }
        };
        let size = p.total_bytes.map_or("-".into(), bytes);
        let free = p.free_bytes.map_or("-".into(), bytes);
        let status = p.error.unwrap_or_else(|| "ok".into());
        let _ = writeln!(
            out,
            "{:<12} {kind:<5} {place:<40} {size:>10} {free:>10}  {status}",
            p.def.name
        );
    }
    Ok(out)
}

fn volumes_table(v: &Value) -> Result<String, String> {
    let vols: Vec<VolumeInfo> = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mut out = format!(
        "{:<32} {:<6} {:>10} {:>10}  notes\n",
        "volume", "format", "virtual", "real"
    );
    for v in vols {
        let mut notes = Vec::new();
        if v.template {
            notes.push("template".to_string());
        }
        if let Some(base) = &v.linked_to {
            notes.push(format!("linked to {base}"));
        }
        if !v.snapshots.is_empty() {
            let names: Vec<&str> = v.snapshots.iter().map(|s| s.name.as_str()).collect();
            notes.push(format!("snapshots {}", names.join(",")));
        }
        if !v.used_by.is_empty() {
            notes.push(format!("used by {}", v.used_by.join(",")));
        }
        let _ = writeln!(
            out,
            "{:<32} {:<6} {:>10} {:>10}  {}",
            v.volume.to_string(),
            v.format.as_str(),
            bytes(v.virtual_size),
            bytes(v.real_size),
            notes.join("; ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999T").is_err());
    }
}
