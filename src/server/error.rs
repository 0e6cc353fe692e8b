//! The HTTP errors of the API: a status and a message naming what was wrong, sent as FastAPI-style JSON
//! (`{"error": …, "detail": …}`) because A1111's clients print `detail`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Seconds for a `Retry-After` header (a full queue, a server shutting down).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError { status, detail: detail.into(), retry_after: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn unavailable(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, detail: detail.into(), retry_after: Some(retry_after) }
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// An error of the pipeline: what the request asked for that cannot be done (a usage or input error) is
    /// the client's (400); anything else (GPU, weights, NaN) is the server's (500).
    pub fn from_wgsd(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Usage(_) | E::Input { .. } => Self::bad_request(e.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.status.canonical_reason().unwrap_or("error"),
            "detail": self.detail,
        });
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        r
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
