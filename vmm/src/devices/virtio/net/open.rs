//! From a `--net` configuration to what a device is built on: the opened
//! backend and the guest's MAC. Opened once per VMM process and reused by
//! every boot of the VM (a passed fd can only be taken over once, and the
//! guest's NIC must keep its address across reboots).

use std::io;
use std::sync::Arc;

use super::tap::{NetBackend, Tap};
use super::{Net, DEFAULT_MTU};
use crate::config::{NetBackendConfig, NetConfig};

/// A network backend opened for one `--net`, ready for each boot's device.
pub struct NetPort {
    pub tap: Arc<dyn NetBackend>,
    pub mac: [u8; 6],
    pub mtu: u16,
    /// `id=`, if given.
    pub id: Option<String>,
}

impl NetPort {
    /// A fresh device for one boot of the VM, on this port's backend.
    pub fn device(&self) -> Net {
        Net::new(self.tap.clone(), self.mac, self.mtu)
    }
}

/// Opens the backend `config` names (the `index`-th `--net`); fails, with
/// the interface named, before any guest-visible state exists.
pub fn open(config: &NetConfig, index: usize) -> io::Result<NetPort> {
    let (what, tap) = match &config.backend {
        NetBackendConfig::Tap(name) => (format!("tap '{name}'"), Tap::open_named(name)),
        NetBackendConfig::Macvtap(name) => (format!("macvtap '{name}'"), Tap::open_macvtap(name)),
        NetBackendConfig::Fd(fd) => (format!("tap fd {fd}"), Tap::from_fd(*fd)),
    };
    let tap = tap.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    let mac = match (config.mac, &config.backend) {
        (Some(m), _) => m.0,
        // A macvtap passes up only frames for its own address.
        (None, NetBackendConfig::Macvtap(name)) => link_mac(name)?,
        (None, backend) => stable_local_mac(backend, index),
    };
    Ok(NetPort {
        tap: Arc::new(tap),
        mac,
        mtu: config.mtu.unwrap_or(DEFAULT_MTU),
        id: config.id.clone(),
    })
}

/// The address of link `name`, from sysfs.
fn link_mac(name: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        let part = parts.next().unwrap_or("");
        *b = u8::from_str_radix(part, 16)
            .map_err(|_| io::Error::other(format!("unreadable address of '{name}': {text}")))?;
    }
    Ok(mac)
}

/// The default MAC of a tap or fd backend: `02` (unicast, locally
/// administered) followed by five bytes of the FNV-1a hash of the backend
/// (`tap=NAME` or `fd=N`) and the device's index. The same flags give the
/// same address on every boot and every run, so a guest keeps its DHCP
/// lease; two VMs on different taps get different addresses. (FNV-1a
/// because its output is fixed by its definition, unlike std's hasher.)
pub fn stable_local_mac(backend: &NetBackendConfig, index: usize) -> [u8; 6] {
    let key = match backend {
        NetBackendConfig::Tap(name) => format!("tap={name}/{index}"),
        NetBackendConfig::Macvtap(name) => format!("macvtap={name}/{index}"),
        NetBackendConfig::Fd(fd) => format!("fd={fd}/{index}"),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let h = hash.to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mac_is_stable_unicast_local_and_differs_per_backend() {
        let tap0 = NetBackendConfig::Tap("vtap0".into());
        let a = stable_local_mac(&tap0, 0);
        assert_eq!(a, stable_local_mac(&tap0, 0));
        assert_eq!(a[0], 0x02);
        assert_ne!(a, stable_local_mac(&tap0, 1));
        assert_ne!(
            a,
            stable_local_mac(&NetBackendConfig::Tap("vtap1".into()), 0)
        );
        assert_ne!(a, stable_local_mac(&NetBackendConfig::Fd(3), 0));
        // Fixed by FNV-1a's definition (computed apart from this code): a
        // change here would change every user's guest MAC.
        assert_eq!(a, [0x02, 0x80, 0xf4, 0x0a, 0xf4, 0x70]);
    }
}
