//! Polling with a deadline: cluster state changes asynchronously, so tests
//! wait for a condition instead of sleeping a guessed time.

use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);

/// Calls `probe` until it returns Ok or `timeout` passes; on timeout the error
/// names `what` and carries the last reason `probe` gave. Returns the value and
/// the time it took.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, String>,
) -> Result<(T, Duration), String> {
    wait_until_every(POLL, timeout, what, probe)
}

/// [`wait_until`] polling every `poll` (the bench polls faster than tests).
pub fn wait_until_every<T>(
    poll: Duration,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        let reason = match probe() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(reason) => reason,
        };
        if start.elapsed() >= timeout {
            return Err(format!("{what}: not within {timeout:?}; last: {reason}"));
        }
        std::thread::sleep(poll);
    }
}
