//! Download tickets: a link the browser follows by itself (so it streams
//! the file to disk instead of holding it in the page) cannot carry the
//! Authorization header, and a session token in a URL would stay in the
//! browser's history and download list. So the page first asks
//! `POST /auth/download-ticket` for a ticket bound to one volume's data
//! path; the ticket is random, good once, for a minute, and acts as the
//! caller who asked for it (the role policy still decides).

use std::time::{Duration, Instant};

use super::{random_secret, sha256_hex, Auth, Caller};
use crate::error::ApiError;

/// How long a ticket waits for its download to start.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);

pub(super) struct Ticket {
    caller: Caller,
    path: String,
    /// The node (id) the volume is on, when it is another: the download
    /// is forwarded there (cluster/forward.rs).
    node: Option<u32>,
    expires: Instant,
}

/// Whether `path` is a volume's data, the one thing tickets open.
pub fn ticket_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["", "pools", p, "volumes", v, "data"] if !p.is_empty() && !v.is_empty())
}

impl Auth {
    /// A ticket for `caller` to GET `path` once, on node `node` if another.
    pub fn mint_ticket(
        &self,
        caller: Caller,
        path: &str,
        node: Option<u32>,
    ) -> Result<String, ApiError> {
        if !ticket_path(path) {
            return Err(ApiError::bad_request(format!(
                "'{path}' is not a volume's data (/pools/POOL/volumes/NAME/data)"
            )));
        }
        let secret = format!("vireo-ticket-{}", random_secret(24));
        let ticket = Ticket {
            caller,
            path: path.to_string(),
            node,
            expires: Instant::now() + TICKET_LIFETIME,
        };
        let mut inner = self.lock();
        inner.tickets.retain(|_, t| t.expires > Instant::now());
        inner.tickets.insert(sha256_hex(&secret), ticket);
        Ok(secret)
    }

    /// The caller a ticket stands for and the node it was minted for, if
    /// it is live and was minted for `path`; it is spent either way.
    pub fn redeem_ticket(&self, secret: &str, path: &str) -> Option<(Caller, Option<u32>)> {
        let ticket = self.lock().tickets.remove(&sha256_hex(secret))?;
        (ticket.path == path && ticket.expires > Instant::now())
            .then_some((ticket.caller, ticket.node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn admin() -> Caller {
        Caller {
            user: "admin".into(),
            role: Role::Admin,
            tenant: None,
        }
    }

    #[test]
    fn a_ticket_opens_its_path_once() {
        let dir = std::env::temp_dir().join(format!("vireo-ticket-{}", std::process::id()));
        let auth = Auth::load(&dir).unwrap();
        let path = "/pools/local/volumes/a.raw/data";
        let t = auth.mint_ticket(admin(), path, None).unwrap();
        assert_eq!(auth.redeem_ticket(&t, path), Some((admin(), None)));
        assert_eq!(auth.redeem_ticket(&t, path), None, "spent");
        let t = auth.mint_ticket(admin(), path, Some(3)).unwrap();
        assert_eq!(auth.redeem_ticket(&t, path), Some((admin(), Some(3))));
        let t = auth.mint_ticket(admin(), path, None).unwrap();
        assert_eq!(auth.redeem_ticket(&t, "/pools/local/volumes/b/data"), None);
        assert_eq!(
            auth.redeem_ticket(&t, path),
            None,
            "spent by the wrong path"
        );
        assert!(auth.mint_ticket(admin(), "/vms", None).is_err());
        assert!(auth
            .mint_ticket(admin(), "/pools/local/volumes//data", None)
            .is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
