//! The node's and its VMs' CPU, memory, disk and network over the last hour:
//! a sampler reads counters every interval and keeps the rates in a ring per
//! node and per VM (GET /node/history, GET /vms/{name}/history, the UI's
//! graphs); GET /metrics gives the same numbers to Prometheus.

mod prometheus;
pub mod routes;
pub mod sample;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::vm_types::{VmInfo, VmState};
use crate::vms::Vms;
use sample::{NodeCounters, VmCounters};

/// How much history is kept.
const WINDOW: Duration = Duration::from_secs(3600);

/// One sample: rates over the interval before `t`.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the epoch.
    pub t: u64,
    /// Percent busy: of all the node's CPUs, or of the VM's vCPUs.
    pub cpu_pct: f64,
    /// Bytes in use (node: total less available; VM: its VMM's RSS).
    pub mem_bytes: u64,
    pub disk_read_bps: f64,
    pub disk_write_bps: f64,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
}

/// A series as the API answers it.
#[derive(Clone, Debug, Serialize)]
pub struct History {
    pub interval_s: f64,
    /// Node: its memory; VM: its configured memory.
    pub mem_total_bytes: u64,
    pub points: Vec<Point>,
}

#[derive(Default)]
struct VmTrack {
    pid: i32,
    vcpus: u8,
    memory_bytes: u64,
    state: &'static str,
    last: Option<VmCounters>,
    points: VecDeque<Point>,
}

#[derive(Default)]
struct Samples {
    node_last: Option<NodeCounters>,
    node_points: VecDeque<Point>,
    vms: BTreeMap<String, VmTrack>,
}

/// The sampler's shared handle; clones share one history.
#[derive(Clone)]
pub struct Metrics {
    interval: Duration,
    samples: Arc<Mutex<Samples>>,
    started: Arc<AtomicBool>,
}

impl Metrics {
    pub fn new(interval: Duration) -> Self {
        Metrics {
            interval: interval.max(Duration::from_millis(100)),
            samples: Arc::default(),
            started: Arc::default(),
        }
    }

    fn capacity(&self) -> usize {
        (WINDOW.as_secs_f64() / self.interval.as_secs_f64()).ceil() as usize
    }

