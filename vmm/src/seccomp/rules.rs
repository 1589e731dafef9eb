//! The allow-lists, one per thread kind. Each list names what that thread
//! does (found with `strace -f` over the probe, virtio, snapshot and
//! migration tests, glibc and musl builds) plus what its children need
//! while they start, since a child runs under its parent's filter until it
//! installs its own (see mod.rs). ioctls are allowed by request number
//! only, and only the ones each thread issues (`ioctls.rs`).

use std::collections::BTreeMap;

use libc::*;
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::ioctls;

/// The kinds of vireo-vmm thread, each with a filter of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThreadKind {
    /// The event loop: API requests, console, snapshot, reboot, teardown.
    Main,
    /// `vireo-api`: HTTP on the API socket.
    Api,
    /// `vireo-vcpu-N`: KVM_RUN and exit dispatch.
    Vcpu,
    /// `vireo-blk`: virtio-blk requests on raw and qcow2 images.
    Block,
    /// `vireo-net`: virtio-net frames to and from the tap.
    Net,
    /// `vireo-console`: queued console output to its sink.
    Console,
    /// `vireo-migrate`: the migration source.
    Migrate,
    /// `vireo-throttle`: auto-converge kicks of the vCPUs.
    Throttle,
    /// `vireo-announce`: RARP frames after a migration; `vireo-forwarded`:
    /// the frames the source forwards then.
    Announce,
    /// `vireo-spawn`: starts device workers for the vCPUs.
    Spawner,
    /// `vireo-commit`: copies a disk's overlay back into its base.
    Commit,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 11] = [
        ThreadKind::Main,
        ThreadKind::Api,
        ThreadKind::Vcpu,
        ThreadKind::Block,
        ThreadKind::Net,
        ThreadKind::Console,
        ThreadKind::Migrate,
        ThreadKind::Throttle,
        ThreadKind::Announce,
        ThreadKind::Spawner,
        ThreadKind::Commit,
    ];

    /// The name tests and messages use (`VIREO_SECCOMP_TEST_SYSCALL=vcpu`).
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Api => "api",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Block => "blk",
            ThreadKind::Net => "net",
            ThreadKind::Console => "console",
            ThreadKind::Migrate => "migrate",
            ThreadKind::Throttle => "throttle",
            ThreadKind::Announce => "announce",
            ThreadKind::Spawner => "spawn",
            ThreadKind::Commit => "commit",
        }
    }
}

/// A filter under construction: per system call, either any arguments
/// (`None`) or one of the listed argument rules.
#[derive(Default)]
struct List(BTreeMap<i64, Option<Vec<SeccompRule>>>);

impl List {
    fn allow(&mut self, calls: &[i64]) -> &mut Self {
        for &nr in calls {
            self.0.insert(nr, None);
        }
        self
    }

    /// Allows `nr` when argument `arg` (as a 32-bit value) is one of `values`.
    fn allow_arg(&mut self, nr: i64, arg: u8, values: &[u64]) -> &mut Self {
        let rules = values.iter().map(|&v| {
            let cond = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)
                .expect("argument index below 6");
            SeccompRule::new(vec![cond]).expect("one condition")
        });
        // None: already allowed with any arguments.
        if let Some(list) = self.0.entry(nr).or_insert_with(|| Some(Vec::new())) {
            list.extend(rules);
        }
        self
    }

    /// Allows `nr` only when the bits `mask` of argument `arg` are clear
    /// (mmap/mprotect without PROT_EXEC).
    fn allow_masked_clear(&mut self, nr: i64, arg: u8, mask: u64) -> &mut Self {
        let cond = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(mask),
            0,
        )
        .expect("argument index below 6");
        let rule = SeccompRule::new(vec![cond]).expect("one condition");
        if let Some(list) = self.0.entry(nr).or_insert_with(|| Some(Vec::new())) {
            list.push(rule);
        }
        self
    }

    fn ioctls(&mut self, requests: &[u64]) -> &mut Self {
        self.allow_arg(SYS_ioctl, 1, requests)
    }

    /// Adds everything `other` allows (a parent's list covers its children).
    fn merge(&mut self, other: List) -> &mut Self {
        for (nr, rules) in other.0 {
            match (self.0.get_mut(&nr), rules) {
                (Some(None), _) => {}
                (Some(mine @ Some(_)), None) => *mine = None,
                (Some(Some(mine)), Some(theirs)) => mine.extend(theirs),
                (None, rules) => {
                    self.0.insert(nr, rules);
                }
            }
        }
        self
    }

    fn into_rules(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.0
            .into_iter()
            .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
            .collect()
    }
}

