//! Where each exposed host path appears in the jail (`/vm/NAME`), and the
//! VMM's arguments rewritten to those places.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::JailSpec;

/// One bind mount into the jail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub host: PathBuf,
    /// Absolute path inside the jail.
    pub inside: PathBuf,
    pub writable: bool,
    pub is_dir: bool,
    /// A private copy owned by the VM's uid rather than a bind mount.
    pub copied: bool,
}

/// Every exposed path's place: `/vm/NAME` by its file name, `/vm/N-NAME`
/// when two share a name; `--ro-path`s keep their own path.
pub fn mappings(spec: &JailSpec) -> Vec<Mapping> {
    let mut taken = HashSet::new();
    let mut out = Vec::new();
    // (paths, writable, is_dir, copied)
    let groups = [
        (&spec.files, false, false, false),
        (&spec.rw_files, true, false, false),
        (&spec.private_files, false, false, true),
        (&spec.dirs, false, true, false),
        (&spec.rw_dirs, true, true, false),
    ];
    for (paths, writable, is_dir, copied) in groups {
        for host in paths {
            let name = host
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into());
            let mut inside = format!("/vm/{name}");
            let mut n = 1;
            while !taken.insert(inside.clone()) {
                inside = format!("/vm/{n}-{name}");
                n += 1;
            }
            out.push(Mapping {
                host: host.clone(),
                inside: inside.into(),
                writable,
                is_dir,
                copied,
            });
        }
    }
    out.extend(spec.ro_paths.iter().map(|p| Mapping {
        host: p.clone(),
        inside: p.clone(),
        writable: false,
        is_dir: p.is_dir(),
        copied: false,
    }));
    out
}

/// The jail path of `value` if it is an exposed path or lies inside an
/// exposed directory.
fn rewrite_path(value: &str, maps: &[Mapping]) -> Option<String> {
    let path = Path::new(value);
    maps.iter().find_map(|m| {
        let rest = path.strip_prefix(&m.host).ok()?;
        if rest.as_os_str().is_empty() {
            return Some(m.inside.display().to_string());
        }
        m.is_dir.then(|| m.inside.join(rest).display().to_string())
    })
}

/// One argument: a bare path, `KEY=PATH,KEY=PATH...` (--disk), or
/// `file:PATH` / `socket:PATH` / `unix:PATH` (--serial, --incoming).
pub fn rewrite_arg(arg: &str, maps: &[Mapping]) -> String {
    if let Some(p) = rewrite_path(arg, maps) {
        return p;
    }
    for prefix in ["file:", "socket:", "unix:"] {
        if let Some(p) = arg.strip_prefix(prefix).and_then(|v| rewrite_path(v, maps)) {
            return format!("{prefix}{p}");
        }
    }
    if !arg.contains('=') {
        return arg.to_string();
    }
    arg.split(',')
        .map(|part| match part.split_once('=') {
            Some((key, value)) => match rewrite_path(value, maps) {
                Some(p) => format!("{key}={p}"),
                None => part.to_string(),
            },
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The VMM's arguments for inside the jail. `--flag=VALUE` forms are split
/// first so the value is rewritten too.
pub fn rewrite_args(args: &[String], maps: &[Mapping]) -> Vec<String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                format!("{flag}={}", rewrite_arg(value, maps))
            }
            _ => rewrite_arg(a, maps),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JailSpec {
        let mut s = JailSpec::new("vm", 1, 1, "/bin/vmm");
        s.files.push("/k/vmlinux".into());
        s.files.push("/other/vmlinux".into());
        s.rw_files.push("/d/disk.raw".into());
        s.private_files.push("/etc/tls/node.key".into());
        s.dirs.push("/images/base".into());
        s.rw_dirs.push("/run/vm".into());
        s
    }

    #[test]
    fn names_are_unique_and_under_vm() {
        let m = mappings(&spec());
        let inside: Vec<_> = m.iter().map(|m| m.inside.display().to_string()).collect();
        assert_eq!(
            inside,
            [
                "/vm/vmlinux",
                "/vm/1-vmlinux",
                "/vm/disk.raw",
                "/vm/node.key",
                "/vm/base",
                "/vm/vm"
            ]
        );
    }

    #[test]
    fn every_path_form_is_rewritten() {
        let m = mappings(&spec());
        let args: Vec<String> = [
            "--kernel",
            "/k/vmlinux",
            "--disk",
            "path=/d/disk.raw,format=raw,backing-dir=/images/base",
            "--disk=path=/images/base/sub/b.qcow2,readonly=on",
            "--serial=socket:/run/vm/console.sock",
            "--api-socket",
            "/run/vm/api.sock",
            "--cmdline",
            "console=ttyS0 root=/dev/vda",
            "--tls-key",
            "/etc/tls/node.key",
            "/d/disk.raw2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            rewrite_args(&args, &m),
            [
                "--kernel",
                "/vm/vmlinux",
                "--disk",
                "path=/vm/disk.raw,format=raw,backing-dir=/vm/base",
                "--disk=path=/vm/base/sub/b.qcow2,readonly=on",
                "--serial=socket:/vm/vm/console.sock",
                "--api-socket",
                "/vm/vm/api.sock",
                "--cmdline",
                "console=ttyS0 root=/dev/vda",
                "--tls-key",
                "/vm/node.key",
                // Not a file that was exposed: left alone (and unreachable).
                "/d/disk.raw2",
            ]
        );
    }
}
