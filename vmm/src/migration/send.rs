//! The source of a live migration, on its own thread (`vireo-migrate`):
//! connect, send memory (and copied disks) while the guest runs, pass after
//! pass, until what is left fits the downtime budget; then have the event
//! loop pause the VM and capture its state (`ToMain::Switchover`), send the
//! last pages, blocks and the state, and hand over.
//!
//! Safety of the hand-over: the destination runs the VM only on Commit,
//! and this side leaves only on Running. Any failure before Commit
//! resumes the VM here (`ToMain::Aborted`); the destination, seeing no
//! Commit, exits. After Commit without Running (the link died) the VM
//! stays paused here (`ToMain::Unknown`): never two running copies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use super::context::{self, MigrationStatus, PassMeter, Phase};
use super::protocol::{self, Hello, Kind};
use super::transport::{self, Channel, Endpoint, TlsFiles};
use super::{copy, forward, DiskMode, MigrateRequest};
use crate::config::VmConfig;
use crate::memory::{self, dirty, GuestRam};
use crate::snapshot::VmSnapshot;
use crate::vcpu::throttle::{Throttle, MAX_PERCENT};

/// Passes after the first, at most; then the switch-over happens whatever
/// the downtime (auto-converge should have made it fit long before).
const MAX_PASSES: u32 = 30;
/// Passes after what is left first fits the downtime budget, at most
/// (`context::worth_another_pass`).
const MAX_EXTRA_PASSES: u32 = 5;
/// The switch-over's fixed cost besides the last pages: the state, the
/// Ready/Commit/Running round trips, building the VM there.
const SWITCHOVER_FIXED_MS: u64 = 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The VM captured for the switch-over.
pub struct Captured {
    pub snap: Box<VmSnapshot>,
    /// When the guest stopped: the last vCPU out of KVM_RUN (or the
    /// request, for a VM the API had paused already). The guest's
    /// downtime counts from here, as QEMU's STOP event, sent once its
    /// vCPUs have stopped, starts its own.
    pub stopped: Instant,
}

/// What the migration thread asks of the event loop.
pub enum ToMain {
    /// Pause the VM, flush its disks and capture its state.
    Switchover(Sender<Result<Captured, String>>),
    /// It ended without handing the VM over: resume it.
    Aborted,
    /// The destination runs the VM.
    Completed,
    /// Handed over but not confirmed: stay paused.
    Unknown,
    /// After Completed, `linger_ms` went by without PUT /vm/shutdown.
    LingerOver,
}

/// The source VMM's VM-less stay after the hand-over (`linger_ms`).
struct Linger {
    ms: u64,
    cancel: Arc<AtomicBool>,
    to_main: Sender<ToMain>,
    wake: EventFd,
}

impl Linger {
    /// Waits `ms`, then tells the event loop to exit, unless the VMM is
    /// stopping anyway (its teardown sets cancel).
    fn wait(self) {
        let until = Instant::now() + Duration::from_millis(self.ms);
        while Instant::now() < until {
            if self.cancel.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "vireo-vmm: nobody stopped this VMM within {} ms of the hand-over; exiting",
            self.ms
        );
        let _ = self.to_main.send(ToMain::LingerOver);
        let _ = self.wake.write(1);
    }
}

/// Everything the migration thread needs, handed over by the event loop.
pub struct Source {
    pub req: MigrateRequest,
    pub tls: TlsFiles,
    /// The VM's description, NIC addresses included.
    pub config: VmConfig,
    pub ram: GuestRam,
    pub vm_fd: Arc<VmFd>,
    pub disks: Vec<copy::SourceDisk>,
    pub throttle: Throttle,
    pub status: Arc<Mutex<MigrationStatus>>,
    pub cancel: Arc<AtomicBool>,
    pub to_main: Sender<ToMain>,
    pub wake: EventFd,
    /// Pages collected when pre-copy decided to stop, sent at the switch-over.
    pub leftover: Vec<memory::pages::PageBitmap>,
    /// The NICs, whose late frames go on to the destination (forward.rs).
    pub nics: Vec<forward::SourceNic>,
}

/// How a migration ended badly.
pub(super) enum Fail {
    /// Before Commit: the VM resumes here.
    Before(String),
    /// After Commit: who runs the VM is unknown.
    After(String),
}

fn before(e: impl std::fmt::Display) -> Fail {
    Fail::Before(e.to_string())
}

