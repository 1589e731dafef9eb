//! `vireo cluster status`: the local membership daemon's view of the cluster,
//! printed the way `corosync-quorumtool -s` prints a corosync node's.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vireo_membership::quorumtool;
use vireo_membership::status::ClusterStatus;

/// Where vireo-membershipd serves its status unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vireo/membership.sock";

/// The daemon writes one JSON object per connection and closes it.
pub fn read_status(socket: &Path) -> Result<ClusterStatus, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach the membership service at {}: {e}",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("reading {}: {e}", socket.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("unexpected answer from the membership service: {e}"))
}

/// The text for the terminal, or the daemon's JSON.
pub fn status_text(socket: &Path, json: bool) -> Result<String, String> {
    let status = read_status(socket)?;
    match json {
        true => Ok(serde_json::to_string_pretty(&status).map_err(|e| e.to_string())? + "\n"),
        false => Ok(quorumtool::render(&status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// corosync-quorumtool -s of a real corosync 3.1.7 node (captured by the
    /// cluster harness, tests/cluster).
    const REAL: &str = include_str!("../../membership/tests/data/quorumtool-3node.txt");

    /// Serves `body` once on a fresh socket, as the daemon would.
    fn serve_once(body: String) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!("vireo-cli-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}.sock", body.len()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(body.as_bytes()).unwrap();
        });
        (path, server)
    }

    #[test]
    fn prints_what_corosync_quorumtool_prints() {
        let status = quorumtool::parse(REAL).unwrap();
        let (socket, server) = serve_once(serde_json::to_string(&status).unwrap());
        let text = status_text(&socket, false).unwrap();
        server.join().unwrap();
        // Line for line the real output, less its Date: line.
        let real: Vec<&str> = REAL.lines().filter(|l| !l.starts_with("Date:")).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), real);
    }

    #[test]
    fn bad_answers_and_missing_daemon_are_errors() {
        let (socket, server) = serve_once("{\"provider\": 1}".into());
        let e = status_text(&socket, false).unwrap_err();
        server.join().unwrap();
        assert!(e.contains("unexpected answer"), "{e}");
        let e = status_text(Path::new("/nonexistent/membership.sock"), false).unwrap_err();
        assert!(e.contains("cannot reach the membership service"), "{e}");
    }
}
