//! The admin token every test agent accepts (`--admin-token-file`), shared
//! by `common` and `vm_common`.

use std::path::{Path, PathBuf};

pub const TOKEN: &str = "vireo-test-admin-token";

/// Writes `TOKEN` to `dir/admin-token` for `--admin-token-file`.
pub fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("admin-token");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path
}
