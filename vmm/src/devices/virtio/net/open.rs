//! From a `--net` configuration to a device: open the backend, pick the MAC.

use std::io;
use std::sync::Arc;

use super::tap::Tap;
use super::{Net, DEFAULT_MTU};
use crate::config::{NetBackendConfig, NetConfig};

/// Opens the backend `config` names; fails (with the interface named) before
/// any guest-visible state exists.
pub fn open(config: &NetConfig) -> io::Result<Net> {
    let (what, tap) = match &config.backend {
        NetBackendConfig::Tap(name) => (format!("tap '{name}'"), Tap::open_named(name)),
        NetBackendConfig::Macvtap(name) => (format!("macvtap '{name}'"), Tap::open_macvtap(name)),
        NetBackendConfig::Fd(fd) => (format!("tap fd {fd}"), Tap::from_fd(*fd)),
    };
    let tap = tap.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    let mac = match config.mac {
        Some(m) => m.0,
        None => random_local_mac()?,
    };
    Ok(Net::new(
        Arc::new(tap),
        mac,
        config.mtu.unwrap_or(DEFAULT_MTU),
    ))
}

/// A random unicast, locally administered address (first byte 0x02 bit set,
/// 0x01 bit clear), so two VMs on one bridge do not collide.
fn random_local_mac() -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom fills the 6 bytes we own.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        return Err(io::Error::last_os_error());
    }
    mac[0] = (mac[0] & 0xfc) | 0x02;
    Ok(mac)
}
