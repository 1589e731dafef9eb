//! Waiting awake, for a moment, where the switch-over of a migration
//! waits for another thread or for the peer.
//!
//! A thread that sleeps there gives its core back; the one that answers
//! must then wake it, and on a host that is itself a VM that wake-up (an
//! IPI to an idle core, the core's exit from its halt) took 10-600 µs in
//! the switch-over's timeline, several times the work waited for. So each
//! such wait first polls, yielding the core to anything else that is
//! runnable on it, for at most `BUDGET`, then sleeps as before.

use std::time::{Duration, Instant};

/// How long one wait polls before it sleeps.
pub const BUDGET: Duration = Duration::from_micros(1500);

/// `poll`'s first `Some`, or `None` once `deadline` has passed.
pub fn until<T>(deadline: Instant, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(found) = poll() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::yield_now();
    }
}

/// Whether `fd` has something to read, without waiting.
pub fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_returns_what_appears_and_gives_up_at_the_deadline() {
        let mut calls = 0;
        let found = until(Instant::now() + Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let never: Option<()> = until(Instant::now() + Duration::from_millis(2), || None);
        assert_eq!(never, None);
    }

    #[test]
    fn readable_sees_bytes_waiting_on_a_socket() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!readable(b.as_raw_fd()));
        a.write_all(b"x").unwrap();
        assert!(readable(b.as_raw_fd()));
    }
}
