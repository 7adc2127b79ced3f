//! Guarding the few writes the dashboard makes: a per-process token that pages embed and
//! scripts send back (`X-Flow-CSRF`), a same-origin check, and read-only mode.
//!
//! A page of another site can make a browser send a form POST here, but it can neither
//! read the token nor add a custom header without a CORS preflight, which this server
//! never grants; so a write without the header is refused.

use std::io::Read;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ui::error::{ApiError, UiError};
use crate::ui::UiState;

/// The header a write must carry, holding the page's token.
pub const CSRF_HEADER: &str = "x-flow-csrf";

/// 32 random hex characters from the kernel (time and pid hashed if it has none).
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        let mut hasher = blake3::Hasher::new();
        hasher
            .update(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes());
        bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Lets reads through; a write needs writes allowed, the token, and a same-origin `Origin`.
pub async fn guard_writes(
    State(state): State<Arc<UiState>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match check_write(&state, &request) {
        Ok(()) => next.run(request).await,
        Err(error) => ApiError(error).into_response(),
    }
}

fn check_write(state: &UiState, request: &Request) -> Result<(), UiError> {
    if state.config.read_only {
        return Err(UiError::forbidden(
            "the dashboard runs with --read-only: stages and aliases cannot be changed here",
        ));
    }
    let headers = request.headers();
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(token.as_bytes(), state.csrf_token.as_bytes()) {
        return Err(UiError::forbidden(
            "missing or wrong X-Flow-CSRF token: changes are made from the dashboard's own pages (reload the page)",
        ));
    }
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let host = host.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(UiError::forbidden(format!(
                "cross-origin write from `{origin}` refused"
            )));
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
    }
}
