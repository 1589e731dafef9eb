//! QEMU's own `qemu-img` as the judge of the disk images the tests write:
//! it makes reference images, checks them and reads them back as raw bytes.

use std::path::Path;
use std::process::{Command, Output};

use crate::run_ok;

/// A path as one argument (the scratch paths are UTF-8).
pub fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img ARGS`, which must succeed.
pub fn qemu_img(args: &[&str]) -> Output {
    run_ok(Command::new("qemu-img").args(args))
}

/// `qemu-img create -q -f FORMAT OPTS IMG [SIZE]`.
pub fn create(format: &str, img: &Path, opts: &[&str], size: Option<&str>) {
    let mut args = vec!["create", "-q", "-f", format];
    args.extend(opts);
    args.push(arg(img));
    args.extend(size);
    qemu_img(&args);
}

/// `qemu-img check` finds no errors and no leaks.
pub fn check_clean(img: &Path) {
    let out = qemu_img(&["check", "-f", "qcow2", arg(img)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No errors were found"), "{text}");
}

/// The guest-visible bytes of the qcow2 `img`, as `qemu-img convert` reads
/// them (through `raw`, a scratch file it overwrites).
pub fn read_as_raw(img: &Path, raw: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(raw);
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", arg(img), arg(raw)]);
    std::fs::read(raw).unwrap()
}
