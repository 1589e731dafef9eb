//! Who may call the agent (docs/security.md, "Agent authentication"): users
//! with argon2 password hashes, API tokens stored as SHA-256 of their
//! secret, and login sessions (in memory: an agent restart logs everyone
//! out). `guard` authenticates every request and `policy` decides what a
//! role may touch; `routes` are the /auth endpoints.
//!
//! State: `STATE/auth/users.json` and `STATE/auth/tokens.json`, written
//! atomically, mode 0600.

pub mod guard;
pub mod policy;
pub mod routes;
pub mod startup;
pub mod ticket;
pub mod tls;
pub mod vouch;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::auth_api::Role;
use crate::auth_api::{CreateToken, CreateUser, NewToken, TokenInfo, UserInfo, Whoami};
use crate::error::ApiError;
use crate::store;

/// How long a login session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Where the first admin's random password is written.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// The authenticated caller of a request (in the request's extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub role: Role,
    pub tenant: Option<String>,
}

impl Caller {
    /// The tenant whose objects alone this caller may touch (None: any).
    pub fn only_tenant(&self) -> Option<&str> {
        match self.role {
            Role::Tenant => Some(self.tenant.as_deref().unwrap_or("")),
            _ => None,
        }
    }

    /// Whether an object tagged `tenant` is this caller's to see.
    pub fn may_see(&self, tenant: Option<&str>) -> bool {
        self.only_tenant().is_none_or(|t| tenant == Some(t))
    }

