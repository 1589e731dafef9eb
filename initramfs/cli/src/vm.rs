//! `vireo vm ...`: the node's VMs, as virsh would show them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use vireo_agent::vm_types::{Boot, DiskSpec, NicSpec, OnCrash, OnReboot, VmInfo, VmSpec};

use crate::{base_url, print_out, request};

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct VmArgs {
    /// The node's agent: HOST or HOST:PORT (port 8006 by default).
    #[arg(long, env = "VIREO_HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// Print the agent's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: VmCommand,
}

#[derive(Subcommand)]
pub enum VmCommand {
    /// Every VM on the node (with --all: on every node of the cluster).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One VM: its definition and state.
    Show { name: String },
    /// Define a new VM (stopped, unless --start).
    Define {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// Start it once defined.
        #[arg(long)]
        start: bool,
        /// Then open its console (implies --start).
        #[arg(long)]
        console: bool,
    },
    /// Change a stopped VM's definition (only what is given changes).
    Edit {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
        /// Rename it.
        #[arg(long)]
        rename: Option<String>,
    },
    Start {
        name: String,
        /// Open its console once started.
        #[arg(long)]
        console: bool,
    },
    /// Ask the guest to shut down (Ctrl-Alt-Del); stop it hard after --timeout.
    Shutdown {
        name: String,
        /// Seconds the guest has (the agent's default: 60).
        #[arg(long)]
        timeout: Option<u64>,
        /// Return once the request is made, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Reset the VM (its VMM rebuilds it in place).
    Reboot { name: String },
    /// Stop the VM now, as pulling the plug would (disks are flushed).
    Destroy { name: String },
    /// Remove a stopped VM's definition; its volumes stay unless --delete-volumes.
    Undefine {
        name: String,
        #[arg(long)]
        delete_volumes: bool,
    },
    /// The serial console; Ctrl-] detaches.
    Console { name: String },
    /// Move the running VM to another node of the cluster while it runs.
    Migrate {
        name: String,
        /// The destination node's name (or id).
        #[arg(required_unless_present = "cancel")]
        node: Option<String>,
        /// shared: every node sees the disks; copy: they go along.
        #[arg(long, default_value = "shared", value_parser = ["shared", "copy"])]
        disks: String,
        /// The pause the guest may see at the switch-over (the agent's default: 300).
        #[arg(long)]
        max_downtime_ms: Option<u64>,
        /// A cap on the transfer rate, Mbit/s (default: none).
        #[arg(long)]
        bandwidth_mbps: Option<u64>,
        /// Cancel the VM's migration under way: it runs on where it was.
        #[arg(long, conflicts_with = "node")]
        cancel: bool,
    },
    /// The console's last output.
    Log {
        name: String,
        /// How much, in bytes (at most 512 KiB).
        #[arg(long, default_value = "262144")]
        bytes: u64,
    },
}

/// What `define` and `edit` set.
#[derive(Args, Default)]
pub struct SpecArgs {
    /// The whole definition as JSON (the API's VmSpec); other options override it.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Kernel: an absolute path on the node, or POOL/VOLUME.
    #[arg(long)]
    kernel: Option<String>,
    #[arg(long)]
    initrd: Option<String>,
    /// Kernel command line (with --disk-boot: added to the disk's).
    #[arg(long)]
    cmdline: Option<String>,
    /// Boot from the VM's disk number N (0: the first), as pygrub does.
    #[arg(long, value_name = "N")]
    disk_boot: Option<usize>,
    #[arg(long)]
    vcpus: Option<u8>,
    /// Memory: 512M, 2G, or MiB.
    #[arg(long, value_parser = parse_mib)]
    memory: Option<u64>,
    /// A disk: POOL/VOLUME, with `:ro` for read-only; repeat in guest order.
    #[arg(long = "disk", value_name = "POOL/VOLUME[:ro]")]
    disks: Vec<String>,
    /// A NIC: tap=NAME or macvtap=NAME, then ,mac=..,mtu=..; repeat.
    #[arg(long = "nic")]
    nics: Vec<String>,
    #[arg(long)]
    autostart: Option<bool>,
    /// Restart it on another node when its node dies (cluster HA).
    #[arg(long)]
    ha: Option<bool>,
    /// HA recovery order: higher restarts first on a survivor (default 0).
    #[arg(long, allow_hyphen_values = true)]
    ha_priority: Option<i32>,
    #[arg(long, value_parser = ["stay", "restart"])]
    on_crash: Option<String>,
    #[arg(long, value_parser = ["restart", "stop"])]
    on_reboot: Option<String>,
    /// A tag KEY=VALUE (e.g. tenant=acme); repeat.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

/// `512M`, `2G`, `1024` (MiB) → MiB.
fn parse_mib(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('M' | 'm') => (&s[..s.len() - 1], 1),
        Some('G' | 'g') => (&s[..s.len() - 1], 1024),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("'{s}': use 512M, 2G or a number of MiB"))
}

pub fn run(args: VmArgs) -> Result<(), String> {
    let base = base_url(&args.host);
    let json = args.json;
    match args.command {
        VmCommand::List { all: false } => list(&base, json),
        VmCommand::List { all: true } => crate::cluster_nodes::all_vms(&base, json),
        VmCommand::Show { name } => show(&base, &name, json),
        VmCommand::Define {
            name,
            spec,
            start,
            console,
        } => define(&base, &name, spec, start || console, console, json),
        VmCommand::Edit { name, spec, rename } => edit(&base, &name, spec, rename, json),
        VmCommand::Start { name, console } => {
            let info = action(&base, &name, "start")?;
            report(&info, json, "started")?;
            match console {
                true => crate::vm_console::attach(&base, &name),
                false => Ok(()),
            }
        }
        VmCommand::Shutdown {
            name,
            timeout,
            no_wait,
        } => crate::vm_console::shutdown(&base, &name, timeout, no_wait, json),
        VmCommand::Reboot { name } => report(&action(&base, &name, "reboot")?, json, "rebooted"),
        VmCommand::Destroy { name } => report(&action(&base, &name, "destroy")?, json, "destroyed"),
        VmCommand::Undefine {
            name,
            delete_volumes,
        } => {
            let q = if delete_volumes {
                "?volumes=delete"
            } else {
                ""
            };
            request(&base, "DELETE", &format!("/vms/{name}{q}"), None, TIMEOUT)?;
            print_out(&format!("VM {name} undefined\n"))
        }
        VmCommand::Console { name } => crate::vm_console::attach(&base, &name),
        VmCommand::Migrate {
            name,
            node: Some(node),
            disks,
            max_downtime_ms,
            bandwidth_mbps,
            cancel: false,
        } => {
            let opts = crate::vm_migrate::Options {
                disks,
                max_downtime_ms,
                bandwidth_mbps,
            };
            crate::vm_migrate::migrate(&args.host, &name, &node, &opts, json)
        }
        VmCommand::Migrate { name, .. } => crate::vm_migrate::cancel(&args.host, &name, json),
        VmCommand::Log { name, bytes } => {
            let body = request(
                &base,
                "GET",
                &format!("/vms/{name}/log?bytes={bytes}"),
                None,
                TIMEOUT,
            )?;
            print_out(&body)
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("unexpected answer from the agent: {e}"))
}

fn get(base: &str, name: &str) -> Result<VmInfo, String> {
    parse(&request(
        base,
        "GET",
        &format!("/vms/{name}"),
        None,
        TIMEOUT,
    )?)
}

fn action(base: &str, name: &str, what: &str) -> Result<VmInfo, String> {
    parse(&request(
        base,
        "POST",
        &format!("/vms/{name}/{what}"),
        None,
        TIMEOUT,
    )?)
}

fn report(info: &VmInfo, json: bool, done: &str) -> Result<(), String> {
    match json {
        true => print_json(info),
        false => print_out(&format!(
            "VM {} {done} ({})\n",
            info.spec.name,
            info.state.as_str()
        )),
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    print_out(&(serde_json::to_string_pretty(v).map_err(|e| e.to_string())? + "\n"))
}

fn list(base: &str, json: bool) -> Result<(), String> {
    let vms: Vec<VmInfo> = parse(&request(base, "GET", "/vms", None, TIMEOUT)?)?;
    match json {
        true => print_json(&vms),
        false => print_out(&crate::format::vm_table(&vms)),
    }
}

fn show(base: &str, name: &str, json: bool) -> Result<(), String> {
    let info = get(base, name)?;
    match json {
        true => print_json(&info),
        false => print_out(&crate::format::vm_details(&info)),
    }
}

fn define(
    base: &str,
    name: &str,
    args: SpecArgs,
    start: bool,
    console: bool,
    json: bool,
) -> Result<(), String> {
    let mut spec = match &args.file {
        Some(f) => read_spec(f)?,
        None => VmSpec {
            name: name.to_string(),
            vcpus: 1,
            memory_mib: 512,
            boot: Boot::Disk {
                disk: 0,
                cmdline: None,
            },
            disks: Vec::new(),
            nics: Vec::new(),
            autostart: false,
            ha: false,
            ha_priority: 0,
            on_crash: OnCrash::Stay,
            on_reboot: OnReboot::Restart,
            tags: BTreeMap::new(),
            limits: Default::default(),
        },
    };
    spec.name = name.to_string();
    if args.file.is_none() && args.kernel.is_none() && args.disk_boot.is_none() {
        return Err("say how the VM boots: --kernel PATH, --disk-boot N or --file SPEC".into());
    }
    apply(&mut spec, args)?;
    let body = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let info: VmInfo = parse(&request(base, "POST", "/vms", Some(&body), TIMEOUT)?)?;
    if !start {
        return report(&info, json, "defined");
    }
    let info = action(base, name, "start")?;
    report(&info, json, "defined and started")?;
    match console {
        true => crate::vm_console::attach(base, name),
        false => Ok(()),
    }
}

fn edit(
    base: &str,
    name: &str,
    args: SpecArgs,
    rename: Option<String>,
    json: bool,
) -> Result<(), String> {
    let mut spec = match &args.file {
        Some(f) => read_spec(f)?,
        None => get(base, name)?.spec,
    };
    spec.name = rename.unwrap_or_else(|| name.to_string());
    apply(&mut spec, args)?;
    let body = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let info: VmInfo = parse(&request(
        base,
        "PUT",
        &format!("/vms/{name}"),
        Some(&body),
        TIMEOUT,
    )?)?;
    report(&info, json, "changed")
}

fn read_spec(path: &PathBuf) -> Result<VmSpec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Applies the options given on the command line to `spec`.
fn apply(spec: &mut VmSpec, a: SpecArgs) -> Result<(), String> {
    if let Some(kernel) = a.kernel {
        spec.boot = Boot::Kernel {
            kernel,
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone(),
        };
    } else if let Some(disk) = a.disk_boot {
        spec.boot = Boot::Disk {
            disk,
            cmdline: a.cmdline.clone(),
        };
    } else {
        match &mut spec.boot {
            Boot::Kernel {
                initrd, cmdline, ..
            } => {
                *initrd = a.initrd.or(initrd.take());
                *cmdline = a.cmdline.or(cmdline.take());
            }
            Boot::Disk { cmdline, .. } => *cmdline = a.cmdline.or(cmdline.take()),
        }
    }
    spec.vcpus = a.vcpus.unwrap_or(spec.vcpus);
    spec.memory_mib = a.memory.unwrap_or(spec.memory_mib);
    if !a.disks.is_empty() {
        spec.disks = a.disks.iter().map(|d| disk(d)).collect();
    }
    if !a.nics.is_empty() {
        spec.nics = a.nics.iter().map(|n| nic(n)).collect::<Result<_, _>>()?;
    }
    spec.autostart = a.autostart.unwrap_or(spec.autostart);
    spec.ha = a.ha.unwrap_or(spec.ha);
    spec.ha_priority = a.ha_priority.unwrap_or(spec.ha_priority);
    if let Some(c) = a.on_crash {
        spec.on_crash = if c == "restart" {
            OnCrash::Restart
        } else {
            OnCrash::Stay
        };
    }
    if let Some(r) = a.on_reboot {
        spec.on_reboot = if r == "stop" {
            OnReboot::Stop
        } else {
            OnReboot::Restart
        };
    }
    for t in a.tags {
        let (k, v) = t
            .split_once('=')
            .ok_or(format!("--tag {t}: use KEY=VALUE"))?;
        spec.tags.insert(k.into(), v.into());
    }
    Ok(())
}

fn disk(s: &str) -> DiskSpec {
    match s.strip_suffix(":ro") {
        Some(v) => DiskSpec {
            volume: v.into(),
            readonly: true,
        },
        None => DiskSpec {
            volume: s.into(),
            readonly: false,
        },
    }
}

/// `network=NET[,mac=..][,mtu=..]`, `tap=NAME[...]` or `macvtap=NAME[...]`.
fn nic(s: &str) -> Result<NicSpec, String> {
    let mut n = NicSpec {
        tap: None,
        macvtap: None,
        mac: None,
        mtu: None,
        network: None,
    };
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("tap", v)) => n.tap = Some(v.into()),
            Some(("macvtap", v)) => n.macvtap = Some(v.into()),
            Some(("network", v)) => n.network = Some(v.into()),
            Some(("mac", v)) => n.mac = Some(v.into()),
            Some(("mtu", v)) => n.mtu = Some(v.parse().map_err(|_| format!("--nic {s}: bad mtu"))?),
            _ => {
                return Err(format!(
                    "--nic {s}: use network=NET, tap=NAME or macvtap=NAME, then ,mac=..,mtu=.."
                ))
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(parse_mib("512M"), Ok(512));
        assert_eq!(parse_mib("2G"), Ok(2048));
        assert_eq!(parse_mib("64"), Ok(64));
        assert!(parse_mib("lots").is_err());
        assert!(disk("local/a.qcow2:ro").readonly);
        let n = nic("tap=vt0,mac=02:00:00:00:00:01,mtu=9000").unwrap();
        assert_eq!((n.tap.as_deref(), n.mtu), (Some("vt0"), Some(9000)));
        assert!(nic("bridge=vmbr0").is_err());
    }

    #[test]
    fn ha_priority_reaches_the_spec_and_keeps_its_sign() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            spec: SpecArgs,
        }
        let args = [
            "vm",
            "--kernel",
            "/k",
            "--ha",
            "true",
            "--ha-priority",
            "-5",
        ];
        let cli = Cli::try_parse_from(args).unwrap();
        let mut spec: VmSpec =
            serde_json::from_str(r#"{"name": "x", "boot": {"kind": "kernel", "kernel": "/k"}}"#)
                .unwrap();
        apply(&mut spec, cli.spec).unwrap();
        assert_eq!((spec.ha, spec.ha_priority), (true, -5));
        // The default is left out of the JSON; a set one is written.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ha_priority"], -5);
        spec.ha_priority = 0;
        assert!(serde_json::to_value(&spec)
            .unwrap()
            .get("ha_priority")
            .is_none());
    }
}