impl Source {
    /// The thread's body.
    pub fn run(mut self) {
        let started = Instant::now();
        let result = self.migrate(started);
        self.throttle.set(0);
        let (phase, message, error) = match result {
            Ok(()) => (Phase::Completed, ToMain::Completed, None),
            Err(Fail::Before(e)) => {
                self.clean_up();
                let phase = if self.cancelled() {
                    Phase::Cancelled
                } else {
                    Phase::Failed
                };
                (phase, ToMain::Aborted, Some(e))
            }
            Err(Fail::After(e)) => (Phase::Unknown, ToMain::Unknown, Some(e)),
        };
        self.update(|s| {
            s.phase = phase;
            s.error = error;
            // A completed migration's total ends at Running (switchover),
            // not after forwarding the late frames.
            if phase != Phase::Completed {
                s.total_ms = started.elapsed().as_millis() as u64;
            }
        });
        let completed = matches!(message, ToMain::Completed);
        self.tell_main(message);
        if completed && self.req.lingers() {
            self.into_linger().wait();
        }
    }

    /// What timing the VM-less stay needs; the rest (the VM's memory and
    /// handles) is let go here.
    fn into_linger(self) -> Linger {
        Linger {
            ms: self.req.linger_ms,
            cancel: self.cancel,
            to_main: self.to_main,
            wake: self.wake,
        }
    }

    fn tell_main(&self, message: ToMain) {
        let _ = self.to_main.send(message);
        let _ = self.wake.write(1);
    }

