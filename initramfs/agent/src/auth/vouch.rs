//! A caller vouched for by another node. Users, tokens and sessions live on
//! the node that made them, so a request another node forwards (a VM this
//! node owns, its tasks, a volume's download, a console) cannot be checked
//! against the caller's own token here. The forwarding node has checked it
//! already: it names the caller in `x-vireo-caller`, and this node believes
//! the header only from a peer, that is a client presenting a certificate
//! of the cluster CA or an admin's credential (the node token every node is
//! given). Anyone else's header is ignored. A peer can already do anything
//! an admin can, so believing it lends nobody more than they have; the
//! role policy then judges the vouched caller as if it had logged in here.

use axum::http::HeaderValue;

use super::{Caller, Role};
use crate::auth_api::Whoami;

/// The header naming the caller a forwarding node authenticated.
pub const CALLER: &str = "x-vireo-caller";

/// `caller` as a header value: its JSON, hex-encoded (a user name may hold
/// bytes a header may not).
pub fn header(caller: &Caller) -> HeaderValue {
    let json = serde_json::to_vec(&caller.whoami()).unwrap_or_default();
    let hex: String = json.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).expect("hex is a valid header value")
}

/// The caller a header value names; None if it is not one of `header`'s.
pub fn caller(value: &HeaderValue) -> Option<Caller> {
    let hex = value.to_str().ok()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let who: Whoami = serde_json::from_slice(&bytes).ok()?;
    Some(Caller {
        user: who.user,
        role: who.role,
        tenant: who.tenant,
    })
}

/// Whether a caller authenticated by its own credential may vouch for
/// another: an admin (the node token is one).
pub fn may_vouch(credential: &Caller) -> bool {
    credential.role == Role::Admin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_goes_through_the_header_unchanged() {
        let alice = Caller {
            user: "alïce".into(),
            role: Role::Tenant,
            tenant: Some("blue".into()),
        };
        assert_eq!(caller(&header(&alice)), Some(alice));
    }

    #[test]
    fn anything_else_is_no_caller() {
        for bad in ["", "zz", "7b7", "7b7d", "not hex at all"] {
            assert_eq!(caller(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn only_admins_vouch() {
        let c = |role| Caller {
            user: "u".into(),
            role,
            tenant: None,
        };
        assert!(may_vouch(&c(Role::Admin)));
        assert!(!may_vouch(&c(Role::Operator)));
        assert!(!may_vouch(&c(Role::Tenant)));
    }
}
