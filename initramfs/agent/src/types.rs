//! What the API returns, shared with the `vireo` CLI.

use serde::{Deserialize, Serialize};

/// GET /node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The host name (from `vireo.hostname=` on the appliance).
    pub name: String,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Online CPUs.
    pub cpus: u32,
    pub memory_bytes: u64,
    pub uptime_s: f64,
    pub load: Load,
    pub kvm: Kvm,
}

/// The load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Load {
    #[serde(rename = "1m")]
    pub m1: f64,
    #[serde(rename = "5m")]
    pub m5: f64,
    #[serde(rename = "15m")]
    pub m15: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kvm {
    /// /dev/kvm exists.
    pub available: bool,
    pub kind: KvmKind,
}

/// Which KVM implementation backs /dev/kvm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmKind {
    KvmIntel,
    KvmAmd,
    /// PVM, the software KVM (module kvm_pvm): no hardware virtualization.
    Pvm,
    /// arm64's KVM (built into the kernel; needs boot at EL2).
    KvmArm64,
    None,
}

impl KvmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KvmKind::KvmIntel => "kvm_intel",
            KvmKind::KvmAmd => "kvm_amd",
            KvmKind::Pvm => "pvm",
            KvmKind::KvmArm64 => "kvm_arm64",
            KvmKind::None => "none",
        }
    }
}

/// GET /health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
}

/// POST /selftest/vmm[?guest=linux]: vireo-vmm booted a guest on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmSelftest {
    /// The VMM exited 0 and the guest said it booted (`PROBE done ok`, or the
    /// Linux guest's `VIREO-GUEST-INIT cpus=2 …`).
    pub ok: bool,
    /// The VMM's command line.
    pub command: Vec<String>,
    /// Its exit status; None when a signal or the time limit ended it.
    pub exit_status: Option<i32>,
    /// The guest's serial console (the VMM's stdout).
    pub serial: String,
    /// The VMM's own messages.
    pub stderr: String,
    pub duration_ms: u64,
    /// The time limit ended the run.
    pub timed_out: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    Done,
    Failed,
    Cancelled,
}

/// What `GET /tasks/{id}` returns (long operations: copies, backups, ...).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: String,
    /// What kind of work: `volume-copy`, `backup`, ...
    pub kind: String,
    /// What it works on: a VM or volume name.
    pub target: String,
    pub state: TaskState,
    /// Units done and in all (`unit` says what they are: bytes, steps).
    pub done: u64,
    pub total: u64,
    pub unit: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub finished: Option<u64>,
    pub error: Option<String>,
    /// What the work produced, for the client to read (a backup's name).
    pub result: Option<serde_json::Value>,
}