    pub fn whoami(&self) -> Whoami {
        Whoami {
            user: self.user.clone(),
            role: self.role,
            tenant: self.tenant.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    name: String,
    /// argon2id in PHC string form (salt and parameters inside).
    password: String,
    role: Role,
    tenant: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Token {
    id: String,
    /// SHA-256 of the secret, hex. The secret is random (256 bits), so a
    /// fast hash is enough; argon2 is for guessable passwords.
    sha256: String,
    role: Role,
    tenant: Option<String>,
    comment: Option<String>,
    created: u64,
}

struct Session {
    caller: Caller,
    expires: Instant,
}

/// The node's users, tokens and sessions; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Mutex<Inner>>,
    dir: PathBuf,
}

#[derive(Default)]
struct Inner {
    users: Vec<User>,
    tokens: Vec<Token>,
    /// Session token SHA-256 → session.
    sessions: HashMap<String, Session>,
    /// Tokens given on the command line (`--admin-token-file`), not stored.
    static_tokens: HashMap<String, Caller>,
    /// Download ticket SHA-256 → ticket (ticket.rs).
    tickets: HashMap<String, ticket::Ticket>,
}

fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing the password: {e}")))
}

fn password_matches(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn private(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    private(path)
}

/// A role and tenant that go together: a tenant role names a tenant, the
/// others do not.
fn check_role(role: Role, tenant: &Option<String>) -> Result<(), ApiError> {
    match (role, tenant) {
        (Role::Tenant, Some(t)) if crate::storage::valid_name(t) => Ok(()),
        (Role::Tenant, _) => Err(ApiError::bad_request(
            "role tenant needs a tenant (letters, digits, '.', '_', '-')",
        )),
        (_, Some(_)) => Err(ApiError::bad_request("only the tenant role takes a tenant")),
        _ => Ok(()),
    }
}

impl Auth {
    /// The store in `STATE/auth`.
    pub fn load(state: &Path) -> std::io::Result<Self> {
        let dir = state.join("auth");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let inner = Inner {
            users: store::read_json(&dir.join("users.json"))?.unwrap_or_default(),
            tokens: store::read_json(&dir.join("tokens.json"))?.unwrap_or_default(),
            ..Inner::default()
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            dir,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, inner: &Inner) -> Result<(), ApiError> {
        let users = self.dir.join("users.json");
        let tokens = self.dir.join("tokens.json");
        store::write_json(&users, &inner.users)
            .and_then(|_| store::write_json(&tokens, &inner.tokens))
            .and_then(|_| private(&users))
            .and_then(|_| private(&tokens))
            .map_err(|e| ApiError::internal(format!("saving the user store: {e}")))
    }

    /// At start: with no users yet, creates `admin` with `password`, or a
    /// random one written to `STATE/initial-admin-password` (0600). With
    /// users and a `password`, sets admin's password to it. Returns a line
    /// to log.
    pub fn ensure_admin(&self, state: &Path, password: Option<&str>) -> std::io::Result<String> {
        let mut inner = self.lock();
        let has_admin = inner.users.iter().any(|u| u.name == "admin");
        let (password, note) = match password {
            Some(p) => (
                p.to_string(),
                "admin's password set from --admin-password-file".into(),
            ),
            None if inner.users.is_empty() => {
                let p = random_secret(12);
                let file = state.join(INITIAL_PASSWORD_FILE);
                write_private(&file, &format!("{p}\n"))?;
                // As Jenkins does at its first start: the console (physical
                // access) shows it once; the file keeps it for scripts.
                let note = format!(
                    "created user admin with password {p} (also in {}); `vireo login` with it",
                    file.display()
                );
                (p, note)
            }
            None => {
                return Ok(format!(
                    "{} user(s), {} API token(s)",
                    inner.users.len(),
                    inner.tokens.len()
                ))
            }
        };
        let hash = hash_password(&password).map_err(|e| std::io::Error::other(e.1))?;
        if has_admin {
            let admin = inner.users.iter_mut().find(|u| u.name == "admin");
            if let Some(u) = admin {
                u.password = hash;
            }
        } else {
            inner.users.push(User {
                name: "admin".into(),
                password: hash,
                role: Role::Admin,
                tenant: None,
            });
        }
        self.save(&inner).map_err(|e| std::io::Error::other(e.1))?;
        Ok(note)
    }

    /// Accepts `secret` as an admin token for this run (not stored).
    pub fn add_static_token(&self, secret: &str, caller: Caller) {
        self.lock()
            .static_tokens
            .insert(sha256_hex(secret.trim()), caller);
    }

    /// Who `secret` (a session or API token) is, if anyone.
    pub fn authenticate(&self, secret: &str) -> Option<Caller> {
        let key = sha256_hex(secret);
        let mut inner = self.lock();
        if let Some(c) = inner.static_tokens.get(&key) {
            return Some(c.clone());
        }
        inner.sessions.retain(|_, s| s.expires > Instant::now());
        if let Some(s) = inner.sessions.get(&key) {
            return Some(s.caller.clone());
        }
        inner
            .tokens
            .iter()
            .find(|t| t.sha256 == key)
            .map(|t| Caller {
                user: format!("token:{}", t.id),
                role: t.role,
                tenant: t.tenant.clone(),
            })
    }

    /// A new session for `user` if `password` is theirs. Slow on purpose
    /// (argon2): call it off the async workers.
    pub fn login(&self, user: &str, password: &str) -> Option<(String, Caller)> {
        let found = self.lock().users.iter().find(|u| u.name == user).cloned();
        // An unknown user costs a hash too, so timing does not tell names.
        let Some(found) = found else {
            let _ = hash_password(password);
            return None;
        };
        if !password_matches(password, &found.password) {
            return None;
        }
        let caller = Caller {
            user: found.name,
            role: found.role,
            tenant: found.tenant,
        };
        let secret = format!("vireo-session-{}", random_secret(32));
        let session = Session {
            caller: caller.clone(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        self.lock().sessions.insert(sha256_hex(&secret), session);
        Some((secret, caller))
    }

    pub fn users(&self) -> Vec<UserInfo> {
        self.lock()
            .users
            .iter()
            .map(|u| UserInfo {
                name: u.name.clone(),
                role: u.role,
                tenant: u.tenant.clone(),
            })
            .collect()
    }

    /// Adds a user (slow: argon2).
    pub fn create_user(&self, req: CreateUser) -> Result<UserInfo, ApiError> {
        if !crate::storage::valid_name(&req.name) {
            return Err(ApiError::bad_request(format!(
                "user name '{}': letters, digits, '.', '_', '-'",
                req.name
            )));
        }
        if req.password.len() < 8 || req.password.len() > 1024 {
            return Err(ApiError::bad_request("password: 8-1024 bytes"));
        }
        check_role(req.role, &req.tenant)?;
        let hash = hash_password(&req.password)?;
        let mut inner = self.lock();
        if inner.users.iter().any(|u| u.name == req.name) {
            return Err(ApiError::conflict(format!("user '{}' exists", req.name)));
        }
        inner.users.push(User {
            name: req.name.clone(),
            password: hash,
            role: req.role,
            tenant: req.tenant.clone(),
        });
        self.save(&inner)?;
        Ok(UserInfo {
            name: req.name,
            role: req.role,
            tenant: req.tenant,
        })
    }

    /// Removes a user and ends its sessions. The last admin stays.
    pub fn delete_user(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let Some(i) = inner.users.iter().position(|u| u.name == name) else {
            return Err(ApiError::not_found(format!("no user '{name}'")));
        };
        let admins = inner.users.iter().filter(|u| u.role == Role::Admin).count();
        if inner.users[i].role == Role::Admin && admins == 1 {
            return Err(ApiError::conflict("the last admin cannot be deleted"));
        }
        inner.users.remove(i);
        inner.sessions.retain(|_, s| s.caller.user != name);
        self.save(&inner)
    }

    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.lock()
            .tokens
            .iter()
            .map(|t| TokenInfo {
                id: t.id.clone(),
                role: t.role,
                tenant: t.tenant.clone(),
                comment: t.comment.clone(),
                created: t.created,
            })
            .collect()
    }

    /// A new API token; its secret is in the answer only.
    pub fn create_token(&self, req: CreateToken) -> Result<NewToken, ApiError> {
        check_role(req.role, &req.tenant)?;
        if req.comment.as_ref().is_some_and(|c| c.len() > 256) {
            return Err(ApiError::bad_request("comment: at most 256 bytes"));
        }
        let id = random_secret(6);
        let secret = format!("vireo-{id}-{}", random_secret(32));
        let mut inner = self.lock();
        inner.tokens.push(Token {
            id: id.clone(),
            sha256: sha256_hex(&secret),
            role: req.role,
            tenant: req.tenant,
            comment: req.comment,
            created: crate::vms::now(),
        });
        self.save(&inner)?;
        Ok(NewToken { id, token: secret })
    }

    pub fn delete_token(&self, id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|t| t.id != id);
        if inner.tokens.len() == before {
            return Err(ApiError::not_found(format!("no token '{id}'")));
        }
        self.save(&inner)
    }
}
