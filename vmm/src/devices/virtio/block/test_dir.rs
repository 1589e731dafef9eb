//! A scratch directory for the disk tests, removed when dropped.

use std::path::PathBuf;

pub struct Dir(PathBuf);

impl Dir {
    /// `/tmp/vireo-{kind}-{pid}-{name}`, empty.
    pub fn new(kind: &str, name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("vireo-{kind}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