    fn update(&self, f: impl FnOnce(&mut MigrationStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn check_cancel(&self) -> Result<(), Fail> {
        if self.cancelled() {
            return Err(Fail::Before("cancelled".into()));
        }
        Ok(())
    }

    /// Tracking off and this side's image locks back, before resuming.
    fn clean_up(&self) {
        let _ = memory::register(&self.vm_fd, &self.ram, false);
        for disk in &self.disks {
            disk.stop_tracking();
            if let Err(e) = disk.relock() {
                eprintln!("vireo-vmm: after the failed migration: {e}");
            }
        }
    }

    fn migrate(&mut self, started: Instant) -> Result<(), Fail> {
        self.update(|s| {
            *s = MigrationStatus {
                phase: Phase::Setup,
                url: self.req.url.clone(),
                ..Default::default()
            }
        });
        let mut ch = self.connect()?;
        dirty::start(&self.vm_fd, &self.ram).map_err(before)?;
        let copying = self.req.disks == DiskMode::Copy;
        if copying {
            self.disks.iter().for_each(copy::SourceDisk::start_tracking);
        }
        self.update(|s| s.phase = Phase::Precopy);
        let first = memory::pages::touched(&self.ram).map_err(before)?;
        let mut meter = PassMeter::start();
        self.send_pages(&mut *ch, &first, &mut meter, true)?;
        if copying {
            self.send_disks(&mut *ch, None, &mut meter)?;
        }
        let bandwidth = self.precopy(&mut *ch, meter)?;
        self.switchover(&mut *ch, bandwidth, started)?;
        // The VM runs there: nothing from here on can fail the migration.
        match forward::send(&mut *ch, &self.nics) {
            Ok(0) => {}
            Ok(n) => eprintln!("vireo-vmm: {n} frames that reached this host after the pause went on to the destination"),
            Err(e) => eprintln!("vireo-vmm: forwarding late frames to the destination: {e}"),
        }
        Ok(())
    }

    fn connect(&self) -> Result<Box<dyn Channel>, Fail> {
        let endpoint: Endpoint = self.req.url.parse().map_err(Fail::Before)?;
        let mut ch = transport::connect(&endpoint, &self.tls, CONNECT_TIMEOUT)
            .map_err(|e| before(format!("cannot connect to {}: {e}", self.req.url)))?;
        ch.set_timeout(Duration::from_millis(self.req.link_timeout_ms))
            .map_err(before)?;
        let hello = Hello {
            version: protocol::VERSION,
            arch: std::env::consts::ARCH.to_string(),
            config: self.config.clone(),
            memory: crate::snapshot::layout_of(&self.ram),
            disks: self.req.disks,
            disk_sizes: self.disks.iter().map(copy::SourceDisk::size).collect(),
        };
        protocol::write_json(&mut *ch, Kind::Hello, &hello).map_err(before)?;
        protocol::expect(&mut *ch, Kind::Ack).map_err(before)?;
        Ok(ch)
    }

    /// Passes while the guest runs; returns the bandwidth measured last.
    fn precopy(&mut self, ch: &mut dyn Channel, mut meter: PassMeter) -> Result<f64, Fail> {
        let budget = self.req.max_downtime_ms;
        let mut last_sent = meter.sent();
        let mut extra = 0;
        for pass in 1..=MAX_PASSES {
            let bandwidth = meter.rate();
            let elapsed = meter.elapsed();
            let dirty = dirty::collect(&self.vm_fd, &self.ram).map_err(before)?;
            let dirty_bytes =
                dirty::count(&dirty) * protocol::PAGE as u64 + self.disk_dirty_bytes();
            let expected = context::downtime_ms(dirty_bytes, bandwidth, SWITCHOVER_FIXED_MS);
            self.update(|s| {
                s.pass = pass;
                s.bytes_remaining = dirty_bytes;
                s.bandwidth_mbps = context::mbps(bandwidth);
                s.dirty_rate_mbps =
                    context::mbps(dirty_bytes as f64 / elapsed.as_secs_f64().max(1e-3));
                s.expected_downtime_ms = expected;
            });
            let fits = expected <= budget;
            // A throttled guest goes as soon as it fits: each pass more
            // would keep it slowed.
            let another = extra < MAX_EXTRA_PASSES
                && self.throttle.percent() == 0
                && context::worth_another_pass(dirty_bytes, last_sent);
            if fits && !another {
                // What is left goes in the switch-over.
                self.leftover = dirty;
                return Ok(bandwidth);
            }
            if fits {
                extra += 1;
            } else {
                self.converge(pass, dirty_bytes, last_sent);
            }
            meter = PassMeter::start();
            self.send_pages(ch, &dirty, &mut meter, false)?;
            if self.req.disks == DiskMode::Copy {
                self.send_disks(ch, Some(()), &mut meter)?;
            }
            last_sent = dirty_bytes;
        }
        Ok(meter.rate())
    }

    /// Auto-converge: from the third pass, a guest that dirtied more than
    /// half of what the last pass sent is throttled harder, 20 points at a
    /// time, up to 99%.
    fn converge(&mut self, pass: u32, dirty_bytes: u64, last_sent: u64) {
        if !self.req.auto_converge || pass < 3 || dirty_bytes * 2 < last_sent {
            return;
        }
        let next = self.throttle.percent().saturating_add(20).min(MAX_PERCENT);
        self.throttle.set(next);
        self.update(|s| s.throttle_percent = next);
    }

    fn disk_dirty_bytes(&self) -> u64 {
        if self.req.disks != DiskMode::Copy {
            return 0;
        }
        self.disks.iter().map(copy::SourceDisk::dirty_bytes).sum()
    }

    fn switchover(
        &mut self,
        ch: &mut dyn Channel,
        bandwidth: f64,
        started: Instant,
    ) -> Result<(), Fail> {
        self.check_cancel()?;
        self.update(|s| s.phase = Phase::Switchover);
        // The destination lands the passes' frames behind this side (it
        // faults its fresh RAM in as it goes): it says Drained once it has
        // caught up, so that its backlog is not part of the guest's
        // downtime, and is then awake for what follows.
        protocol::write_frame(ch, Kind::Closing, &[]).map_err(before)?;
        transport::wait_awake(ch);
        protocol::expect(ch, Kind::Drained).map_err(before)?;
        let paused_at = Instant::now();
        let paused_wall = SystemTime::now();
        let (tx, rx) = mpsc::channel();
        self.tell_main(ToMain::Switchover(tx));
        let awake_until = Instant::now() + crate::spin::BUDGET;
        let captured = match crate::spin::until(awake_until, || rx.try_recv().ok()) {
            Some(captured) => captured,
            None => rx.recv().map_err(|_| before("the VMM is stopping"))?,
        };
        let Captured { snap, stopped } = captured.map_err(Fail::Before)?;
        let stopped_wall = paused_wall + stopped.saturating_duration_since(paused_at);
        let captured = paused_at.elapsed();
        self.throttle.set(0);
        let mut last = dirty::collect(&self.vm_fd, &self.ram).map_err(before)?;
        dirty::merge(&mut last, &self.leftover);
        let mut meter = PassMeter::start();
        self.send_pages(ch, &last, &mut meter, false)?;
        if self.req.disks == DiskMode::Copy {
            self.send_disks(ch, Some(()), &mut meter)?;
        } else {
            // The destination opens the images once it has the state.
            for disk in &self.disks {
                disk.unlock().map_err(before)?;
            }
        }
        let pages_sent = paused_at.elapsed();
        let state = crate::snapshot::binary::encode(&snap).map_err(before)?;
        protocol::write_frame(ch, Kind::State, &state).map_err(before)?;
        let sent = paused_at.elapsed();
        transport::wait_awake(ch);
        protocol::expect(ch, Kind::Ready).map_err(before)?;
        let ready = paused_at.elapsed();
        protocol::write_frame(ch, Kind::Commit, &[]).map_err(before)?;
        let resumed_wall = confirmed(ch)?;
        let running = paused_at.elapsed();
        let breakdown = [
            context::hundredths_ms(captured),
            context::hundredths_ms(pages_sent - captured),
            context::hundredths_ms(sent - pages_sent),
            context::hundredths_ms(ready - sent),
            context::hundredths_ms(running - ready),
        ];
        self.update(|s| {
            s.downtime_ms = Some(context::hundredths_ms(running));
            s.downtime_breakdown_ms = Some(breakdown);
            s.guest_downtime_ms = resumed_wall
                .and_then(|at| at.duration_since(stopped_wall).ok())
                .map(|seen| context::hundredths_ms(seen.min(running)));
            s.bytes_remaining = 0;
            s.bandwidth_mbps = context::mbps(bandwidth);
            s.total_ms = started.elapsed().as_millis() as u64;
        });
        Ok(())
    }

    /// Sends the pages in `bitmaps`; on the first pass (`first`), pages of
    /// zeros are skipped (the destination's RAM starts zeroed).
    fn send_pages(
        &self,
        ch: &mut dyn Channel,
        bitmaps: &[memory::pages::PageBitmap],
        meter: &mut PassMeter,
        first: bool,
    ) -> Result<(), Fail> {
        let mut batch = Vec::with_capacity(BATCH_PAGES * (protocol::PAGE + 10));
        let mut in_batch = 0;
        let mut error = None;
        memory::pages::for_each_page(bitmaps, |r, p| {
            if error.is_some() {
                return;
            }
            let Ok(bytes) = memory::pages::page(&self.ram, r, p) else {
                return;
            };
            let data = if bytes.iter().all(|&b| b == 0) {
                if first {
                    return;
                }
                protocol::PageData::Zero
            } else {
                protocol::PageData::Data(bytes)
            };
            protocol::push_page(&mut batch, r as u8, p, data);
            in_batch += 1;
            if in_batch == BATCH_PAGES {
                error = self
                    .flush_batch(ch, Kind::Pages, &mut batch, meter, true)
                    .err();
                in_batch = 0;
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        self.flush_batch(ch, Kind::Pages, &mut batch, meter, true)
    }

    /// Sends a batch frame, counts it, honours the bandwidth cap and cancel.
    pub(super) fn flush_batch(
        &self,
        ch: &mut dyn Channel,
        kind: Kind,
        batch: &mut Vec<u8>,
        meter: &mut PassMeter,
        memory: bool,
    ) -> Result<(), Fail> {
        self.check_cancel()?;
        if batch.is_empty() {
            return Ok(());
        }
        protocol::write_frame(ch, kind, batch).map_err(before)?;
        let n = batch.len() as u64;
        meter.add(n);
        batch.clear();
        self.update(|s| {
            s.bytes_sent += n;
            if memory {
                s.memory_bytes_sent += n;
            } else {
                s.disk_bytes_sent += n;
            }
        });
        self.cap_bandwidth(meter);
        Ok(())
    }

    fn cap_bandwidth(&self, meter: &PassMeter) {
        let cap = self.req.bandwidth_mbps;
        if cap == 0 {
            return;
        }
        let allowed = cap as f64 * 1e6 / 8.0;
        let rate = meter.rate();
        if rate > allowed {
            let ahead = meter.elapsed().as_secs_f64() * (rate / allowed - 1.0);
            std::thread::sleep(Duration::from_secs_f64(ahead.min(1.0)));
        }
    }

    /// Every block (`dirty` None) or the blocks written since the last
    /// pass of every disk.
    fn send_disks(
        &self,
        ch: &mut dyn Channel,
        dirty: Option<()>,
        meter: &mut PassMeter,
    ) -> Result<(), Fail> {
        for (n, disk) in self.disks.iter().enumerate() {
            let ranges = match dirty {
                None => disk.all_blocks(),
                Some(()) => disk.take_dirty(),
            };
            copy::send_blocks(self, ch, n as u8, disk, &ranges, meter)?;
        }
        Ok(())
    }
}

/// After Commit: Running, or an Error frame, which the destination sends
/// only when it will not run the VM (it failed after Ready, before it got
/// Commit): the VM is still this side's. Anything else leaves it unknown.
/// Returns when the destination resumed the guest, if it said.
fn confirmed(ch: &mut dyn Channel) -> Result<Option<SystemTime>, Fail> {
    match protocol::read_frame(ch) {
        Ok((Kind::Running, at)) => Ok(protocol::decode_wall_time(&at)),
        Ok((Kind::Error, why)) => Err(Fail::Before(String::from_utf8_lossy(&why).into_owned())),
        Ok((kind, _)) => Err(Fail::After(format!(
            "the destination sent {kind:?} instead of Running"
        ))),
        Err(e) => Err(Fail::After(format!(
            "no confirmation from the destination: {e}"
        ))),
    }
}

/// Pages per Pages frame (about 1 MiB).
const BATCH_PAGES: usize = 256;

pub(super) type SendFail = Fail;
