//! The dashboard's one error: a status and a sentence, answered as JSON under `/api/flow/`
//! (`{"error_code": "NOT_FOUND", "message": "..."}`, MLflow's shape) and as a page
//! elsewhere. A mistake of the user's is a 4xx that says what was wrong; only a fault of
//! the server is a 500.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use crate::registry::RegistryError;
use crate::store::StoreError;
use crate::ui::html::{escape, layout};

/// An error with the HTTP status it answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
}

/// A [`UiError`] answered as JSON (the API's handlers return this).
#[derive(Debug)]
pub struct ApiError(pub UiError);

/// A [`UiError`] answered as an HTML page (the pages' handlers return this).
#[derive(Debug)]
pub struct PageError(pub UiError);

impl UiError {
    pub fn bad_request(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// MLflow-style error code for the status.
    pub fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "INVALID_PARAMETER_VALUE",
            StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
            StatusCode::FORBIDDEN => "PERMISSION_DENIED",
            StatusCode::GONE => "RESOURCE_DOES_NOT_EXIST",
            _ => "INTERNAL_ERROR",
        }
    }
}

impl From<StoreError> for UiError {
    fn from(error: StoreError) -> UiError {
        let status = match &error {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::NotPublished { .. } => StatusCode::NOT_FOUND,
            StoreError::Ambiguous { .. } | StoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        UiError {
            status,
            message: error.to_string(),
        }
    }
}

impl From<RegistryError> for UiError {
    fn from(error: RegistryError) -> UiError {
        match error {
            RegistryError::Store(error) => error.into(),
            RegistryError::UnknownModel { .. }
            | RegistryError::UnknownVersion { .. }
            | RegistryError::NoVersions { .. }
            | RegistryError::NoVersionInStage { .. }
            | RegistryError::UnknownAlias { .. }
            | RegistryError::MissingRun { .. } => UiError::not_found(error.to_string()),
            other => UiError::bad_request(other.to_string()),
        }
    }
}

impl From<anyhow::Error> for UiError {
    fn from(error: anyhow::Error) -> UiError {
        match error.downcast::<StoreError>() {
            Ok(store) => store.into(),
            Err(error) => match error.downcast::<RegistryError>() {
                Ok(registry) => registry.into(),
                Err(error) => UiError::internal(format!("{error:#}")),
            },
        }
    }
}

impl<E: Into<UiError>> From<E> for ApiError {
    fn from(error: E) -> ApiError {
        ApiError(error.into())
    }
}

impl<E: Into<UiError>> From<E> for PageError {
    fn from(error: E) -> PageError {
        PageError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.0.code(), "message": self.0.message });
        (self.0.status, Json(body)).into_response()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.0.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::FORBIDDEN => "Forbidden",
            _ => "Server error",
        };
        let body = format!(
            "<section class=\"error\" id=\"error\"><h2>{title}</h2><p>{}</p>\
             <p><a href=\"/\">Back to the runs</a></p></section>",
            escape(&self.0.message)
        );
        (self.0.status, Html(layout(title, "", &body))).into_response()
    }
}
