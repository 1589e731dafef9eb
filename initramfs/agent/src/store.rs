//! The agent's state on disk (VIREO-DATA, or a directory given on the
//! command line): JSON files written so that a crash or power loss leaves
//! either the old or the new file, never half of one (write a temporary
//! file, fsync it, rename it over, fsync the directory).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where the agent keeps what outlives it.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Persistent state (VM definitions, pools, networks, ...).
    pub state: PathBuf,
    /// Runtime files: VMM sockets, pid files (tmpfs on the appliance).
    pub run: PathBuf,
}

impl Paths {
    pub fn new(state: PathBuf, run: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&state)?;
        fs::create_dir_all(&run)?;
        Ok(Self { state, run })
    }
}

/// Writes `value` as pretty JSON at `path`, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    // The rename itself must survive a power loss too.
    File::open(dir)?.sync_all()
}

/// Reads the JSON at `path`; None if there is no such file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_json_reads_back_and_a_missing_file_is_none() {
        let dir = std::env::temp_dir().join(format!("vireo-store-{}", std::process::id()));
        let path = dir.join("sub/thing.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        assert!(!path.with_extension("json.tmp").exists());
        assert_eq!(read_json::<Vec<u32>>(&dir.join("none.json")).unwrap(), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read_json::<Vec<u32>>(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
