//! The authentication API's types, shared by the agent and the `vireo` CLI
//! (docs/api/agent.yaml, "auth"): logging in, who a token is, users and API
//! tokens.

use serde::{Deserialize, Serialize};

/// What a caller may do: `admin` everything, `operator` everything but
/// users, tokens and the selftest, `tenant` only objects tagged with its
/// tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Tenant,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Tenant => "tenant",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "tenant" => Ok(Role::Tenant),
            _ => Err(format!("role '{s}': admin, operator or tenant")),
        }
    }
}

/// `POST /auth/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// `POST /auth/login`'s answer: a session token and who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAnswer {
    pub token: String,
    pub user: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// `GET /auth/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// A user's name, or `token:ID` for an API token.
    pub user: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// `POST /auth/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    pub password: String,
    pub role: Role,
    /// Required for (and only for) the tenant role.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `GET /auth/users`: a user without its password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
}

/// `POST /auth/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub role: Role,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// `POST /auth/tokens`' answer: the secret, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub id: String,
    pub token: String,
}

/// `GET /auth/tokens`: a token without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub role: Role,
    pub tenant: Option<String>,
    pub comment: Option<String>,
    /// Seconds since the epoch.
    pub created: u64,
}
