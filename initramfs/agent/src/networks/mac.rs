//! Guest MAC addresses: parsed, printed, and derived from the VM's UUID and
//! the NIC's index, so a VM keeps its MAC (and so its DHCP lease) from one
//! start to the next without storing it.

use sha2::{Digest, Sha256};

pub type Mac = [u8; 6];

/// `02:00:00:00:00:01` → bytes; a multicast address is refused.
pub fn parse(text: &str) -> Result<Mac, String> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .filter(|p| p.len() == 2)
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| format!("mac '{text}': use six hex pairs, 02:00:00:00:00:01"))?;
    }
    if parts.next().is_some() {
        return Err(format!(
            "mac '{text}': use six hex pairs, 02:00:00:00:00:01"
        ));
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "mac '{text}': a multicast address cannot be a NIC's"
        ));
    }
    Ok(mac)
}

pub fn format(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A locally administered unicast MAC from a hash of the VM's UUID and the
/// NIC's index; `salt` picks another one when the first collides.
pub fn derive(uuid: &str, index: usize, salt: u32) -> Mac {
    let digest = Sha256::digest(format!("{uuid}/{index}/{salt}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    // Locally administered (bit 1), unicast (bit 0 clear).
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_macs_are_stable_local_unicast_and_differ_per_nic() {
        let a = derive("7f0c0d7e-1111-4c3a-9a55-000000000001", 0, 0);
        assert_eq!(a, derive("7f0c0d7e-1111-4c3a-9a55-000000000001", 0, 0));
        assert_ne!(a, derive("7f0c0d7e-1111-4c3a-9a55-000000000001", 1, 0));
        assert_eq!(a[0] & 3, 2);
        assert_eq!(parse(&format(&a)), Ok(a));
        assert!(parse("03:00:00:00:00:01").is_err());
        assert!(parse("02:00:00:00:00").is_err());
        assert!(parse("02:00:00:00:00:01:02").is_err());
    }
}
