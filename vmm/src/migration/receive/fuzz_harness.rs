//! Fuzz harness (feature `fuzz`): a migration stream as the destination
//! reads it — the hello, then page and disk frames landed in guest RAM
//! and a copied disk, then the VM state (the snapshot decoder).

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use vm_memory::GuestAddress;

use super::{check_hello, receive_passes};
use crate::builder::Overrides;
use crate::devices::virtio::block::disk::{self, DiskFormat, OpenOptions};
use crate::fuzz::memfd;
use crate::memory::GuestRam;
use crate::migration::protocol::{self, Hello, Kind};
use crate::migration::transport::Channel;

/// The fuzzer's bytes as what the source sent; what we send is dropped.
struct Replay(Cursor<Vec<u8>>);

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Channel for Replay {
    fn set_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// The whole input is the stream from the source.
pub fn stream(data: &[u8]) {
    let mut ch = Replay(Cursor::new(data.to_vec()));
    if let Ok(payload) = protocol::expect(&mut ch, Kind::Hello) {
        if let Ok(hello) = serde_json::from_slice::<Hello>(&payload) {
            let _ = check_hello(&hello, Overrides::default());
        }
    }
    let ram = GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("RAM");
    let copy = memfd::file(b"", 1 << 20);
    let opts = OpenOptions {
        format: DiskFormat::Raw,
        readonly: false,
        direct: false,
        backing_dirs: Vec::new(),
    };
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&copy));
    let mut copies = disk::open(std::path::Path::new(&path), opts)
        .map(|d| vec![d])
        .unwrap_or_default();
    let _ = receive_passes(&mut ch, &ram, &mut copies, &mut super::SwitchTimes::new());
}
