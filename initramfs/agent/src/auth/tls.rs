//! The agent's TLS identity: a certificate and key given on the command
//! line, or the node's own self-signed pair, made at first start (rcgen)
//! and kept in `STATE/tls/`. A cluster CA that signs every node's
//! certificate is the next step (docs/security.md).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

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

/// A rustls server configuration (ring, TLS 1.2 and 1.3) for `id`.
pub fn server_config(id: &Identity) -> io::Result<Arc<ServerConfig>> {
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&id.cert)
        .map_err(|e| bad(&id.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&id.cert, &e))?;
    if certs.is_empty() {
        return Err(bad(&id.cert, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&id.key).map_err(|e| bad(&id.key, &e))?;
    // ring, as the CLI's ureq uses: aws-lc-rs (rustls' preferred provider,
    // with post-quantum key exchange) needs cmake and a C build per arch.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&id.cert, &e))?;
    Ok(Arc::new(config))
}
