//! TLS for `tls://` migration channels (rustls on ring): the destination
//! presents its certificate, the source verifies it against the CA; with
//! a CA on the destination too, the source must present one (mutual TLS).
//! Files are PEM, given with `--tls-cert`, `--tls-key` and `--tls-ca`.

use std::fs::File;
use std::io::{self, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use super::transport::{Channel, TlsFiles};

fn tls_err(why: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("TLS: {why}"))
}

/// ring, though rustls now steers towards aws-lc-rs for post-quantum key
/// exchange: aws-lc-rs needs cmake and a C toolchain per target for the
/// static aarch64 build, and classical TLS 1.3 is what this channel
/// needs today (docs/migration.md).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let mut r =
        BufReader::new(File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?);
    let certs = rustls_pemfile::certs(&mut r).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(tls_err(format!("{}: no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    let mut r =
        BufReader::new(File::open(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?);
    rustls_pemfile::private_key(&mut r)?
        .ok_or_else(|| tls_err(format!("{}: no PEM private key", path.display())))
}

fn roots(files: &TlsFiles) -> io::Result<RootCertStore> {
    let ca = files
        .ca
        .as_deref()
        .ok_or_else(|| tls_err("a tls:// migration needs --tls-ca on the source"))?;
    let mut roots = RootCertStore::empty();
    for cert in certs(ca)? {
        roots.add(cert).map_err(tls_err)?;
    }
    Ok(roots)
}

fn need<'a>(path: &'a Option<std::path::PathBuf>, flag: &str) -> io::Result<&'a Path> {
    path.as_deref()
        .ok_or_else(|| tls_err(format!("{flag} is needed for a tls:// migration")))
}

/// The source's end: verifies the destination against `--tls-ca`, and
/// presents `--tls-cert`/`--tls-key` when given.
pub fn client(stream: TcpStream, hostport: &str, files: &TlsFiles) -> io::Result<Box<dyn Channel>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots(files)?);
    let config = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(tls_err)?,
        _ => builder.with_no_client_auth(),
    };
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(tls_err)?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(tls_err)?;
    Ok(Box::new(StreamOwned::new(conn, stream)))
}

/// The destination's end: presents `--tls-cert`/`--tls-key`; with
/// `--tls-ca`, accepts only sources with a certificate it signed.
pub fn server(stream: TcpStream, files: &TlsFiles) -> io::Result<Box<dyn Channel>> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = match &files.ca {
        Some(_) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(files)?),
                provider(),
            )
            .build()
            .map_err(tls_err)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            certs(need(&files.cert, "--tls-cert")?)?,
            key(need(&files.key, "--tls-key")?)?,
        )
        .map_err(tls_err)?;
    let conn = ServerConnection::new(Arc::new(config)).map_err(tls_err)?;
    Ok(Box::new(StreamOwned::new(conn, stream)))
}

impl Channel for StreamOwned<ClientConnection, TcpStream> {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_timeout(timeout)
    }
}

impl Channel for StreamOwned<ServerConnection, TcpStream> {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_timeout(timeout)
    }
}
