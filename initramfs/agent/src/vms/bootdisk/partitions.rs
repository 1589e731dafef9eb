//! The disk's partitions: GPT (gptman), MBR with logical partitions
//! (mbrman), or none (the whole disk is one file system). Each comes with
//! the PARTUUID Linux gives it, which names the root without an initrd.

use super::image::View;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based as Linux counts (vda1); 0 for a disk without a table.
    pub number: u32,
    pub start: u64,
    pub len: u64,
    /// GPT: the unique partition GUID; MBR: `SIGNATURE-NN`.
    pub partuuid: Option<String>,
}

/// Every partition of the disk in `view`, in table order.
pub fn find(view: &View) -> Result<Vec<Partition>, String> {
    let mut sector = [0u8; 512];
    view.read_exact_at(&mut sector, 0)
        .map_err(|e| format!("cannot read the first sector: {e}"))?;
    let whole = || {
        vec![Partition {
            number: 0,
            start: 0,
            len: view.len(),
            partuuid: None,
        }]
    };
    if sector[510..512] != [0x55, 0xaa] || looks_like_fat_boot_sector(&sector) {
        return Ok(whole());
    }
    let protective = (0..4).any(|i| sector[446 + 16 * i + 4] == 0xee);
    if protective {
        return gpt(view);
    }
    mbr(view)
}

/// A FAT volume's boot sector also ends in 55 AA; its jump and file
/// system type string tell it from an MBR.
fn looks_like_fat_boot_sector(s: &[u8; 512]) -> bool {
    let jump = s[0] == 0xeb || s[0] == 0xe9;
    jump && (&s[0x36..0x39] == b"FAT" || &s[0x52..0x55] == b"FAT")
}

fn gpt(view: &View) -> Result<Vec<Partition>, String> {
    let mut reader = view.clone();
    let table = gptman::GPT::find_from(&mut reader)
        .map_err(|e| format!("the GPT partition table cannot be read: {e}"))?;
    let sector = table.sector_size;
    let mut out = Vec::new();
    for (number, entry) in table.iter() {
        if !entry.is_used() {
            continue;
        }
        let start = entry.starting_lba * sector;
        let len = (entry.ending_lba + 1 - entry.starting_lba) * sector;
        if start.saturating_add(len) > view.len() {
            return Err(format!("GPT partition {number} lies beyond the disk's end"));
        }
        out.push(Partition {
            number,
            start,
            len,
            partuuid: Some(guid_string(&entry.unique_partition_guid)),
        });
    }
    Ok(out)
}

fn mbr(view: &View) -> Result<Vec<Partition>, String> {
    let mut reader = view.clone();
    let table = mbrman::MBR::read_from(&mut reader, 512)
        .map_err(|e| format!("the MBR partition table cannot be read: {e}"))?;
    let signature = u32::from_le_bytes(table.header.disk_signature);
    let mut out = Vec::new();
    // Numbered 1-4 for primary partitions, 5 on for logical ones (whose
    // start mbrman has already made absolute), as Linux numbers them.
    for (number, entry) in table.iter() {
        if !entry.is_used() || entry.is_extended() {
            continue;
        }
        let p = mbr_partition(
            view,
            number as u32,
            entry.starting_lba,
            entry.sectors,
            signature,
        )?;
        out.push(p);
    }
    Ok(out)
}

fn mbr_partition(
    view: &View,
    number: u32,
    lba: u32,
    sectors: u32,
    signature: u32,
) -> Result<Partition, String> {
    let (start, len) = (u64::from(lba) * 512, u64::from(sectors) * 512);
    if start.saturating_add(len) > view.len() {
        return Err(format!("MBR partition {number} lies beyond the disk's end"));
    }
    Ok(Partition {
        number,
        start,
        len,
        partuuid: Some(format!("{signature:08x}-{number:02x}")),
    })
}

/// A GUID as text: the first three fields are stored little-endian.
fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_read_mixed_endian() {
        // C12A7328-F81F-11D2-BA4B-00A0C93EC93B (the ESP type) as stored.
        let stored = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&stored), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }
}
