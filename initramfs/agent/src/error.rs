//! The agent's error answers: a status and a JSON body that says what was
//! wrong (`{"error": "...", "status": N}`), the same shape on every route.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::types::ErrorBody;

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(why: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, why.into())
    }

    pub fn not_found(why: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, why.into())
    }

    pub fn conflict(why: impl Into<String>) -> Self {
        Self(StatusCode::CONFLICT, why.into())
    }

    /// Something on the node failed (disk, a VMM that would not start).
    pub fn internal(why: impl Into<String>) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, why.into())
    }

    /// The node cannot do it now (not enough memory, a pool gone).
    pub fn unavailable(why: impl Into<String>) -> Self {
        Self(StatusCode::SERVICE_UNAVAILABLE, why.into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.1, self.0.as_u16())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.1,
            status: self.0.as_u16(),
        };
        (self.0, Json(body)).into_response()
    }
}

/// A JSON body that failed to parse becomes a 400 that says why (axum's
/// own rejection answers in plain text).
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "bad JSON body: {}",
                rejection.body_text()
            ))),
        }
    }
}
