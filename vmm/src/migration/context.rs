//! A migration's progress, as `GET /vm/migration` reports it, and the
//! arithmetic that decides when to switch over: what is left, at the
//! bandwidth measured so far, must fit the downtime budget.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// No migration has run.
    #[default]
    None,
    Setup,
    /// Memory (and disks) going over while the guest runs.
    Precopy,
    /// The guest is paused; the last pages and the state are going.
    Switchover,
    /// The destination runs the VM; this VMM exits.
    Completed,
    Failed,
    Cancelled,
    /// The destination was told to run the VM but did not confirm, and the
    /// link is gone: this side stays paused (never two running copies);
    /// resume it only if the destination is known not to run the VM.
    Unknown,
}

/// What `GET /vm/migration` returns.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MigrationStatus {
    pub phase: Phase,
    pub url: String,
    /// Pre-copy passes done (0: the first, whole copy).
    pub pass: u32,
    pub bytes_sent: u64,
    pub memory_bytes_sent: u64,
    pub disk_bytes_sent: u64,
    /// Dirty memory and disk not sent yet (as of the last count).
    pub bytes_remaining: u64,
    pub bandwidth_mbps: f64,
    pub dirty_rate_mbps: f64,
    pub expected_downtime_ms: u64,
    /// vCPU throttling (auto-converge), percent of the time.
    pub throttle_percent: u8,
    /// From pausing the guest here to its running there (to 0.01 ms).
    pub downtime_ms: Option<f64>,
    /// Where the downtime went (to 0.01 ms): pausing and capturing the
    /// state here; the last dirty pages (and disk blocks) collected and
    /// sent; the state encoded and sent; the destination applying it
    /// (State to Ready); Commit to Running.
    pub downtime_breakdown_ms: Option<[f64; 5]>,
    /// What the guest saw: from its pause here to its resume there, by
    /// the two hosts' wall clocks (meaningful when they agree, as on one
    /// host); `downtime_ms` also counts the Running frame's way back.
    /// None when the destination did not say when it resumed.
    pub guest_downtime_ms: Option<f64>,
    pub total_ms: u64,
    pub error: Option<String>,
}

/// `d` in milliseconds, to 0.01 ms.
pub fn hundredths_ms(d: Duration) -> f64 {
    (d.as_micros() / 10) as f64 / 100.0
}

/// Rates measured over one pass.
pub struct PassMeter {
    start: Instant,
    sent: u64,
}

impl PassMeter {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
            sent: 0,
        }
    }

    pub fn add(&mut self, bytes: u64) {
        self.sent += bytes;
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Bytes per second this pass moved.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed().as_secs_f64().max(1e-3)
    }
}

/// Milliseconds `bytes` take at `bytes_per_s`, plus `fixed_ms` for the
/// state and the round trips of the switch-over.
pub fn downtime_ms(bytes: u64, bytes_per_s: f64, fixed_ms: u64) -> u64 {
    (bytes as f64 / bytes_per_s.max(1.0) * 1000.0) as u64 + fixed_ms
}

/// Left this little, a pass more would not shorten the downtime.
const SMALL_LEFTOVER: u64 = 16 * 4096;

/// Whether to run one more pass although what is left already fits the
/// downtime budget: while each pass leaves markedly less (a quarter less
/// than the one before), another shortens the pause for little time —
/// the budget is a ceiling, not a target. `previous` is what the last
/// pass found dirty (or sent, on the first).
pub fn worth_another_pass(dirty_bytes: u64, previous: u64) -> bool {
    dirty_bytes > SMALL_LEFTOVER && dirty_bytes.saturating_mul(4) < previous.saturating_mul(3)
}

pub fn mbps(bytes_per_s: f64) -> f64 {
    (bytes_per_s * 8.0 / 1e6 * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_go_on_while_they_shrink_what_is_left() {
        assert!(worth_another_pass(1 << 20, 64 << 20));
        assert!(
            !worth_another_pass(900 << 10, 1 << 20),
            "less than a quarter less"
        );
        assert!(
            !worth_another_pass(SMALL_LEFTOVER, 64 << 20),
            "already small"
        );
        assert!(!worth_another_pass(1 << 20, 0));
    }

    #[test]
    fn downtime_is_what_is_left_over_the_bandwidth() {
        // 100 MB at 1 GB/s is 100 ms, plus the fixed part.
        assert_eq!(downtime_ms(100_000_000, 1e9, 20), 120);
        // No bandwidth measured yet: never divide by zero.
        assert!(downtime_ms(1, 0.0, 0) <= 1000);
        assert_eq!(mbps(125_000_000.0), 1000.0);
    }
}
