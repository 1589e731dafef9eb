//! The migration wire protocol: frames of `[kind u8][length u32 LE][payload]`.
//! Control messages carry JSON, the VM state bincode (`snapshot::binary`);
//! memory pages and disk blocks are binary,
//! batched (a frame is at most `MAX_FRAME` bytes, checked before reading).
//!
//! Source → destination: Hello, then Pages/Disk frames (pass after pass),
//! Closing, the last Pages/Disk frames, State, Commit (or Cancel); after
//! Running, the frames that reached the
//! source's NICs meanwhile (`Forwarded`, one each) and `ForwardedEnd`.
//! Destination → source: Ack after Hello (or Error), Drained after Closing,
//! Ready after State,
//! Running once the VM runs there (its payload: when it resumed, in
//! nanoseconds since the Unix epoch, u64 LE; empty from older VMMs).

use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::DiskMode;
use crate::config::VmConfig;

/// Bumped when a frame's meaning changes; both sides must agree.
/// 2: the State frame is bincode, not JSON.
/// 3: Closing and Drained before the switch-over.
pub const VERSION: u32 = 3;
/// A frame up to this size goes in one write: the peer, woken by the first
/// bytes, then finds it whole instead of sleeping again for the rest.
const ONE_WRITE: usize = 64 << 10;
/// Largest payload accepted: a batch of pages or blocks (~1 MiB), or the
/// state of a VM with many vCPUs.
pub const MAX_FRAME: usize = 16 << 20;
pub const PAGE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Ack = 2,
    Error = 3,
    Pages = 4,
    Disk = 5,
    State = 6,
    Ready = 7,
    Commit = 8,
    Running = 9,
    Cancel = 10,
    /// `[nic u8][frame with its vnet header]`.
    Forwarded = 11,
    ForwardedEnd = 12,
    /// The source pauses next: the destination answers Drained once it
    /// has landed every frame before this one, then waits for the
    /// switch-over's frames awake (`spin`).
    Closing = 13,
    Drained = 14,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        use Kind::*;
        [
            Hello,
            Ack,
            Error,
            Pages,
            Disk,
            State,
            Ready,
            Commit,
            Running,
            Cancel,
            Forwarded,
            ForwardedEnd,
            Closing,
            Drained,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// What the source says first: enough for the destination to check it can
/// take the VM and to set up its memory and disks.
#[derive(Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub arch: String,
    pub config: VmConfig,
    /// (guest address, length) of each RAM region.
    pub memory: Vec<(u64, u64)>,
    pub disks: DiskMode,
    /// Virtual size of each disk, in bytes.
    pub disk_sizes: Vec<u64>,
}

pub fn write_frame(w: &mut (impl Write + ?Sized), kind: Kind, payload: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    if payload.len() <= ONE_WRITE {
        let mut frame = Vec::with_capacity(head.len() + payload.len());
        frame.extend_from_slice(&head);
        frame.extend_from_slice(payload);
        return w.write_all(&frame);
    }
    w.write_all(&head)?;
    w.write_all(payload)
}

pub fn write_json<T: Serialize>(
    w: &mut (impl Write + ?Sized),
    kind: Kind,
    value: &T,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(w, kind, &bytes)
}

/// Reads one frame; a kind or length that cannot be right is an error
/// before any of the payload is read.
pub fn read_frame(r: &mut (impl Read + ?Sized)) -> io::Result<(Kind, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let kind =
        Kind::from_byte(head[0]).ok_or_else(|| bad(format!("unknown frame kind {}", head[0])))?;
    let len = u32::from_le_bytes(head[1..].try_into().unwrap()) as usize;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes is over the limit")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok((kind, payload))
}

pub fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Reads a frame that must be `want`; an Error frame is its message.
pub fn expect(r: &mut (impl Read + ?Sized), want: Kind) -> io::Result<Vec<u8>> {
    match read_frame(r)? {
        (kind, payload) if kind == want => Ok(payload),
        (Kind::Error, payload) => Err(io::Error::other(format!(
            "the other side: {}",
            String::from_utf8_lossy(&payload)
        ))),
        (kind, _) => Err(bad(format!("expected {want:?}, got {kind:?}"))),
    }
}

/// A Running frame's payload: the wall-clock time the guest resumed.
pub fn encode_wall_time(at: SystemTime) -> [u8; 8] {
    let nanos = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).to_le_bytes()
}

/// The time in a Running frame's payload, if it holds one.
pub fn decode_wall_time(payload: &[u8]) -> Option<SystemTime> {
    let nanos = u64::from_le_bytes(payload.try_into().ok()?);
    UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
}

