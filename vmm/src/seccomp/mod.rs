//! seccomp-bpf: one allow-list per kind of vireo-vmm thread (`rules.rs`),
//! each installed by the thread itself as it starts, before it touches
//! anything a guest controls. See docs/security.md.
//!
//! Filters are per thread and inherited: a thread spawned by a filtered
//! thread runs under its parent's filter *and* its own. So every thread
//! that spawns after installing its filter allows what its children need
//! (`rules.rs` builds the main thread's list as its own plus its children's),
//! and the device workers, which a vCPU would otherwise spawn when the
//! driver sets DRIVER_OK, are spawned by `spawner.rs` instead, so the vCPU
//! filter stays free of disk and tap I/O.

mod ioctls;
mod names;
mod rules;
pub mod seat;
mod sigsys;
pub mod spawner;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

pub use rules::ThreadKind;

/// `--seccomp`: what a system call outside a thread's list does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No filters at all.
    Off,
    /// Allowed, and logged by the kernel (audit / dmesg): for finding what a
    /// new code path needs without killing VMs.
    Log,
    /// SIGSYS: the VMM names the call and the thread and exits with
    /// [`EXIT_STATUS`].
    #[default]
    Kill,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Mode::Off),
            "log" => Ok(Mode::Log),
            "kill" => Ok(Mode::Kill),
            _ => Err(format!("'{s}': expected off, log or kill")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Log => "log",
            Mode::Kill => "kill",
        })
    }
}

/// The exit status of a VMM killed by its filter: 128 + SIGSYS, what a
/// shell reports for a process the signal killed.
pub const EXIT_STATUS: i32 = 128 + libc::SIGSYS;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the {0} seccomp filter: {1}")]
    Build(&'static str, seccompiler::BackendError),
    #[error("cannot install the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

/// Every thread kind's compiled filter, built once at start-up (so a bad
/// rule fails before any guest runs, and no thread compiles anything).
static FILTERS: OnceLock<HashMap<ThreadKind, BpfProgram>> = OnceLock::new();

/// Compiles the filters for `mode` and installs the SIGSYS handler. Until
/// this runs (unit tests, `--seccomp off`), [`install`] does nothing.
pub fn init(mode: Mode) -> Result<(), SeccompError> {
    let mismatch = match mode {
        Mode::Off => return Ok(()),
        Mode::Log => SeccompAction::Log,
        Mode::Kill => SeccompAction::Trap,
    };
    let mut filters = HashMap::new();
    for kind in ThreadKind::ALL {
        let filter = SeccompFilter::new(
            rules::rules(kind),
            mismatch.clone(),
            SeccompAction::Allow,
            std::env::consts::ARCH
                .try_into()
                .map_err(|e| SeccompError::Build(kind.name(), e))?,
        )
        .map_err(|e| SeccompError::Build(kind.name(), e))?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e| SeccompError::Build(kind.name(), e))?;
        filters.insert(kind, program);
    }
    if mode == Mode::Kill {
        sigsys::install_handler().map_err(SeccompError::Handler)?;
    }
    limit_malloc_arenas();
    let _ = FILTERS.set(filters);
    Ok(())
}

/// glibc's malloc counts the CPUs (sched_getaffinity, then
/// /sys/devices/system/cpu/online) the first time a thread needs an arena
/// of its own; with a fixed arena limit (the same 8 per CPU it would
/// compute) it never asks, so no filter has to allow opening a file.
#[cfg(target_env = "gnu")]
fn limit_malloc_arenas() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cpus * 8).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets a tunable; called before threads allocate.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

#[cfg(not(target_env = "gnu"))]
fn limit_malloc_arenas() {}

/// Installs `kind`'s filter on the calling thread. A thread that cannot be
/// confined must not go on: the process exits with a message.
pub fn install(kind: ThreadKind) {
    let Some(program) = FILTERS.get().and_then(|f| f.get(&kind)) else {
        return;
    };
    sigsys::remember_thread_name();
    if let Err(e) = seccompiler::apply_filter(program) {
        eprintln!(
            "vireo-vmm: cannot install the {} seccomp filter: {e}",
            kind.name()
        );
        std::process::exit(1);
    }
    test_hook(kind);
}

/// With the `seccomp-test-hook` feature (tests only), the thread kind named
/// by `VIREO_SECCOMP_TEST_SYSCALL` makes a system call no filter allows
/// right after confining itself, so a test can watch the VMM die of it.
#[cfg(feature = "seccomp-test-hook")]
fn test_hook(kind: ThreadKind) {
    if std::env::var("VIREO_SECCOMP_TEST_SYSCALL").as_deref() == Ok(kind.name()) {
        // SAFETY: personality(0xffffffff) only queries the persona.
        unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
    }
}

#[cfg(not(feature = "seccomp-test-hook"))]
fn test_hook(_: ThreadKind) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("kill".parse::<Mode>(), Ok(Mode::Kill));
        assert_eq!("log".parse::<Mode>(), Ok(Mode::Log));
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert!("on".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Kill);
    }

    #[test]
    fn every_filter_compiles() {
        for kind in ThreadKind::ALL {
            let filter = SeccompFilter::new(
                rules::rules(kind),
                SeccompAction::Trap,
                SeccompAction::Allow,
                std::env::consts::ARCH.try_into().unwrap(),
            )
            .unwrap();
            let program: BpfProgram = filter.try_into().unwrap();
            assert!(!program.is_empty(), "{}", kind.name());
        }
    }

    #[test]
    fn syscall_names() {
        assert_eq!(names::name(libc::SYS_ioctl), Some("ioctl"));
        assert_eq!(names::name(libc::SYS_personality), Some("personality"));
        assert_eq!(names::name(100_000), None);
    }
}
