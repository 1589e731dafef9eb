//! Whether a kernel found on a disk can see vireo-vmm's disks at all.
//!
//! vireo-vmm describes its virtio-mmio devices twice: on the kernel command
//! line (`virtio_mmio.device=...`, read by kernels built with
//! `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`) and, on x86_64, in the ACPI DSDT
//! (read by kernels with `CONFIG_ACPI`, which is how distribution kernels
//! such as Debian's find them). A kernel with neither, or without the
//! virtio-mmio driver, sees no disk and its initramfs waits for the root
//! device until it gives up, minutes of silence under nested
//! virtualisation. When the disk carries the kernel's config
//! (`/boot/config-RELEASE`, as Debian, Ubuntu and Fedora install it), the
//! agent reads it and refuses the start with the reason instead.

use super::fs::BootFs;

const MAX_CONFIG: u64 = 4 << 20;
const CMDLINE_DEVICES: &str = "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES";

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
    let set = |option: &str, values: &[&str]| {
        config.lines().any(|l| {
            l.trim()
                .split_once('=')
                .is_some_and(|(k, v)| k == option && values.contains(&v))
        })
    };
    let cannot = |why: &str| {
        Err(format!(
            "kernel {release} cannot see this VM's disks: its config ({path}) {why}, so the guest \
             would wait for its root device forever"
        ))
    };
    if !set("CONFIG_VIRTIO_MMIO", &["y", "m"]) {
        return cannot("lacks CONFIG_VIRTIO_MMIO (the virtio-mmio driver)");
    }
    if !set("CONFIG_ACPI", &["y"]) && !set(CMDLINE_DEVICES, &["y"]) {
        return cannot(&format!(
            "has neither CONFIG_ACPI=y (vireo-vmm's DSDT lists the disks) nor {CMDLINE_DEVICES}=y \
             (the kernel command line lists them)"
        ));
    }
    Ok(())
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
        let path = "/boot/config-6.1.0-50-amd64";
        let debian = "CONFIG_ACPI=y\nCONFIG_VIRTIO_MMIO=m\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n";
        assert_eq!(check_text(debian, "6.1.0-50-amd64", path), Ok(()));
        let minimal = "# CONFIG_ACPI is not set\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n";
        assert_eq!(check_text(minimal, "6.1", path), Ok(()));
        let blind = "# CONFIG_ACPI is not set\nCONFIG_VIRTIO_MMIO=m\n";
        let err = check_text(blind, "6.1.0-50-amd64", path).unwrap_err();
        assert!(err.contains("neither CONFIG_ACPI=y"), "{err}");
        assert!(err.contains(path), "{err}");
        let no_driver = "CONFIG_ACPI=y\n# CONFIG_VIRTIO_MMIO is not set\n";
        let err = check_text(no_driver, "6.1", path).unwrap_err();
        assert!(err.contains("lacks CONFIG_VIRTIO_MMIO"), "{err}");
    }
}
