//! Frames that reach the source's NICs after the switch-over's pause.
//!
//! Until the bridges have learnt the guest's new port (the destination's
//! RARP frames), frames for the guest keep arriving at the source's tap,
//! where no one reads them any more: each would be a lost packet. So once
//! the destination runs the VM, the source reads its taps — first what
//! queued there while the VM was paused, then, until they fall quiet, what
//! is still addressed to the guest — and sends the frames on in the
//! migration stream; the destination puts them in its NICs' inboxes, and
//! the guest receives them a few milliseconds late instead of never.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::protocol::{self, Kind};
use super::transport::Channel;
use crate::devices::virtio::net::inbox::Inbox;
use crate::devices::virtio::net::tap::{NetBackend, VNET_HDR_LEN};

/// The taps fall quiet — nothing for the guest this long — once the
/// bridges send its frames to the destination (pings every 10 ms stop
/// arriving within a few). Generous: on a starved host the destination's
/// RARP frames, and the peers' own frames, can come hundreds of
/// milliseconds late, and a frame after the source has gone is lost.
const QUIET: Duration = Duration::from_millis(500);
/// Forwarding ends after this whatever arrives.
const LONGEST: Duration = Duration::from_secs(5);
/// The largest frame a tap hands over, with room to spot a longer one.
const BUFFER: usize = 65535 + 64;

/// One of the source's NICs.
pub struct SourceNic {
    pub tap: Arc<dyn NetBackend>,
    pub mac: [u8; 6],
}

/// Source, once the destination runs the VM: forwards what waited and
/// what still comes; returns how many frames went.
pub fn send(ch: &mut dyn Channel, nics: &[SourceNic]) -> io::Result<u64> {
    if nics.is_empty() {
        return Ok(0);
    }
    let mut sent = 0;
    let mut buf = vec![0u8; BUFFER];
    // Everything that waited, broadcasts included: the destination's tap
    // may not have been open yet to get its own copy.
    for (n, nic) in nics.iter().enumerate() {
        while let Some(frame) = nic.tap.inbox().and_then(Inbox::pop) {
            send_one(ch, n, &frame)?;
            sent += 1;
        }
        while let Some(len) = read_frame(nic, &mut buf) {
            send_one(ch, n, &buf[..len])?;
            sent += 1;
        }
    }
    // Then what is still addressed to the guest, until that stops.
    let started = Instant::now();
    let mut last = started;
    while last.elapsed() < QUIET && started.elapsed() < LONGEST {
        wait_readable(nics, QUIET.saturating_sub(last.elapsed()));
        for (n, nic) in nics.iter().enumerate() {
            while let Some(len) = read_frame(nic, &mut buf) {
                let frame = &buf[..len];
                if frame[VNET_HDR_LEN..VNET_HDR_LEN + 6] == nic.mac {
                    send_one(ch, n, frame)?;
                    sent += 1;
                    last = Instant::now();
                }
            }
        }
    }
    protocol::write_frame(ch, Kind::ForwardedEnd, &[])?;
    Ok(sent)
}

fn send_one(ch: &mut dyn Channel, nic: usize, frame: &[u8]) -> io::Result<()> {
    let mut payload = Vec::with_capacity(1 + frame.len());
    payload.push(nic as u8);
    payload.extend_from_slice(frame);
    protocol::write_frame(ch, Kind::Forwarded, &payload)
}

/// The next frame on `nic`'s tap (its length in `buf`), if one is there.
fn read_frame(nic: &SourceNic, buf: &mut [u8]) -> Option<usize> {
    loop {
        match nic.tap.file().read(buf) {
            Ok(n) if n >= VNET_HDR_LEN + 14 && n < buf.len() => return Some(n),
            Ok(0) => return None,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn wait_readable(nics: &[SourceNic], timeout: Duration) {
    let mut fds: Vec<libc::pollfd> = nics
        .iter()
        .map(|nic| libc::pollfd {
            fd: nic.tap.file().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `fds` is a live array of pollfd of the length given.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

/// How long the destination waits for the source's next forwarded frame.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(8);

/// Destination, once the VM runs: puts the frames the source forwards into
/// the NICs' inboxes until it says it is done, goes quiet or hangs up.
/// The channel's timeout is `RECEIVE_TIMEOUT` (set by the caller: this
/// thread's seccomp filter has no setsockopt).
pub fn receive(mut ch: Box<dyn Channel>, taps: Vec<Arc<dyn NetBackend>>) {
    while let Ok((Kind::Forwarded, payload)) = protocol::read_frame(&mut *ch) {
        let Some((&nic, frame)) = payload.split_first() else {
            continue;
        };
        if let Some(inbox) = taps.get(usize::from(nic)).and_then(|t| t.inbox()) {
            // A frame that cannot be one, or a full inbox: dropped, as a
            // full tap queue would drop it.
            inbox.push(frame.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::FromRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// A socket pair (frame boundaries kept, as a tap's) with an inbox.
    struct PairTap {
        file: File,
        inbox: Inbox,
    }

    impl NetBackend for PairTap {
        fn file(&self) -> &File {
            &self.file
        }
        fn set_offload(&self, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn inbox(&self) -> Option<&Inbox> {
            Some(&self.inbox)
        }
    }

    /// The VMM's end as a tap, and the wire's end.
    fn tap() -> (Arc<PairTap>, File) {
        let mut fds = [0; 2];
        let kind = libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK;
        // SAFETY: fills two fds we then own.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) },
            0
        );
        // SAFETY: both fds are fresh and owned here.
        let (ours, wire) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let inbox = Inbox::new().unwrap();
        (Arc::new(PairTap { file: ours, inbox }), wire)
    }

    fn frame(to: [u8; 6], n: u8) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend_from_slice(&to);
        f.extend_from_slice(&[n; 54]);
        f
    }

    #[test]
    fn late_frames_reach_the_destinations_inbox_in_order() {
        const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
        let (src_tap, mut src_wire) = tap();
        let (dst_tap, _dst_wire) = tap();
        // Queued while the VM was paused: all of them go, broadcasts too.
        src_wire.write_all(&frame(MAC, 1)).unwrap();
        src_wire.write_all(&frame([0xff; 6], 2)).unwrap();
        let (mut src_ch, dst_ch) = UnixStream::pair().unwrap();
        dst_ch.set_timeout(RECEIVE_TIMEOUT).unwrap();
        let taps: Vec<Arc<dyn NetBackend>> = vec![dst_tap.clone()];
        let receiver = std::thread::spawn(move || receive(Box::new(dst_ch), taps));
        // Arriving while the source lingers: only the guest's go.
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            src_wire.write_all(&frame([0xff; 6], 3)).unwrap();
            src_wire.write_all(&frame(MAC, 4)).unwrap();
            src_wire
        });
        let nics = [SourceNic {
            tap: src_tap,
            mac: MAC,
        }];
        let started = Instant::now();
        assert_eq!(send(&mut src_ch, &nics).unwrap(), 3);
        assert!(started.elapsed() >= QUIET, "lingers until quiet");
        let _wire = late.join().unwrap();
        receiver.join().unwrap();
        let inbox = dst_tap.inbox().unwrap();
        assert_eq!(inbox.pop(), Some(frame(MAC, 1)));
        assert_eq!(inbox.pop(), Some(frame([0xff; 6], 2)));
        assert_eq!(inbox.pop(), Some(frame(MAC, 4)));
        assert_eq!(inbox.pop(), None);
    }
}