/// The rules of `kind`'s filter.
pub fn rules(kind: ThreadKind) -> BTreeMap<i64, Vec<SeccompRule>> {
    list(kind).into_rules()
}

fn list(kind: ThreadKind) -> List {
    let mut l = common();
    match kind {
        ThreadKind::Main => {
            main(&mut l);
            let children = [
                ThreadKind::Vcpu,
                ThreadKind::Migrate,
                ThreadKind::Announce,
                ThreadKind::Commit,
            ];
            for child in children {
                l.merge(list(child));
            }
        }
        ThreadKind::Api => api(no_exec(&mut l)),
        ThreadKind::Vcpu => vcpu(no_exec(&mut l)),
        ThreadKind::Block => block(no_exec(&mut l)),
        ThreadKind::Net => net(no_exec(&mut l)),
        ThreadKind::Console => console(no_exec(&mut l)),
        ThreadKind::Migrate => {
            migrate(&mut l);
            l.merge(list(ThreadKind::Throttle));
        }
        ThreadKind::Throttle => throttle(no_exec(&mut l)),
        ThreadKind::Announce => announce(no_exec(&mut l)),
        ThreadKind::Commit => {
            block(no_exec(&mut l));
            commit(&mut l);
        }
        ThreadKind::Spawner => {
            spawning(no_exec(&mut l));
            l.merge(list(ThreadKind::Block))
                .merge(list(ThreadKind::Net));
        }
    }
    l
}

/// What every thread does: memory, futexes, signals (SIGTERM, SIGINT and
/// the vCPU kick land on any thread), time, exiting, and stderr. write and
/// exit_group are also what the SIGSYS handler needs.
fn common() -> List {
    let mut l = List::default();
    l.allow(&[
        SYS_futex,
        SYS_write,
        SYS_exit,
        SYS_exit_group,
        SYS_rt_sigreturn,
        SYS_rt_sigprocmask,
        SYS_sigaltstack,
        SYS_munmap,
        SYS_madvise,
        SYS_mremap,
        SYS_brk,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_gettid,
        SYS_getpid,
        SYS_getrandom,
        SYS_close,
    ]);
    // Debug builds of std check a descriptor is open before closing it.
    l.allow_arg(SYS_fcntl, 1, &[F_GETFD as u64]);
    #[cfg(target_env = "gnu")]
    l.allow(&[SYS_rseq]);
    l
}

/// The allocator's mappings, without PROT_EXEC: threads that never load
/// code may not make any memory executable.
fn no_exec(l: &mut List) -> &mut List {
    l.allow_masked_clear(SYS_mmap, 2, PROT_EXEC as u64)
        .allow_masked_clear(SYS_mprotect, 2, PROT_EXEC as u64)
}

/// Starting a thread (the child's first calls run under this filter).
fn spawning(l: &mut List) -> &mut List {
    l.allow(&[SYS_clone, SYS_set_robust_list, SYS_seccomp])
        .allow_arg(
            SYS_prctl,
            0,
            &[PR_SET_NAME as u64, PR_SET_NO_NEW_PRIVS as u64],
        );
    #[cfg(target_env = "gnu")]
    l.allow(&[SYS_clone3]);
    #[cfg(target_env = "musl")]
    l.allow(&[SYS_set_tid_address]);
    l
}