/// One page in a Pages frame: `[region u8][page u64][kind u8][4096 bytes if data]`.
pub enum PageData<'a> {
    Zero,
    Data(&'a [u8]),
}

/// Appends a page record to a Pages payload.
pub fn push_page(out: &mut Vec<u8>, region: u8, page: u64, data: PageData) {
    out.push(region);
    out.extend_from_slice(&page.to_le_bytes());
    match data {
        PageData::Zero => out.push(0),
        PageData::Data(bytes) => {
            out.push(1);
            out.extend_from_slice(bytes);
        }
    }
}

/// Walks the records of a Pages payload.
pub fn for_each_page(
    payload: &[u8],
    mut each: impl FnMut(u8, u64, PageData) -> io::Result<()>,
) -> io::Result<()> {
    let mut at = 0;
    while at < payload.len() {
        let head = payload
            .get(at..at + 10)
            .ok_or_else(|| bad("a page record is cut short".into()))?;
        let page = u64::from_le_bytes(head[1..9].try_into().unwrap());
        at += 10;
        let data = match head[9] {
            0 => PageData::Zero,
            1 => {
                let bytes = payload
                    .get(at..at + PAGE)
                    .ok_or_else(|| bad("a page's data is cut short".into()))?;
                at += PAGE;
                PageData::Data(bytes)
            }
            k => return Err(bad(format!("unknown page record kind {k}"))),
        };
        each(head[0], page, data)?;
    }
    Ok(())
}

/// One disk block record: `[disk u8][offset u64][len u32][kind u8][data if kind 1]`.
pub fn push_block(out: &mut Vec<u8>, disk: u8, offset: u64, data: PageData, len: u32) {
    out.push(disk);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    match data {
        PageData::Zero => out.push(0),
        PageData::Data(bytes) => {
            out.push(1);
            out.extend_from_slice(bytes);
        }
    }
}

pub fn for_each_block(
    payload: &[u8],
    mut each: impl FnMut(u8, u64, u32, PageData) -> io::Result<()>,
) -> io::Result<()> {
    let mut at = 0;
    while at < payload.len() {
        let head = payload
            .get(at..at + 14)
            .ok_or_else(|| bad("a block record is cut short".into()))?;
        let offset = u64::from_le_bytes(head[1..9].try_into().unwrap());
        let len = u32::from_le_bytes(head[9..13].try_into().unwrap());
        at += 14;
        let data = match head[13] {
            0 => PageData::Zero,
            1 => {
                let bytes = payload
                    .get(at..at + len as usize)
                    .ok_or_else(|| bad("a block's data is cut short".into()))?;
                at += len as usize;
                PageData::Data(bytes)
            }
            k => return Err(bad(format!("unknown block record kind {k}"))),
        };
        each(head[0], offset, len, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_frame_carries_the_resume_time_or_nothing() {
        let at = UNIX_EPOCH + Duration::from_nanos(1_764_950_400_123_456_789);
        assert_eq!(decode_wall_time(&encode_wall_time(at)), Some(at));
        assert_eq!(decode_wall_time(&[]), None);
        assert_eq!(decode_wall_time(&[1, 2, 3]), None);
    }

    #[test]
    fn frames_and_records_round_trip() {
        let mut payload = Vec::new();
        let data = vec![7u8; PAGE];
        push_page(&mut payload, 1, 42, PageData::Data(&data));
        push_page(&mut payload, 0, 3, PageData::Zero);
        let mut wire = Vec::new();
        write_frame(&mut wire, Kind::Pages, &payload).unwrap();
        let (kind, back) = read_frame(&mut &wire[..]).unwrap();
        assert_eq!(kind, Kind::Pages);
        let mut seen = Vec::new();
        for_each_page(&back, |r, p, d| {
            seen.push((r, p, matches!(d, PageData::Data(b) if b == &data[..])));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(1, 42, true), (0, 3, false)]);
    }

    #[test]
    fn hostile_frames_are_errors_not_allocations() {
        // A length over the limit is refused before any payload is read.
        let mut huge = vec![Kind::Pages as u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_frame(&mut &huge[..]).is_err());
        assert!(read_frame(&mut &[99u8, 0, 0, 0, 0][..]).is_err());
        // Records cut short or of unknown kinds.
        assert!(for_each_page(&[0, 1, 2], |_, _, _| Ok(())).is_err());
        let mut rec = Vec::new();
        push_page(&mut rec, 0, 1, PageData::Zero);
        rec[9] = 5;
        assert!(for_each_page(&rec, |_, _, _| Ok(())).is_err());
        rec[9] = 1;
        assert!(for_each_page(&rec, |_, _, _| Ok(())).is_err());
        assert!(for_each_block(&[0; 13], |_, _, _, _| Ok(())).is_err());
    }
}
