//! Running VMs: start (launch, wait for the API, attach the console,
//! resume), watch (the pidfd, then how it ended), stop (graceful through
//! Ctrl-Alt-Del, hard through the VMM's own shutdown or SIGKILL), and
//! re-adoption of VMMs a previous agent started.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::handoff::{wait_started, Handoff};
use super::launch_args::{self, BootPlan};
use super::process::{PidRecord, VmmProcess};
use super::runtime::{self, ExitRecord};
use super::{now, vmm_api, Run, Slot, StopKind, Vms};
use crate::error::ApiError;
use crate::tasks::{TaskCtx, TaskInfo, Tasks};
use crate::vm_types::{ExitInfo, OnCrash, OnReboot, VmInfo, VmSpec, VmState};

/// How long a VMM may take from exec to answering its API.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const API_TIMEOUT: Duration = Duration::from_secs(5);
/// A hard stop: the VMM's own shutdown first, SIGKILL after this.
const HARD_STOP_GRACE: Duration = Duration::from_secs(10);
/// `on_crash: restart` gives up after this many restarts in the window.
const CRASH_RESTARTS: usize = 3;
const CRASH_WINDOW_S: u64 = 600;

static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

/// What to do once a run has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    Stop,
    Crash,
    Restart,
}

type BoxedStart<'a> = Pin<Box<dyn Future<Output = Result<VmInfo, ApiError>> + Send + 'a>>;

impl Vms {
    /// POST /vms/{name}/start.
    pub async fn start(&self, slot: &Arc<Slot>) -> Result<VmInfo, ApiError> {
        let _op = slot.op.lock().await;
        self.start_locked(slot).await
    }

    /// Boxed: a restart from `on_exit` starts a run whose watcher calls
    /// `on_exit` again, a cycle an unboxed future type cannot hold.
    fn start_locked<'a>(&'a self, slot: &'a Arc<Slot>) -> BoxedStart<'a> {
        Box::pin(async move {
            let (spec, before) = {
                let s = slot.lock();
                if s.removed {
                    return Err(ApiError::not_found("the VM was undefined"));
                }
                if super::host::is_template(&s.def.spec) {
                    return Err(ApiError::conflict(format!(
                        "VM '{}' is a template: clone it, then start the clone",
                        s.def.spec.name
                    )));
                }
                if s.run.is_some() {
                    return Err(ApiError::conflict(format!(
                        "VM '{}' is already running",
                        s.def.spec.name
                    )));
                }
                (s.def.spec.clone(), s.state)
            };
            let running = self.running_memory(&slot.uuid);
            self.inner
                .capacity
                .check(&spec.name, spec.memory_mib, &running)
                .map_err(ApiError::unavailable)?;
            self.check_no_running_writer(slot, &spec)?;
            slot.lock().state = VmState::Starting;
            match self.launch(slot, &spec).await {
                Ok(run) => {
                    let process = run.process.clone();
                    let id = run.id;
                    {
                        let mut s = slot.lock();
                        s.run = Some(run);
                        s.state = VmState::Running;
                    }
                    self.watch(slot.clone(), id, process);
                    Ok(slot.info())
                }
                Err(e) => {
                    slot.lock().state = before;
                    Err(e)
                }
            }
        })
    }

