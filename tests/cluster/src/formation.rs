//! Clusters formed the way an operator forms them: `vireo cluster create`
//! on one node, `vireo cluster join` on the others (each run in its node's
//! namespace), daemons started on the files those commands write. A real
//! corosync node gets the grown nodelist and `corosync-cfgtool -R`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use vireo_membership::config::edit;

use crate::cluster::Cluster;
use crate::conf::{ClusterSpec, Kind};
use crate::net::node_addr;
use crate::node::{cli_binary, Node};

/// Runs `vireo ARGS` in node `i`'s namespace; its stdout, or an error with
/// everything it printed.
pub fn cli(node: &Node, args: &[&str]) -> Result<String, String> {
    cli_env(node, args, &[])
}

/// [`cli`] with more environment (what init passes the zero-touch join).
pub fn cli_env(node: &Node, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.namespace])
        .arg(cli_binary()?)
        .args(args)
        .envs(env.iter().copied())
        .env("VIREO_CLUSTER_DIR", &node.dir)
        .env("VIREO_MEMBERSHIP_GROUP_SOCKET", node.group_socket_path())
        .env("VIREO_TOKEN", crate::agents::ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("vireo: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    Err(format!(
        "vireo {} in {}: {}{}",
        args.join(" "),
        node.namespace,
        stdout,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl Cluster {
    /// `vireo cluster create` on node `i` (1 s token like the other tests),
    /// after removing every node's harness-written conf; returns the token
    /// it printed. Starts nothing.
    pub fn create_on(&mut self, i: usize) -> Result<String, String> {
        // The cluster is formed by the commands: no node has a conf before.
        for n in &self.nodes {
            let _ = std::fs::remove_file(n.conf_path());
        }
        let addr = node_addr(i).to_string();
        let name = ClusterSpec::node_name(i);
        let out = cli(
            &self.nodes[i],
            &[
                "cluster",
                "create",
                &self.spec.cluster_name,
                "--addr",
                &addr,
                "--name",
                &name,
                "--token-ms",
                &self.token_ms_base().to_string(),
            ],
        )?;
        let token = out
            .split_whitespace()
            .find(|w| w.starts_with("vireo1-"))
            .ok_or_else(|| format!("no token in: {out}"))?;
        Ok(token.to_string())
    }

    /// `vireo cluster join` run in node `i`'s namespace through `member`;
    /// how long the command took. For a real node the conf it wrote gets the
    /// harness's logging and state_dir (corosync needs them), nothing else.
    pub fn join_on(
        &mut self,
        i: usize,
        member: usize,
        token: &str,
    ) -> Result<std::time::Duration, String> {
        let _ = std::fs::remove_file(self.nodes[i].conf_path());
        let addr = node_addr(i).to_string();
        let name = ClusterSpec::node_name(i);
        let at = node_addr(member).to_string();
        let start = Instant::now();
        cli(
            &self.nodes[i],
            &[
                "cluster", "join", &at, "--token", token, "--addr", &addr, "--name", &name,
            ],
        )?;
        let took = start.elapsed();
        if self.kind(i) == Kind::Corosync {
            self.make_real_conf(i)?;
        }
        Ok(took)
    }

    /// A real node's conf: the cluster's, with logging to its directory and
    /// its own state_dir.
    pub fn make_real_conf(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let text = std::fs::read_to_string(node.conf_path()).map_err(|e| e.to_string())?;
        std::fs::write(node.conf_path(), real_conf(&text, &node.dir)).map_err(|e| e.to_string())
    }

    /// Gives real node `i` the nodelist of Vireo node `from` and runs
    /// `corosync-cfgtool -R` there (every corosync node of the ring reloads).
    pub fn sync_real_nodelist(&mut self, i: usize, from: usize) -> Result<(), String> {
        let src =
            std::fs::read_to_string(self.nodes[from].conf_path()).map_err(|e| e.to_string())?;
        let nodes = vireo_membership::config::parse(&src)
            .map_err(|e| e.to_string())?
            .nodes;
        let dst = std::fs::read_to_string(self.nodes[i].conf_path()).map_err(|e| e.to_string())?;
        let text = edit::replace_section(&dst, "nodelist", &edit::render_nodelist(&nodes));
        std::fs::write(self.nodes[i].conf_path(), text).map_err(|e| e.to_string())?;
        self.nodes[i]
            .run_in_namespace(&["corosync-cfgtool", "-R"])
            .map(|_| ())
    }

    fn token_ms_base(&self) -> u32 {
        self.spec.token_ms
    }
}

/// `text` made runnable by a real corosync in `dir`: logging to a file there
/// and system.state_dir there.
pub fn real_conf(text: &str, dir: &Path) -> String {
    let logging = format!(
        "logging {{\n    to_logfile: yes\n    logfile: {}\n    to_stderr: no\n    to_syslog: no\n}}\n",
        dir.join("corosync.log").display()
    );
    let system = format!(
        "system {{\n    state_dir: {}\n    sched_rr: no\n    move_to_root_cgroup: no\n}}\n",
        dir.display()
    );
    let t = edit::replace_section(text, "logging", &logging);
    edit::replace_section(&t, "system", &system)
}
