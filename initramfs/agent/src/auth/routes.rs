//! The /auth routes (docs/api/agent.yaml, "auth"). Password hashing runs
//! on blocking threads: argon2 is slow on purpose.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::Caller;
use crate::auth_api::{
    CreateToken, CreateUser, LoginAnswer, LoginRequest, NewToken, TokenInfo, UserInfo, Whoami,
};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/whoami", get(whoami))
        .route("/auth/users", get(users).post(create_user))
        .route("/auth/users/{name}", delete(delete_user))
        .route("/auth/tokens", get(tokens).post(create_token))
        .route("/auth/tokens/{id}", delete(delete_token))
        .route("/auth/download-ticket", post(download_ticket))
}

#[derive(serde::Deserialize)]
struct TicketRequest {
    /// The volume data path the ticket opens, e.g. `/pools/local/volumes/a/data`.
    path: String,
    /// The node (name or id) the volume is on, in a cluster; this node's
    /// if not given.
    #[serde(default)]
    node: Option<String>,
}

/// A single-use ticket to GET a volume's data without the Authorization
/// header (ticket.rs); refused now if the caller could not GET it anyway
/// (a volume on another node: there, when the download is forwarded).
async fn download_ticket(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<TicketRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = match req.node {
        Some(node) => other_node(&s, node).await?,
        None => None,
    };
    if node.is_none() {
        super::policy::check(&caller, &axum::http::Method::GET, &req.path, &s)?;
    }
    let ticket = s.auth.mint_ticket(caller, &req.path, node)?;
    Ok(Json(serde_json::json!({
        "url": format!("{}?ticket={ticket}", req.path),
        "ticket": ticket,
        "expires_in_s": super::ticket::TICKET_LIFETIME.as_secs(),
    })))
}

/// Node `node`'s id when it is another node of this one's cluster; None
/// when it is this node.
async fn other_node(s: &AppState, node: String) -> ApiResult<Option<u32>> {
    let Some(cluster) = s.cluster.clone() else {
        return match node == crate::node::collect().name {
            true => Ok(None),
            false => Err(ApiError::bad_request(format!(
                "no node '{node}': this node is not in a cluster"
            ))),
        };
    };
    let me = cluster.me();
    let id = blocking(move || cluster.node_id(&node)).await??;
    Ok((id != me).then_some(id))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn login(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginAnswer>> {
    let auth = s.auth.clone();
    let user = req.user.clone();
    let Some((token, caller)) = blocking(move || auth.login(&req.user, &req.password)).await?
    else {
        eprintln!("vireo-agent: failed login as '{user}'");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        ));
    };
    Ok(Json(LoginAnswer {
        token,
        user: caller.user,
        role: caller.role,
        tenant: caller.tenant,
    }))
}

async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(caller.whoami())
}

async fn users(State(s): State<AppState>) -> Json<Vec<UserInfo>> {
    Json(s.auth.users())
}

async fn create_user(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    let auth = s.auth.clone();
    let user = blocking(move || auth.create_user(req)).await??;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn delete_user(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    s.auth.delete_user(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tokens(State(s): State<AppState>) -> Json<Vec<TokenInfo>> {
    Json(s.auth.tokens())
}

async fn create_token(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateToken>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    Ok((StatusCode::CREATED, Json(s.auth.create_token(req)?)))
}

async fn delete_token(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.auth.delete_token(&id)?;
    Ok(StatusCode::NO_CONTENT)
}
