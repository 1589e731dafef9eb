//! Whether a kernel found on a disk can see vireo-vmm's disks at all.
//!
//! vireo-vmm announces its virtio-mmio devices on the kernel command line
//! (`virtio_mmio.device=...`) and has no ACPI tables yet. A kernel built
//! without `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` ignores those words
//! ("virtio_mmio: unknown parameter 'device' ignored"), sees no disk, and
//! its initramfs waits for the root device until it gives up, minutes of
//! silence under nested virtualisation. Debian's stock kernels (generic and
//! cloud) are built that way. When the disk carries the kernel's config
//! (`/boot/config-RELEASE`, as Debian, Ubuntu and Fedora install it), the
//! agent reads it and refuses the start with the reason instead.

use super::fs::BootFs;

const MAX_CONFIG: u64 = 4 << 20;
const OPTION: &str = "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES";

/// The kernel release (`uname -r`) of a bzImage: the first word of the
/// version string its setup header points to (boot protocol 2.00+).
pub fn release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    if offset == 0 {
        return None;
    }
    let text = image.get(offset + 0x200..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let word = std::str::from_utf8(&text[..end]).ok()?;
    (!word.is_empty()).then(|| word.to_string())
}

/// `Err(reason)` when the kernel `release`'s config on `f` (in /boot or
/// at the top of a separate /boot) says it cannot see virtio-mmio devices
/// given on the command line; `Ok` when it can, or when there is no config.
pub fn check(f: &dyn BootFs, release: &str) -> Result<(), String> {
    for path in [
        format!("/boot/config-{release}"),
        format!("/config-{release}"),
    ] {
        let Ok(text) = f.read(&path, MAX_CONFIG) else {
            continue;
        };
        return check_text(&String::from_utf8_lossy(&text), release, &path);
    }
    Ok(())
}

fn check_text(config: &str, release: &str, path: &str) -> Result<(), String> {
    let enabled = config.lines().any(|l| l.trim() == format!("{OPTION}=y"));
    match enabled {
        true => Ok(()),
        false => Err(format!(
            "kernel {release} cannot see this VM's disks: its config ({path}) lacks {OPTION}=y, \
             and vireo-vmm describes its virtio-mmio disks only on the kernel command line \
             (no ACPI tables yet), so the guest would wait for its root device forever; \
             boot a kernel built with {OPTION}=y (Debian's stock kernels are not)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage_header(version: &str) -> Vec<u8> {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        let at = 0x300usize;
        image[0x20e..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        image[at..at + version.len()].copy_from_slice(version.as_bytes());
        image
    }

    #[test]
    fn release_from_the_setup_header() {
        let image = bzimage_header("6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP");
        assert_eq!(release(&image).as_deref(), Some("6.1.0-50-amd64"));
        assert_eq!(release(&[0u8; 0x400]), None, "no HdrS: not a bzImage");
        assert_eq!(release(b"short"), None);
    }

    #[test]
    fn config_decides() {
        let debian = "CONFIG_VIRTIO_MMIO=m\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n";
        let err = check_text(debian, "6.1.0-50-amd64", "/boot/config-6.1.0-50-amd64").unwrap_err();
        assert!(
            err.contains("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y"),
            "{err}"
        );
        assert!(err.contains("/boot/config-6.1.0-50-amd64"), "{err}");
        let good = "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n";
        assert_eq!(check_text(good, "6.1", "/boot/config-6.1"), Ok(()));
    }
}
