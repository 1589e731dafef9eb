//! The join token: a random secret the creating node keeps on VIREO-DATA
//! (`join.key` beside corosync.conf, mode 0600) and prints for operators.
//! Only keys derived from it ever reach the network.

use std::fs;
use std::io::Read;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Secret bytes: 128 bits, beyond any guessing online or offline.
pub const SECRET_LEN: usize = 16;
const PREFIX: &str = "vireo1-";

#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; SECRET_LEN]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh random token (getrandom(2) through /dev/urandom).
    pub fn generate() -> std::io::Result<Token> {
        let mut b = [0u8; SECRET_LEN];
        fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(Token(b))
    }

    /// The text operators pass to `vireo cluster join --token`.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", hex(&self.0))
    }

    pub fn parse(text: &str) -> Result<Token, String> {
        let t = text.trim();
        let body = t
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("not a Vireo join token (they start with {PREFIX}): {t:?}"))?;
        let bytes = unhex(body)
            .filter(|b| b.len() == SECRET_LEN)
            .ok_or_else(|| {
                format!(
                    "malformed join token: {PREFIX} then {} hex digits",
                    2 * SECRET_LEN
                )
            })?;
        let mut b = [0u8; SECRET_LEN];
        b.copy_from_slice(&bytes);
        Ok(Token(b))
    }

    pub fn load(path: &Path) -> Result<Token, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Token::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the token readable by root only.
    pub fn store(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(format!("{}\n", self.to_text()).as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key the join protocol authenticates with: HMAC-SHA256 keyed by
    /// the secret over a fixed label (a one-step HKDF-Expand).
    pub fn join_key(&self) -> [u8; 32] {
        mac(&self.0, &[b"vireo cluster join v1"])
    }
}

/// HMAC-SHA256 of the concatenated parts, each preceded by its length so
/// no two different part lists give the same input.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs.
pub fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