    /// Starts sampling `vms` (once; later calls do nothing).
    pub fn spawn_sampler(&self, vms: Vms) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(metrics.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let vms_now = vms.list();
                let m = metrics.clone();
                // /proc reads block; keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || m.sample_once(&vms_now)).await;
            }
        });
    }

    /// Reads every counter once and appends the rates since the last read.
    pub fn sample_once(&self, vms: &[VmInfo]) {
        let node = sample::node_counters();
        let now = crate::vms::now();
        let vm_reads: Vec<(String, Option<VmCounters>)> = vms
            .iter()
            .map(|vm| {
                let taps: Vec<String> = vm.spec.nics.iter().filter_map(|n| n.tap.clone()).collect();
                let counters = vm.pid.and_then(|pid| sample::vm_counters(pid, &taps));
                (vm.spec.name.clone(), counters)
            })
            .collect();
        let seconds = self.interval.as_secs_f64();
        let capacity = self.capacity();
        let mut s = self.samples.lock().unwrap();
        if let Some(last) = s.node_last {
            let point = node_point(now, &last, &node);
            push(&mut s.node_points, point, capacity);
        }
        s.node_last = Some(node);
        s.vms
            .retain(|name, _| vms.iter().any(|v| &v.spec.name == name));
        for (vm, (name, counters)) in vms.iter().zip(vm_reads) {
            let track = s.vms.entry(name).or_default();
            let pid = vm.pid.unwrap_or(0);
            track.vcpus = vm.spec.vcpus;
            track.memory_bytes = vm.spec.memory_mib * 1024 * 1024;
            track.state = vm.state.as_str();
            // A new VMM process starts its counters afresh.
            if pid != track.pid || vm.state != VmState::Running {
                track.last = None;
            }
            track.pid = pid;
            if let (Some(last), Some(now_c)) = (track.last, counters) {
                let point = vm_point(now, seconds, track.vcpus, &last, &now_c);
                push(&mut track.points, point, capacity);
            }
            track.last = counters;
        }
    }

    pub fn node_history(&self) -> History {
        let s = self.samples.lock().unwrap();
        History {
            interval_s: self.interval.as_secs_f64(),
            mem_total_bytes: s.node_last.map_or(0, |n| n.mem_total),
            points: s.node_points.iter().copied().collect(),
        }
    }

    /// The VM's series (empty for a VM the sampler has not seen yet).
    pub fn vm_history(&self, vm: &VmInfo) -> History {
        let s = self.samples.lock().unwrap();
        History {
            interval_s: self.interval.as_secs_f64(),
            mem_total_bytes: vm.spec.memory_mib * 1024 * 1024,
            points: s
                .vms
                .get(&vm.spec.name)
                .map(|t| t.points.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// The Prometheus text exposition of the newest counters.
    pub fn prometheus_text(&self) -> String {
        let s = self.samples.lock().unwrap();
        prometheus::render(&s)
    }
}

fn push(points: &mut VecDeque<Point>, point: Point, capacity: usize) {
    if points.len() >= capacity {
        points.pop_front();
    }
    points.push_back(point);
}

fn rate(before: u64, after: u64, seconds: f64) -> f64 {
    after.saturating_sub(before) as f64 / seconds
}

fn node_point(t: u64, a: &NodeCounters, b: &NodeCounters) -> Point {
    let total = b.cpu_total.saturating_sub(a.cpu_total).max(1) as f64;
    // Jiffies are the node's own clock: the rates use the same span.
    let seconds = total / (clock_ticks() * cpu_count());
    Point {
        t,
        cpu_pct: 100.0 * b.cpu_busy.saturating_sub(a.cpu_busy) as f64 / total,
        mem_bytes: b.mem_total.saturating_sub(b.mem_available),
        disk_read_bps: rate(a.disk_read, b.disk_read, seconds),
        disk_write_bps: rate(a.disk_written, b.disk_written, seconds),
        net_rx_bps: rate(a.net_rx, b.net_rx, seconds),
        net_tx_bps: rate(a.net_tx, b.net_tx, seconds),
    }
}

fn vm_point(t: u64, seconds: f64, vcpus: u8, a: &VmCounters, b: &VmCounters) -> Point {
    let cpu_seconds = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / clock_ticks();
    Point {
        t,
        cpu_pct: (100.0 * cpu_seconds / (seconds * f64::from(vcpus.max(1)))).min(100.0),
        mem_bytes: b.rss,
        disk_read_bps: rate(a.disk_read, b.disk_read, seconds),
        disk_write_bps: rate(a.disk_written, b.disk_written, seconds),
        net_rx_bps: rate(a.net_rx, b.net_rx, seconds),
        net_tx_bps: rate(a.net_tx, b.net_tx, seconds),
    }
}

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn cpu_count() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rates_from_counters() {
        let a = VmCounters {
            cpu_ticks: 0,
            rss: 0,
            disk_read: 0,
            disk_written: 1000,
            net_rx: 0,
            net_tx: 0,
        };
        let b = VmCounters {
            cpu_ticks: clock_ticks() as u64,
            rss: 4096,
            disk_read: 2000,
            disk_written: 3000,
            net_rx: 10,
            net_tx: 20,
        };
        let p = vm_point(7, 2.0, 1, &a, &b);
        assert_eq!(p.t, 7);
        assert!((p.cpu_pct - 50.0).abs() < 1e-9, "{p:?}");
        assert_eq!(
            (p.mem_bytes, p.disk_read_bps, p.disk_write_bps),
            (4096, 1000.0, 1000.0)
        );
        assert_eq!((p.net_rx_bps, p.net_tx_bps), (5.0, 10.0));
    }

    #[test]
    fn the_ring_keeps_an_hour() {
        let m = Metrics::new(Duration::from_secs(10));
        assert_eq!(m.capacity(), 360);
        let mut ring = VecDeque::new();
        for t in 0..400 {
            push(
                &mut ring,
                Point {
                    t,
                    ..Point::default()
                },
                m.capacity(),
            );
        }
        assert_eq!((ring.len(), ring[0].t), (360, 40));
    }

    #[test]
    fn the_node_is_sampled_from_the_second_read() {
        let m = Metrics::new(Duration::from_secs(1));
        m.sample_once(&[]);
        assert!(m.node_history().points.is_empty());
        m.sample_once(&[]);
        let h = m.node_history();
        assert_eq!(h.points.len(), 1);
        assert!(h.mem_total_bytes > 0 && h.points[0].mem_bytes > 0);
        assert!((0.0..=100.0).contains(&h.points[0].cpu_pct));
    }
}
