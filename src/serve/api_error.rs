//! The one error shape every endpoint answers with, MLflow-style:
//! `{"error_code": "BAD_REQUEST", "message": "..."}` with a matching HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::serve::content_encoding::DecodeError;
use crate::serve::request::RequestError;

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// 400: the client's input is wrong; the message says how.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    /// 413: the body is over `max_body_bytes`. The code stays `BAD_REQUEST` so clients that
    /// match on MLflow's codes treat it as their input's fault.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "BAD_REQUEST",
            message: format!("the request body is larger than the limit of {limit} bytes; send fewer rows per request"),
        }
    }

    /// 503: every worker is busy and the queue is full; retrying later will work.
    pub fn busy(in_flight: usize) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "TEMPORARILY_UNAVAILABLE",
            message: format!("the server is busy ({in_flight} requests in flight); retry later"),
        }
    }

    /// 404 for paths the server does not have.
    pub fn not_found(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "ENDPOINT_NOT_FOUND",
            message: format!(
                "no endpoint `{path}`; try POST /invocations, POST /feedback, GET /ping, /health, /version, /metrics"
            ),
        }
    }

    /// 405 for a path that exists under other methods (`allowed`, e.g. `POST`).
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "BAD_REQUEST",
            message: format!("`{method} {path}` is not served; use {allowed}"),
        }
    }

    /// 500: a fault of the server or the model, never of the input.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: message.into(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> ApiError {
        ApiError::bad_request(error.to_string())
    }
}

impl From<DecodeError> for ApiError {
    fn from(error: DecodeError) -> ApiError {
        let status = match error {
            DecodeError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DecodeError::Corrupt { .. } => StatusCode::BAD_REQUEST,
            DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        };
        ApiError {
            status,
            code: "BAD_REQUEST",
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
