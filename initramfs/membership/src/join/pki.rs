//! The cluster's certificate authority (rcgen, ECDSA P-256): made by
//! `vireo cluster create` on the first node, whose cluster directory alone
//! keeps its key; every node gets a certificate signed by it, the first at
//! create, a joiner through the join protocol (its public key in the
//! request, its certificate and the CA's in the answer, both under the
//! token's MAC). The agents serve and call each other with these (mutual
//! TLS, docs/security.md). Files under `CLUSTER_DIR/tls/`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::Certs;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};

/// A node's TLS files, under its cluster directory.
#[derive(Debug, Clone)]
pub struct TlsDir(pub PathBuf);

impl TlsDir {
    pub fn of_cluster(cluster_dir: &Path) -> TlsDir {
        TlsDir(cluster_dir.join("tls"))
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    /// Only on the node that signs (the one that created the cluster).
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    pub fn node_cert(&self) -> PathBuf {
        self.0.join("node.crt")
    }
    pub fn node_key(&self) -> PathBuf {
        self.0.join("node.key")
    }
    /// Whether this node has a certificate from the cluster CA.
    pub fn has_node_cert(&self) -> bool {
        self.node_cert().exists() && self.node_key().exists() && self.ca_cert().exists()
    }
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The CA's parameters: the same each time, so the signing node rebuilds
/// its issuer from the key alone (rcgen reads no certificates without its
/// x509-parser feature).
fn ca_params(cluster: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Vireo cluster CA");
    dn.push(DnType::OrganizationName, cluster);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A fresh node key pair (P-256).
pub fn node_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("node key"))
}

/// Makes the cluster CA in `dir` and issues this node's certificate.
pub fn create(dir: &TlsDir, cluster: &str, name: &str, addr: Ipv4Addr) -> Result<(), String> {
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("CA key"))?;
    let ca = ca_params(cluster).self_signed(&ca_key).map_err(err("CA"))?;
    write(&dir.ca_key(), &ca_key.serialize_pem(), true)?;
    write(&dir.ca_cert(), &ca.pem(), false)?;
    let key = node_key()?;
    let issued =
        issue(dir, cluster, name, addr, key.public_key_raw())?.ok_or("the CA just made is gone")?;
    store(dir, &key, &issued)
}

/// Keeps a node's key and the certificates issued to it.
pub fn store(dir: &TlsDir, key: &KeyPair, issued: &Certs) -> Result<(), String> {
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    write(&dir.node_key(), &key.serialize_pem(), true)?;
    write(&dir.ca_cert(), &issued.ca, false)?;
    write(&dir.node_cert(), &issued.cert, false)
}

/// A P-256 public key as a joiner sends it (the uncompressed point).
struct P256Public(Vec<u8>);

impl PublicKeyData for P256Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// A certificate for node `name` at `addr` with `public_key` (an
/// uncompressed P-256 point), signed by the CA in `dir`; `None` when this
/// node does not hold the CA key. Its names are what the join request
/// said, which the token's MAC vouches for: the node's address and, when
/// it is a valid DNS name, its name; it serves and calls (server and
/// client authentication).
pub fn issue(
    dir: &TlsDir,
    cluster: &str,
    name: &str,
    addr: Ipv4Addr,
    public_key: &[u8],
) -> Result<Option<Certs>, String> {
    let Ok(ca_pem) = std::fs::read_to_string(dir.ca_key()) else {
        return Ok(None);
    };
    if public_key.len() != 65 || public_key[0] != 4 {
        return Err("the node's public key is not an uncompressed P-256 point".into());
    }
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(err("CA key"))?;
    let ca = ca_params(cluster).self_signed(&ca_key).map_err(err("CA"))?;
    let mut names = vec![addr.to_string()];
    if !name.contains('_') {
        names.push(name.to_string());
    }
    let mut p = CertificateParams::new(names).map_err(err("node names"))?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name.push(DnType::OrganizationName, cluster);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let cert = p
        .signed_by(&P256Public(public_key.to_vec()), &ca, &ca_key)
        .map_err(err("node certificate"))?;
    let ca_cert = std::fs::read_to_string(dir.ca_cert())
        .map_err(|e| format!("{}: {e}", dir.ca_cert().display()))?;
    Ok(Some(Certs {
        cert: cert.pem(),
        ca: ca_cert,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joiner_gets_a_certificate_only_from_the_signing_node() {
        let tmp = std::env::temp_dir().join(format!("vireo-pki-{}", std::process::id()));
        let first = TlsDir(tmp.join("a"));
        create(&first, "lab", "n1", Ipv4Addr::new(10, 0, 0, 1)).unwrap();
        assert!(first.has_node_cert() && first.ca_key().exists());
        let key = node_key().unwrap();
        let addr = Ipv4Addr::new(10, 0, 0, 2);
        let issued = issue(&first, "lab", "n2", addr, key.public_key_raw())
            .unwrap()
            .unwrap();
        assert!(issued.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(issued.ca, std::fs::read_to_string(first.ca_cert()).unwrap());
        // A node without the CA key signs nothing.
        let second = TlsDir(tmp.join("b"));
        store(&second, &key, &issued).unwrap();
        assert!(second.has_node_cert());
        assert_eq!(
            issue(&second, "lab", "n3", addr, key.public_key_raw()),
            Ok(None)
        );
        assert!(issue(&first, "lab", "n3", addr, &[4; 10]).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
