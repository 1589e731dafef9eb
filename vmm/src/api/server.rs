//! HTTP server for the control API (placeholder until the API work lands).

use std::path::Path;

use super::ApiSender;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the API server is not built yet ({0})")]
    NotBuilt(String),
}

pub struct ApiServerHandle;

pub fn start(path: &Path, _sender: ApiSender) -> Result<ApiServerHandle, ApiError> {
    Err(ApiError::NotBuilt(path.display().to_string()))
}
