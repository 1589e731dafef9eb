//! The VM API's types, shared by the agent and the `vireo` CLI: what a
//! client sends to define or edit a VM (`VmSpec`) and what the agent
//! answers (`VmInfo`). Validation lives with the server (`vms::def`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A VM's definition as a client writes it (POST /vms, PUT /vms/{name}).
/// Unknown fields are refused, so a typo is an error, not a silent default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Unique on the node: letters, digits, `.`, `_`, `-`, at most 64 bytes.
    pub name: String,
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    /// Guest memory in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    pub boot: Boot,
    /// virtio-blk disks, in the order the guest finds them (vda, vdb, ...).
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// Start the VM when the node boots.
    #[serde(default)]
    pub autostart: bool,
    /// In a cluster: restart the VM on a surviving quorate node once its
    /// node is fenced (docs/cluster.md). Its disks must be on storage every
    /// node sees.
    #[serde(default)]
    pub ha: bool,
    /// HA recovery order: a survivor that takes over a fenced node's HA VMs
    /// starts them highest priority first (equal ones by name). Default 0;
    /// negative values go after the default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ha_priority: i32,
    /// What to do when the VMM ends without being asked to.
    #[serde(default)]
    pub on_crash: OnCrash,
    /// What to do when the guest resets itself (`reboot` inside it).
    #[serde(default)]
    pub on_reboot: OnReboot,
    /// Free-form labels, e.g. `{"tenant": "acme"}`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// What the VM's cgroup allows when the agent runs VMMs jailed
    /// (docs/security.md#jailed-vms); ignored unjailed.
    #[serde(default, skip_serializing_if = "VmLimits::is_default")]
    pub limits: VmLimits,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A jailed VM's cgroup limits. Unset fields take the defaults below.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmLimits {
    /// CPU time in percent of one host CPU (cgroup `cpu.max`); default
    /// 100 per vCPU plus 50 for the VMM's device threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<u32>,
    /// The VMM's memory ceiling in MiB (`memory.max`: guest RAM, device
    /// buffers, the VMM itself); default guest memory + 128. The VMM is
    /// killed when it would pass it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max_mib: Option<u64>,
    /// Disk throughput caps (`io.max`) on the block device under each of
    /// the VM's disks, bytes or operations per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<u64>,
}

impl VmLimits {
    pub fn is_default(&self) -> bool {
        *self == VmLimits::default()
    }
}

fn default_vcpus() -> u8 {
    1
}

fn default_memory_mib() -> u64 {
    512
}

/// How the VM boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Boot {
    /// A kernel (and initrd) given directly: an absolute path on the node,
    /// or a volume `POOL/VOLUME`.
    Kernel {
        kernel: String,
        #[serde(default)]
        initrd: Option<String>,
        #[serde(default)]
        cmdline: Option<String>,
    },
    /// The kernel, initrd and root found on one of the VM's own disks
    /// (boot loader spec entries, or /boot/vmlinuz and /boot/initrd.img),
    /// as Xen's pygrub does. `cmdline` is appended to what the disk says.
    Disk {
        /// Index into `disks` (default 0, the first).
        #[serde(default)]
        disk: usize,
        #[serde(default)]
        cmdline: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// `POOL/VOLUME`.
    pub volume: String,
    #[serde(default)]
    pub readonly: bool,
}

/// A virtio-net device on a tap (created by the VMM if missing) or an
/// existing macvtap link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    #[serde(default)]
    pub tap: Option<String>,
    #[serde(default)]
    pub macvtap: Option<String>,
    /// Chosen at define time when not given, then kept.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// A network of the node's (`vireo net`): the agent makes the tap (or
    /// macvtap) when the VM starts and removes it when the VM stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCrash {
    /// Reported (state `crashed`), left stopped.
    #[default]
    Stay,
    /// Started again (at most 3 times in 10 minutes, then left crashed).
    Restart,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnReboot {
    /// A guest reset starts the VM again, as a real machine would.
    #[default]
    Restart,
    /// A guest reset stops the VM.
    Stop,
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Paused,
    /// A graceful shutdown is under way.
    ShuttingDown,
    /// The last run ended without being asked to (see `last_exit`).
    Crashed,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::ShuttingDown => "shutting_down",
            VmState::Crashed => "crashed",
        }
    }
}

/// How a VMM run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Seconds since the epoch when the agent saw it end.
    pub at: u64,
    /// The VMM's exit code; None when a signal killed it, or it was not
    /// this agent's child and left no exit file.
    pub exit_code: Option<i32>,
    /// `guest_reset`, `guest_power_off`, `api_shutdown`, `signalled`,
    /// `failed`, `not_started`, or `killed` (no exit record: a signal).
    pub outcome: String,
    /// Whether the agent asked for it (shutdown, destroy).
    pub requested: bool,
    /// What went wrong, from the VMM's exit record or its last log lines.
    pub message: Option<String>,
}

/// GET /vms/{name}: the definition and the runtime state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    pub uuid: String,
    #[serde(flatten)]
    pub spec: VmSpec,
    pub state: VmState,
    /// The VMM's process id while it runs.
    pub pid: Option<i32>,
    /// Seconds since the epoch the current run started.
    pub started_at: Option<u64>,
    pub last_exit: Option<ExitInfo>,
    /// Guest resets answered with a restart in the current run of the agent.
    pub restarts: u32,
}

/// What `POST /vms/{name}/shutdown` and `destroy` answer: a task to follow
/// at GET /tasks/{id}.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub task: String,
}
