//! Credentials for the agent: the token sent with every request (from
//! VIREO_TOKEN, else what `vireo login` saved for that agent in
//! ~/.config/vireo/credentials.json, mode 0600), TLS trust (--ca FILE, on a
//! cluster node its cluster's CA, or --insecure for a node's self-signed
//! certificate), and `vireo token`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Subcommand;
use serde_json::json;
use vireo_agent::auth_api::{NewToken, TokenInfo};

use crate::storage::Conn;

/// How to trust the agent's certificate (global flags).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Trust {
    /// PEM CA certificate (or the node's own) to trust for https:// agents.
    #[arg(long, env = "VIREO_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Accept any certificate from an https:// agent (first contact only).
    #[arg(long, env = "VIREO_INSECURE", global = true)]
    pub insecure: bool,
}

static TRUST: OnceLock<Trust> = OnceLock::new();

pub fn set_trust(trust: Trust) {
    let _ = TRUST.set(trust);
}

fn credentials_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vireo/credentials.json"))
}

fn saved() -> BTreeMap<String, String> {
    credentials_file()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Remembers `token` for the agent at `base` (0600, in a 0700 directory).
pub fn save(base: &str, token: &str) -> Result<PathBuf, String> {
    let file = credentials_file().ok_or("no HOME to keep credentials in")?;
    let dir = file.parent().unwrap_or(&file).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let mut all = saved();
    all.insert(base.to_string(), token.to_string());
    let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)))
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file)
}

/// The token for the agent at `base`.
pub fn token_for(base: &str) -> Option<String> {
    std::env::var("VIREO_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| saved().remove(base))
}

/// Where `vireo login` keeps the CA it trusted for the agent at `base`.
fn ca_file(base: &str) -> Option<PathBuf> {
    let name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Some(credentials_file()?.parent()?.join("ca").join(name + ".pem"))
}

/// Keeps the CA this run trusts (--ca, or the node's cluster CA) for the
/// agent at `base`, so later commands trust it without --ca; where.
pub fn save_ca(base: &str) -> Result<Option<PathBuf>, String> {
    let given = TRUST.get().and_then(|t| t.ca.clone());
    let (Some(ca), Some(file)) = (given.or_else(cluster_ca), ca_file(base)) else {
        return Ok(None);
    };
    let dir = file.parent().unwrap_or(&file).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::copy(&ca, &file).map_err(|e| format!("{} → {}: {e}", ca.display(), file.display()))?;
    Ok(Some(file))
}

/// TLS trust for the agent at `base`: --ca, else the CA `vireo login`
/// kept for it, else on a cluster node its cluster's CA.
fn tls_config(base: &str) -> ureq::tls::TlsConfig {
    let trust = TRUST.get().cloned().unwrap_or_default();
    let mut tls = ureq::tls::TlsConfig::builder().disable_verification(trust.insecure);
    let ca = trust
        .ca
        .or_else(|| ca_file(base).filter(|f| f.exists()))
        .or_else(cluster_ca)
        .and_then(|path| std::fs::read(path).ok());
    let certs: Vec<_> = ca
        .iter()
        .flat_map(|pem| ureq::tls::parse_pem(pem))
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if !certs.is_empty() {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
    }
    tls.build()
}

/// On a cluster node, its cluster's CA: trusted when no --ca is given
/// (every agent of the cluster serves a certificate it signed).
fn cluster_ca() -> Option<PathBuf> {
    let dir = std::env::var_os("VIREO_CLUSTER_DIR")
        .map_or_else(|| PathBuf::from(vireo_cluster::DEFAULT_DIR), PathBuf::from);
    let ca = vireo_cluster::ClusterDir::new(dir).tls().ca_cert();
    ca.exists().then_some(ca)
}

/// A ureq configuration for the agent at `base`: its token on every
/// request, TLS trust as the flags say.
pub fn config_builder(base: &str) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let token = token_for(base);
    ureq::Agent::config_builder()
        .tls_config(tls_config(base))
        .middleware(
            move |mut req: ureq::http::Request<ureq::SendBody>,
                  next: ureq::middleware::MiddlewareNext| {
                if let Some(t) = &token {
                    if let Ok(v) = format!("Bearer {t}").parse() {
                        req.headers_mut().insert("authorization", v);
                    }
                }
                next.handle(req)
            },
        )
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// A new API token; its secret is printed once.
    Create {
        /// admin, operator or tenant.
        #[arg(long)]
        role: vireo_agent::auth_api::Role,
        /// The tenant (for --role tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// The node's API tokens (without secrets).
    List,
    /// Revokes a token.
    Delete { id: String },
}

pub fn run(conn: &Conn, command: TokenCommand) -> Result<(), String> {
    let c = crate::http::Client::new(&conn.host);
    let text = match command {
        TokenCommand::Create {
            role,
            tenant,
            comment,
        } => {
            let body = json!({"role": role, "tenant": tenant, "comment": comment});
            let made: NewToken = c.json("POST", "/auth/tokens", Some(&body))?;
            match conn.json {
                true => serde_json::to_string_pretty(&made).unwrap_or_default() + "\n",
                false => format!(
                    "token {} (shown once; keep it safe):\n{}\n",
                    made.id, made.token
                ),
            }
        }
        TokenCommand::List => {
            let all: Vec<TokenInfo> = c.json("GET", "/auth/tokens", None)?;
            let mut out = format!("{:<14} {:<9} {:<12} COMMENT\n", "ID", "ROLE", "TENANT");
            for t in all {
                let tenant = t.tenant.as_deref().unwrap_or("-");
                let comment = t.comment.as_deref().unwrap_or("");
                out += &format!("{:<14} {:<9} {:<12} {comment}\n", t.id, t.role, tenant);
            }
            out
        }
        TokenCommand::Delete { id } => {
            c.call("DELETE", &format!("/auth/tokens/{id}"), None)?;
            format!("token {id} revoked\n")
        }
    };
    crate::print_out(&text)
}
