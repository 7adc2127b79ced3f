//! MLflow's error body, `{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "..."}`, with
//! the HTTP status MLflow's server pairs with each code (the client raises on both).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;
use crate::tracking::filter::SyntaxError;

/// An error answer of the tracking API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// 400 `INVALID_PARAMETER_VALUE`: the request names or holds something wrong.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE",
            message: message.into(),
        }
    }

    /// 404 `RESOURCE_DOES_NOT_EXIST`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "RESOURCE_DOES_NOT_EXIST",
            message: message.into(),
        }
    }

    /// 400 `RESOURCE_ALREADY_EXISTS`, as MLflow answers a taken experiment name.
    pub fn already_exists(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "RESOURCE_ALREADY_EXISTS",
            message: message.into(),
        }
    }

    /// 404 `ENDPOINT_NOT_FOUND` for paths this server does not answer.
    pub fn no_endpoint(method: &str, path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "ENDPOINT_NOT_FOUND",
            message: format!("flow server has no endpoint `{method} {path}`"),
        }
    }

    /// 500 `INTERNAL_ERROR`: the server's fault, never the request's.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(run) => ApiError::not_found(format!("run `{run}` not found")),
            StoreError::ExperimentNotFound(id) => {
                ApiError::not_found(format!("no experiment with id `{id}`"))
            }
            StoreError::AlreadyExists { .. } => ApiError::already_exists(error.to_string()),
            StoreError::Invalid { .. } | StoreError::Ambiguous { .. } => {
                ApiError::invalid(error.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<SyntaxError> for ApiError {
    fn from(error: SyntaxError) -> ApiError {
        ApiError::invalid(error.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}
