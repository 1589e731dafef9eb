//! The agent's security flags and what they do at start: the first admin,
//! a bootstrap token, TLS and the request head timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{tls, Auth, Caller, Role};
use crate::listen::Transport;
use vireo_membership::join::pki::TlsDir;

#[derive(clap::Args, Debug, Clone)]
pub struct SecurityArgs {
    /// Sets user admin's password from this file (first line) at start;
    /// without it a first start writes a random one to
    /// STATE/initial-admin-password.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Accepts this file's first line as an admin API token for this run
    /// (automation and tests; the file should be 0600).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Serve HTTPS (plain HTTP is then refused): with --tls-cert/--tls-key,
    /// or the node's self-signed certificate, made at first start in
    /// STATE/tls/.
    #[arg(long)]
    pub tls: bool,
    /// PEM certificate chain for HTTPS (implies --tls).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (implies --tls).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP though this node has a certificate from its
    /// cluster's CA (which turns TLS on, mutual between nodes): for
    /// development and tests only; the node's peers must be plain too.
    #[arg(long, conflicts_with_all = ["tls", "tls_cert"])]
    pub plain_http: bool,
    /// Seconds a client has for a TLS handshake and each request head.
    #[arg(long, default_value = "10")]
    pub header_timeout: u64,
}

fn first_line(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} is empty",
            path.display()
        )));
    }
    Ok(line)
}

impl SecurityArgs {
    /// The first admin and the bootstrap token.
    pub fn apply(&self, auth: &Auth, state: &Path) -> std::io::Result<Option<String>> {
        let password = self
            .admin_password_file
            .as_deref()
            .map(first_line)
            .transpose()?;
        let note = auth.ensure_admin(state, password.as_deref())?;
        eprintln!("vireo-agent: {note}");
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let caller = Caller {
            user: "token:bootstrap".into(),
            role: Role::Admin,
            tenant: None,
        };
        let token = first_line(path)?;
        auth.add_static_token(&token, caller);
        Ok(Some(token))
    }

    /// How connections are served: the certificate given, else the
    /// cluster's node certificate (`cluster`, when this node has one), else
    /// with --tls a self-signed one, else plain HTTP.
    pub fn transport(
        &self,
        state: &Path,
        listen: SocketAddr,
        cluster: Option<&TlsDir>,
    ) -> std::io::Result<Transport> {
        let mut transport = Transport {
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            tls: None,
        };
        let cluster = cluster.filter(|d| d.has_node_cert() && !self.plain_http);
        if let (Some(dir), None) = (cluster, &self.tls_cert) {
            transport.tls = Some(tls::cluster_server_config(dir)?);
            crate::cluster::peer::set_node_tls(
                tls::node_client_config(dir)?,
                tls::node_websocket_config(dir)?,
            );
            return Ok(transport);
        }
        if !self.tls && self.tls_cert.is_none() {
            return Ok(transport);
        }
        let given = self.tls_cert.clone().zip(self.tls_key.clone());
        let id = tls::identity(given, state, cert_names(listen))?;
        if id.generated {
            eprintln!(
                "vireo-agent: made a self-signed certificate: {}",
                id.cert.display()
            );
        }
        transport.tls = Some(tls::server_config(&id)?);
        Ok(transport)
    }
}

/// The names a self-signed certificate covers: the host name, localhost,
/// loopback and the listen address.
fn cert_names(listen: SocketAddr) -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(
        [host.trim().to_string()]
            .into_iter()
            .filter(|h| !h.is_empty()),
    );
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        names.push(listen.ip().to_string());
    }
    names
}