    /// A running VM that writes one of these volumes (or reads one this VM
    /// would write) makes the start a conflict, before any VMM runs.
    fn check_no_running_writer(&self, slot: &Slot, spec: &VmSpec) -> Result<(), ApiError> {
        for other in self.all() {
            if other.uuid == slot.uuid || !other.is_running() {
                continue;
            }
            let theirs = super::def::volumes(&other.lock().def.spec);
            for (v, writes) in super::def::volumes(spec) {
                if theirs.iter().any(|(o, ow)| *o == v && (writes || *ow)) {
                    return Err(ApiError::conflict(format!(
                        "volume '{v}' is in use by running VM '{}'",
                        other.name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The VM's network ports are made first and go again if it fails.
    async fn launch(&self, slot: &Arc<Slot>, spec: &VmSpec) -> Result<Run, ApiError> {
        let plan = self.boot_plan(slot, spec).await?;
        let disks = self.resolve_disks(spec)?;
        super::owner_stamp::check(&disks)?;
        let spec = self.attach_nics(slot, spec).await?;
        let run = self.launch_vmm(slot, &spec, &plan, &disks).await;
        if run.is_err() {
            self.inner.config.networks.detach(&slot.uuid).await;
        }
        run
    }

    /// `spec` with its NICs' ports made on their networks (tap or macvtap
    /// names filled in); they go with `networks.detach`.
    pub(super) async fn attach_nics(&self, slot: &Slot, spec: &VmSpec) -> Result<VmSpec, ApiError> {
        let owner = crate::networks::ports::Owner {
            uuid: &slot.uuid,
            name: &spec.name,
            tenant: spec.tags.get("tenant").map(String::as_str),
        };
        let mut spec = spec.clone();
        spec.nics = self
            .inner
            .config
            .networks
            .attach(&owner, &spec.nics)
            .await?;
        Ok(spec)
    }

    async fn launch_vmm(
        &self,
        slot: &Arc<Slot>,
        spec: &VmSpec,
        plan: &BootPlan,
        disks: &[launch_args::Disk],
    ) -> Result<Run, ApiError> {
        let handoff = Handoff::new().map_err(|e| {
            ApiError::internal(format!("cannot make the console's connection: {e}"))
        })?;
        let args = launch_args::vmm_args(slot, spec, plan, disks, handoff.args())
            .map_err(ApiError::bad_request)?;
        let confine = super::confine::confinement(slot, spec, Some(plan), disks);
        let (vmm_ends, agent_half) = handoff.split();
        let run = self
            .spawn_vmm(slot, &spec.name, args, confine, vmm_ends)
            .await?;
        let started = match agent_half.into_agent_ends() {
            Ok(ours) => {
                slot.console.attach_stream(ours.console);
                wait_started(slot, &run.process, ours.ready, READY_TIMEOUT).await
            }
            Err(e) => Err(ApiError::internal(format!(
                "cannot watch the VMM's start: {e}"
            ))),
        };
        if let Err(e) = started {
            kill_failed(slot, &run.process).await;
            return Err(e);
        }
        self.stamp_disks(slot, disks, run.process.pid);
        Ok(run)
    }

    /// Starts a VMM with `args` in the VM's run directory and records its
    /// pid; it is not watched yet. The spawn runs on a blocking thread:
    /// it waits for the child's exec (a fork and an exec, milliseconds on
    /// a busy host), and on the runtime's two workers fifty parallel
    /// starts would queue behind one another there.
    pub(super) async fn spawn_vmm(
        &self,
        slot: &Slot,
        name: &str,
        args: Vec<String>,
        confine: super::launcher::Confinement,
        inherit: Vec<std::os::fd::OwnedFd>,
    ) -> Result<Run, ApiError> {
        use std::os::fd::AsRawFd;
        let dir = slot.dir.clone();
        let req = super::launcher::LaunchRequest {
            name: name.to_string(),
            vmm: self.inner.config.vmm.clone(),
            args,
            log: dir.join("vmm.log"),
            confine,
            inherit: inherit.iter().map(|fd| fd.as_raw_fd()).collect(),
        };
        let launcher = self.inner.config.launcher.clone();
        // `inherit` moves along: the descriptors stay open until the
        // spawn is done, even if this request is dropped meanwhile.
        let child = tokio::task::spawn_blocking(move || {
            let child = launch_in(&dir, launcher.as_ref(), &req);
            drop(inherit);
            child
        })
        .await
        .map_err(|e| ApiError::internal(format!("the VMM's launch failed: {e}")))??;
        let process = match VmmProcess::from_child(child) {
            Ok(p) => Arc::new(p),
            Err(e) => return Err(ApiError::internal(format!("cannot watch the VMM: {e}"))),
        };
        let started_at = now();
        let record = PidRecord {
            pid: process.pid,
            starttime: process.starttime,
            started_at,
        };
        if let Err(e) = runtime::write_pid(&slot.dir, &record) {
            let _ = process.signal(libc::SIGKILL);
            return Err(ApiError::internal(format!(
                "cannot write the pid file: {e}"
            )));
        }
        Ok(Run {
            id: NEXT_RUN.fetch_add(1, Ordering::Relaxed),
            process,
            started_at,
            stopping: None,
        })
    }

    /// A VMM started paused (an incoming migration): the console is attached before the guest
    /// prints its first byte, then the VM runs. GET /vm answering means the
    /// VMM's event loop runs; the console connection then reaches it (its
    /// listener wakes the loop at once) well before the resume request
    /// has crossed the API thread.
    pub(super) async fn attach_and_resume(
        &self,
        slot: &Slot,
        process: &VmmProcess,
        ready_within: Duration,
    ) -> Result<(), ApiError> {
        wait_ready(slot, process, ready_within).await?;
        slot.console
            .attach(&slot.console_socket())
            .await
            .map_err(|e| ApiError::internal(format!("cannot attach to the console: {e}")))?;
        let answer = vmm_api::call(&slot.api_socket(), "PUT", "/vm/resume", None, API_TIMEOUT)
            .await
            .map_err(|e| ApiError::internal(format!("cannot resume the VM: {e}")))?;
        // 409: the VM is not paused, i.e. it runs already (a VMM that
        // ignored --paused); that is what was wanted.
        match answer.ok() || answer.status == 409 {
            true => Ok(()),
            false => Err(ApiError::internal(format!(
                "the VMM refused to resume: {}",
                answer.error()
            ))),
        }
    }

    async fn boot_plan(&self, slot: &Slot, spec: &VmSpec) -> Result<BootPlan, ApiError> {
        let storage = self.inner.storage.clone();
        let (spec, dir) = (spec.clone(), slot.dir.clone());
        tokio::task::spawn_blocking(move || launch_args::boot_plan(&storage, &spec, &dir))
            .await
            .map_err(|e| ApiError::internal(format!("boot preparation failed: {e}")))?
    }

    pub(super) fn resolve_disks(&self, spec: &VmSpec) -> Result<Vec<launch_args::Disk>, ApiError> {
        spec.disks
            .iter()
            .map(|d| {
                let v = d.volume.parse().map_err(ApiError::bad_request)?;
                let resolved = self.inner.storage.resolve(&v)?;
                Ok(launch_args::Disk {
                    resolved,
                    readonly: d.readonly,
                })
            })
            .collect()
    }

    pub(super) fn watch(&self, slot: Arc<Slot>, run_id: u64, process: Arc<VmmProcess>) {
        let vms = self.clone();
        tokio::spawn(async move {
            process.exited().await;
            vms.on_exit(&slot, run_id, &process).await;
        });
    }

    /// A run ended: record how, then stop, report a crash, or start again.
    async fn on_exit(&self, slot: &Arc<Slot>, run_id: u64, process: &VmmProcess) {
        let status = process.reap();
        let record = runtime::read_exit(&slot.dir);
        let (exit, then) = {
            let mut guard = slot.lock();
            let s = &mut *guard;
            let Some(run) = s.run.as_ref().filter(|r| r.id == run_id) else {
                return;
            };
            let requested = run.stopping.is_some();
            let exit = exit_info(record, status, requested, &slot.dir);
            let then = decide(&s.def.spec, &exit, &mut s.crash_restarts);
            s.run = None;
            s.state = match then {
                Then::Crash => VmState::Crashed,
                _ => VmState::Stopped,
            };
            s.last_exit = Some(exit.clone());
            if then == Then::Restart {
                s.restarts += 1;
            }
            (exit, then)
        };
        runtime::clear_run_files(&slot.dir);
        runtime::save_last_exit(&slot.dir, &exit);
        self.inner.config.networks.detach(&slot.uuid).await;
        slot.console.note(&describe(&exit));
        slot.exits.send_modify(|n| *n += 1);
        if then == Then::Restart {
            let _op = slot.op.lock().await;
            if let Err(e) = self.start_locked(slot).await {
                eprintln!("vireo-agent: restarting {}: {}", slot.name(), e.1);
                slot.console.note(&format!("restart failed: {}", e.1));
                slot.lock().state = VmState::Crashed;
            }
        }
    }

    /// Marks the run as being stopped on purpose; the run it applies to.
    async fn begin_stop(&self, slot: &Slot, kind: StopKind) -> Result<Run, ApiError> {
        let _op = slot.op.lock().await;
        let mut s = slot.lock();
        let name = s.def.spec.name.clone();
        let Some(run) = s.run.as_mut() else {
            return Err(ApiError::conflict(format!("VM '{name}' is not running")));
        };
        if kind == StopKind::Graceful && run.stopping.is_some() {
            return Err(ApiError::conflict(format!(
                "VM '{name}' is already being stopped"
            )));
        }
        run.stopping = Some(kind);
        let run = run.clone();
        if kind == StopKind::Graceful {
            s.state = VmState::ShuttingDown;
        }
        runtime::mark_stopping(&slot.dir);
        Ok(run)
    }

    /// POST /vms/{name}/destroy: the VMM stops now (its own orderly stop,
    /// which flushes the disks; SIGKILL if it does not).
    pub async fn destroy(&self, slot: &Arc<Slot>) -> Result<VmInfo, ApiError> {
        let run = self.begin_stop(slot, StopKind::Hard).await?;
        hard_stop(slot, &run).await;
        Ok(slot.info())
    }

    /// POST /vms/{name}/reboot: the VMM rebuilds the VM in place.
    pub async fn reboot(&self, slot: &Arc<Slot>) -> Result<VmInfo, ApiError> {
        let _op = slot.op.lock().await;
        if !slot.is_running() {
            return Err(ApiError::conflict(format!(
                "VM '{}' is not running",
                slot.name()
            )));
        }
        let answer = vmm_api::call(&slot.api_socket(), "PUT", "/vm/reboot", None, API_TIMEOUT)
            .await
            .map_err(|e| ApiError::internal(format!("the VMM did not answer: {e}")))?;
        if !answer.ok() {
            return Err(ApiError::internal(format!(
                "the VMM refused to reboot: {}",
                answer.error()
            )));
        }
        slot.console.note("rebooted by request");
        Ok(slot.info())
    }

    /// POST /vms/{name}/shutdown: a task that asks the guest (Ctrl-Alt-Del),
    /// waits up to `timeout`, then stops it hard. Cancelling the task stops
    /// the waiting; the VM is left as it is.
    pub async fn shutdown(
        &self,
        slot: &Arc<Slot>,
        timeout: Duration,
        tasks: &Tasks,
    ) -> Result<TaskInfo, ApiError> {
        let run = self.begin_stop(slot, StopKind::Graceful).await?;
        let (slot, name) = (slot.clone(), slot.name());
        Ok(
            tasks.spawn("vm-shutdown", &name, "seconds", move |ctx| async move {
                graceful_stop(&slot, &run, timeout, &ctx).await
            }),
        )
    }

    /// At load: a VMM a previous agent started is adopted if it still runs
    /// (its pidfd watched, its console attached again); one that ended
    /// meanwhile is reported the way `on_exit` would have.
    pub(super) async fn adopt_or_report(&self, slot: &Arc<Slot>) {
        if let Some(exit) = runtime::read_last_exit(&slot.dir) {
            slot.lock().last_exit = Some(exit);
        }
        let Some(record) = runtime::read_pid(&slot.dir) else {
            return;
        };
        let stopping = runtime::is_stopping(&slot.dir);
        match VmmProcess::adopt(&record).filter(|p| !p.has_exited()) {
            Some(process) => self.adopt(slot, process, record, stopping).await,
            None => {
                let exit = exit_info(runtime::read_exit(&slot.dir), None, stopping, &slot.dir);
                {
                    let mut guard = slot.lock();
                    let s = &mut *guard;
                    let then = decide(&s.def.spec, &exit, &mut s.crash_restarts);
                    s.state = match then {
                        Then::Crash => VmState::Crashed,
                        _ => VmState::Stopped,
                    };
                    s.last_exit = Some(exit.clone());
                }
                runtime::clear_run_files(&slot.dir);
                runtime::save_last_exit(&slot.dir, &exit);
                self.inner.config.networks.detach(&slot.uuid).await;
                slot.console.note(&describe(&exit));
            }
        }
    }

    /// Before a VM this node no longer owns is forgotten: a VMM a previous
    /// agent left for it (one that handed the VM over while no agent was
    /// there, say) is adopted and stopped, so none is left behind.
    pub async fn stop_leftover(&self, slot: &Arc<Slot>) {
        if !slot.is_running() {
            self.adopt_or_report(slot).await;
        }
        if slot.is_running() {
            let _ = self.destroy(slot).await;
        }
    }

    async fn adopt(
        &self,
        slot: &Arc<Slot>,
        process: VmmProcess,
        record: PidRecord,
        stopping: bool,
    ) {
        let answer = vmm_api::call(&slot.api_socket(), "GET", "/vm", None, API_TIMEOUT).await;
        let paused = answer
            .as_ref()
            .ok()
            .and_then(|a| serde_json::from_str::<serde_json::Value>(&a.body).ok())
            .is_some_and(|v| v["state"] == "paused");
        if let Err(e) = slot.console.attach(&slot.console_socket()).await {
            eprintln!("vireo-agent: {}: console not attached: {e}", slot.name());
        }
        let process = Arc::new(process);
        let id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        {
            let mut s = slot.lock();
            s.run = Some(Run {
                id,
                process: process.clone(),
                started_at: record.started_at,
                stopping: stopping.then_some(StopKind::Hard),
            });
            s.state = match (stopping, paused) {
                (true, _) => VmState::ShuttingDown,
                (false, true) => VmState::Paused,
                (false, false) => VmState::Running,
            };
        }
        self.watch(slot.clone(), id, process);
    }
}

/// Clears the run directory `dir` of the last run's files and launches
/// the VMM (blocking).
fn launch_in(
    dir: &std::path::Path,
    launcher: &dyn super::launcher::Launcher,
    req: &super::launcher::LaunchRequest,
) -> Result<std::process::Child, ApiError> {
    runtime::clear_run_files(dir);
    let vmm_dir = runtime::vmm_dir(dir);
    std::fs::create_dir_all(&vmm_dir)
        .map_err(|e| ApiError::internal(format!("cannot make {}: {e}", vmm_dir.display())))?;
    let _ = std::fs::rename(&req.log, dir.join("vmm.log.1"));
    launcher
        .launch(req)
        .map_err(|e| ApiError::internal(format!("cannot start {}: {e}", req.vmm.display())))
}

/// Polls for the API socket until the VMM answers GET /vm; a VMM that
/// exits first failed to build the VM, and its exit record says why.
async fn wait_ready(slot: &Slot, process: &VmmProcess, within: Duration) -> Result<(), ApiError> {
    let socket = slot.api_socket();
    let deadline = Instant::now() + within;
    loop {
        if process.has_exited() {
            return Err(start_failure(slot));
        }
        if socket.exists() {
            if let Ok(a) = vmm_api::call(&socket, "GET", "/vm", None, API_TIMEOUT).await {
                if a.ok() {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            return Err(ApiError::internal(format!(
                "the VMM did not answer on {} within {within:?}",
                socket.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A VMM that did not get ready: killed, reaped, its run files gone.
pub(super) async fn kill_failed(slot: &Slot, process: &VmmProcess) {
    let _ = process.signal(libc::SIGKILL);
    process.exited().await;
    process.reap();
    runtime::clear_run_files(&slot.dir);
}

/// Why a VMM ended before its API answered, as the answer to `start`.
pub(super) fn start_failure(slot: &Slot) -> ApiError {
    let message = runtime::read_exit(&slot.dir)
        .and_then(|r| r.message)
        .or_else(|| runtime::vmm_log_tail(&slot.dir))
        .unwrap_or_else(|| "the VMM exited without saying why".into());
    let status = if message.contains("in use") {
        StatusCode::CONFLICT
    } else if message.contains("memory") && message.contains("host") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    ApiError(status, format!("the VMM could not start the VM: {message}"))
}

/// Ctrl-Alt-Del, wait, and the hard stop if the guest does not go.
async fn graceful_stop(
    slot: &Arc<Slot>,
    run: &Run,
    timeout: Duration,
    ctx: &TaskCtx,
) -> Result<serde_json::Value, String> {
    let started = Instant::now();
    let asked = vmm_api::call(
        &slot.api_socket(),
        "PUT",
        "/vm/ctrl-alt-del",
        None,
        API_TIMEOUT,
    )
    .await;
    let guest_asked = match asked {
        Ok(a) if a.ok() => true,
        Ok(a) if a.status == 404 => {
            // A VMM without the route: nothing can reach the guest, so
            // waiting would only delay the stop.
            slot.console
                .note("this VMM cannot send Ctrl-Alt-Del; stopping the VM hard");
            false
        }
        Ok(a) => {
            slot.console
                .note(&format!("Ctrl-Alt-Del refused: {}", a.error()));
            false
        }
        Err(e) => {
            slot.console.note(&format!("Ctrl-Alt-Del not sent: {e}"));
            false
        }
    };
    if guest_asked {
        slot.console
            .note("shutdown: Ctrl-Alt-Del sent to the guest");
        match wait_for_exit(slot, run.id, timeout, Some(ctx)).await {
            Waited::Exited => {
                return Ok(
                    serde_json::json!({"forced": false, "seconds": started.elapsed().as_secs_f64()}),
                )
            }
            Waited::Cancelled => {
                let mut s = slot.lock();
                if let Some(r) = s.run.as_mut().filter(|r| r.id == run.id) {
                    r.stopping = None;
                    s.state = VmState::Running;
                }
                runtime::clear_stopping(&slot.dir);
                return Err("cancelled: the VM keeps running".into());
            }
            Waited::TimedOut => slot
                .console
                .note("the guest did not stop in time; stopping it hard"),
        }
    }
    hard_stop(slot, run).await;
    Ok(serde_json::json!({"forced": true, "seconds": started.elapsed().as_secs_f64()}))
}

pub(super) enum Waited {
    Exited,
    TimedOut,
    Cancelled,
}

/// Waits until run `run_id` has ended and been recorded, reporting progress
/// in seconds to `ctx` and stopping early if it is cancelled.
pub(super) async fn wait_for_exit(
    slot: &Slot,
    run_id: u64,
    timeout: Duration,
    ctx: Option<&TaskCtx>,
) -> Waited {
    let mut exits = slot.exits.subscribe();
    let started = Instant::now();
    loop {
        let ended = slot.lock().run.as_ref().is_none_or(|r| r.id != run_id);
        if ended {
            return Waited::Exited;
        }
        let elapsed = started.elapsed();
        if let Some(ctx) = ctx {
            ctx.progress(elapsed.as_secs(), timeout.as_secs());
            if ctx.cancelled() {
                return Waited::Cancelled;
            }
        }
        if elapsed >= timeout {
            return Waited::TimedOut;
        }
        let step = (timeout - elapsed).min(Duration::from_millis(500));
        let _ = tokio::time::timeout(step, exits.changed()).await;
    }
}

/// The VMM's own orderly stop (flushes disks, exits 0), SIGKILL if it does
/// not answer or go.
async fn hard_stop(slot: &Slot, run: &Run) {
    let asked = vmm_api::call(&slot.api_socket(), "PUT", "/vm/shutdown", None, API_TIMEOUT)
        .await
        .is_ok_and(|a| a.ok());
    if asked {
        if let Waited::Exited = wait_for_exit(slot, run.id, HARD_STOP_GRACE, None).await {
            return;
        }
    }
    let _ = run.process.signal(libc::SIGKILL);
    let _ = wait_for_exit(slot, run.id, HARD_STOP_GRACE, None).await;
}

/// How the run ended, from the VMM's exit record, else its status.
fn exit_info(
    record: Option<ExitRecord>,
    status: Option<std::process::ExitStatus>,
    requested: bool,
    dir: &std::path::Path,
) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    let (exit_code, outcome, message) = match record {
        Some(r) => (Some(r.exit_code), r.outcome, r.message),
        None => {
            let how = match status.and_then(|s| s.signal()) {
                Some(sig) => format!("killed by signal {sig}"),
                None => "ended without an exit record (killed)".into(),
            };
            let log = runtime::vmm_log_tail(dir).map_or(String::new(), |t| format!("; log: {t}"));
            (
                status.and_then(|s| s.code()),
                "killed".into(),
                Some(how + &log),
            )
        }
    };
    ExitInfo {
        at: now(),
        exit_code,
        outcome,
        requested,
        message,
    }
}

fn decide(
    spec: &VmSpec,
    exit: &ExitInfo,
    crash_restarts: &mut std::collections::VecDeque<u64>,
) -> Then {
    if exit.requested {
        return Then::Stop;
    }
    match exit.outcome.as_str() {
        "guest_reset" if spec.on_reboot == OnReboot::Restart => Then::Restart,
        "guest_reset" | "guest_power_off" | "api_shutdown" | "signalled" | "migrated_away" => {
            Then::Stop
        }
        _ if spec.on_crash == OnCrash::Restart => {
            let t = now();
            crash_restarts.retain(|&at| t.saturating_sub(at) < CRASH_WINDOW_S);
            if crash_restarts.len() < CRASH_RESTARTS {
                crash_restarts.push_back(t);
                Then::Restart
            } else {
                Then::Crash
            }
        }
        _ => Then::Crash,
    }
}

fn describe(exit: &ExitInfo) -> String {
    let code = exit
        .exit_code
        .map_or(String::new(), |c| format!(", exit code {c}"));
    let why = exit
        .message
        .as_deref()
        .map_or(String::new(), |m| format!(": {m}"));
    format!("the VMM ended ({}{code}){why}", exit.outcome)
}
