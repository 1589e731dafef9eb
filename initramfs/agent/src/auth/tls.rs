//! The agent's TLS identity: a certificate and key given on the command
//! line, or the node's own self-signed pair, made at first start (rcgen)
//! and kept in `STATE/tls/`; or, in a cluster, the node certificate the
//! cluster CA signed (vireo_membership::join::pki): then the server asks
//! every client for a certificate, the CLI and browsers may present none,
//! and a node that presents one signed by the cluster CA is a peer node
//! ([`PeerNode`]), which the node-to-node routes require; this node's own
//! calls to its peers present it and trust only the cluster CA.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use vireo_membership::join::pki::TlsDir;

/// On a request that came over a TLS connection whose client presented a
/// certificate the cluster CA signed: another node of the cluster.
#[derive(Clone, Copy, Debug)]
pub struct PeerNode;

/// The certificate and key files the agent serves with.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made just now (self-signed).
    pub generated: bool,
}

/// `cert`/`key` as given, or `STATE/tls/node.{crt,key}`, made if missing
/// for `names` (host names and addresses the certificate is valid for).
pub fn identity(
    given: Option<(PathBuf, PathBuf)>,
    state: &Path,
    names: Vec<String>,
) -> io::Result<Identity> {
    if let Some((cert, key)) = given {
        return Ok(Identity {
            cert,
            key,
            generated: false,
        });
    }
    let dir = state.join("tls");
    let (cert, key) = (dir.join("node.crt"), dir.join("node.key"));
    if cert.exists() && key.exists() {
        return Ok(Identity {
            cert,
            key,
            generated: false,
        });
    }
    std::fs::create_dir_all(&dir)?;
    let made = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    std::fs::write(&cert, made.cert.pem())?;
    super::write_private(&key, &made.key_pair.serialize_pem())?;
    Ok(Identity {
        cert,
        key,
        generated: true,
    })
}

fn bad(what: &Path, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", what.display()),
    )
}

fn certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(path, &e))?;
    if certs.is_empty() {
        return Err(bad(path, &"no certificate in it"));
    }
    Ok(certs)
}

/// ring, as the CLI's ureq uses: aws-lc-rs (rustls' preferred provider,
/// with post-quantum key exchange) needs cmake and a C build per arch.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3) for `id`.
pub fn server_config(id: &Identity) -> io::Result<Arc<ServerConfig>> {
    let key = PrivateKeyDer::from_pem_file(&id.key).map_err(|e| bad(&id.key, &e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs(&id.cert)?, key)
        .map_err(|e| bad(&id.cert, &e))?;
    Ok(Arc::new(config))
}

/// The cluster CA as the only trusted root.
fn cluster_roots(dir: &TlsDir) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in certs(&dir.ca_cert())? {
        roots.add(ca).map_err(|e| bad(&dir.ca_cert(), &e))?;
    }
    Ok(roots)
}

/// The server configuration of a cluster node: its certificate from the
/// cluster CA; a client certificate is asked for and, when one is
/// presented, must be signed by the cluster CA (else the handshake fails).
pub fn cluster_server_config(dir: &TlsDir) -> io::Result<Arc<ServerConfig>> {
    let roots = cluster_roots(dir)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad(&dir.ca_cert(), &e))?;
    let key = PrivateKeyDer::from_pem_file(dir.node_key()).map_err(|e| bad(&dir.node_key(), &e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&dir.node_cert())?, key)
        .map_err(|e| bad(&dir.node_cert(), &e))?;
    Ok(Arc::new(config))
}

/// What this node's calls to its peers use: its certificate, and the
/// cluster CA as the only root.
pub fn node_client_config(dir: &TlsDir) -> io::Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts};
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| bad(&p, &e));
    let ca = Certificate::from_pem(&read(dir.ca_cert())?).map_err(|e| bad(&dir.ca_cert(), &e))?;
    let cert =
        Certificate::from_pem(&read(dir.node_cert())?).map_err(|e| bad(&dir.node_cert(), &e))?;
    let key = PrivateKey::from_pem(&read(dir.node_key())?).map_err(|e| bad(&dir.node_key(), &e))?;
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .client_cert(Some(ClientCert::new_with_certs(&[cert], key)))
        .build())
}

/// The same as [`node_client_config`] as a rustls configuration, for the
/// WebSockets (consoles) this node opens on its peers.
pub fn node_websocket_config(dir: &TlsDir) -> io::Result<Arc<rustls::ClientConfig>> {
    let roots = cluster_roots(dir)?;
    let key = PrivateKeyDer::from_pem_file(dir.node_key()).map_err(|e| bad(&dir.node_key(), &e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&dir.node_cert())?, key)
        .map_err(|e| bad(&dir.node_cert(), &e))?;
    Ok(Arc::new(config))
}