fn main(l: &mut List) {
    spawning(l);
    l.allow(&[SYS_mmap, SYS_mprotect]);
    // The event loop, its eventfds, console clients and the terminal.
    l.allow(&[
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_eventfd2,
        SYS_read,
        SYS_readv,
        SYS_writev,
        SYS_accept4,
        SYS_recvfrom,
        SYS_sendto,
        SYS_fcntl,
        SYS_ppoll,
        SYS_tgkill,
        SYS_tkill,
        SYS_rt_sigaction,
    ]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_epoll_wait, SYS_poll]);
    // Reboot builds a VM again (kernel, initrd, /dev/kvm, RAM); snapshots
    // write a directory; every stop flushes the disks; sockets are removed.
    l.allow(&[
        SYS_openat,
        SYS_lseek,
        SYS_pread64,
        SYS_pwrite64,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_sysinfo,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_mkdirat,
        SYS_getdents64,
        SYS_renameat,
        SYS_unlinkat,
        SYS_flock,
        SYS_fcntl,
    ]);
    // Disk overlays: the new image's backing name is resolved (realpath).
    l.allow(&[SYS_readlinkat]);
    // musl's fstatat takes SYS_stat / SYS_lstat for paths from the cwd.
    #[cfg(target_arch = "x86_64")]
    l.allow(&[
        SYS_open,
        SYS_stat,
        SYS_lstat,
        SYS_mkdir,
        SYS_rename,
        SYS_unlink,
        SYS_readlink,
    ]);
    l.ioctls(&ioctls::main());
}

fn api(l: &mut List) {
    l.allow(&[SYS_accept4, SYS_read, SYS_recvfrom, SYS_sendto, SYS_ppoll])
        .allow_arg(SYS_setsockopt, 1, &[SOL_SOCKET as u64])
        .ioctls(&[ioctls::FIONBIO]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}

fn vcpu(l: &mut List) {
    // The console: the serial device's non-blocking write to its sink.
    l.allow(&[SYS_sendto, SYS_ppoll, SYS_read])
        .ioctls(&ioctls::vcpu());
    // Activating a device (DRIVER_OK) makes its worker's eventfds.
    l.allow(&[SYS_eventfd2])
        // (musl's F_DUPFD_CLOEXEC sets FD_CLOEXEC again with F_SETFD.)
        .allow_arg(SYS_fcntl, 1, &[F_DUPFD_CLOEXEC as u64, F_SETFD as u64]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}

fn block(l: &mut List) {
    l.allow(&[
        SYS_read,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_pwritev,
        SYS_fdatasync,
        SYS_fsync,
        SYS_fallocate,
        SYS_ftruncate,
        SYS_lseek,
        SYS_fstat,
        SYS_ppoll,
    ]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}

fn net(l: &mut List) {
    l.allow(&[SYS_read, SYS_readv, SYS_writev, SYS_ppoll]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}

fn console(l: &mut List) {
    l.allow(&[SYS_sendto, SYS_writev, SYS_ppoll, SYS_fcntl])
        .allow_arg(SYS_setsockopt, 1, &[SOL_SOCKET as u64]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}

fn migrate(l: &mut List) {
    spawning(l);
    l.allow(&[SYS_mmap, SYS_mprotect]);
    // tcp://, unix:, tls:// channels (names resolved here too).
    l.allow(&[
        SYS_socket,
        SYS_connect,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_getsockname,
        SYS_getpeername,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_shutdown,
        SYS_read,
        SYS_readv,
        SYS_writev,
        SYS_ppoll,
        SYS_fcntl,
    ]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
    // /proc/self/pagemap, the TLS files and copied disks.
    l.allow(&[
        SYS_openat,
        SYS_pread64,
        SYS_preadv,
        SYS_lseek,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
    ]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_open, SYS_stat, SYS_lstat]);
    l.ioctls(&ioctls::migrate());
}

/// A disk's I/O (as `block`), plus removing the overlay file at the end.
fn commit(l: &mut List) {
    l.allow(&[SYS_unlinkat]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_unlink]);
}

fn throttle(l: &mut List) {
    l.allow(&[SYS_tgkill, SYS_tkill]);
}

/// RARP frames (write), and the frames the source forwards: the migration
/// channel read (TCP, Unix, TLS), each NIC's inbox signalled (write).
fn announce(l: &mut List) {
    l.allow(&[SYS_read, SYS_readv, SYS_recvfrom, SYS_recvmsg, SYS_ppoll]);
    #[cfg(target_arch = "x86_64")]
    l.allow(&[SYS_poll]);
}
