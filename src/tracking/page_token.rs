//! Page tokens: base64 of `{"offset": N}`, the shape MLflow's own stores hand out, so a
//! token means the same to any client that peeks at it. Clients treat it as opaque.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::tracking::error::ApiError;

/// The token that resumes a listing at `offset`.
pub fn encode(offset: usize) -> String {
    STANDARD.encode(serde_json::json!({ "offset": offset }).to_string())
}

/// The offset a token resumes at; no token is the start.
pub fn decode(token: Option<&str>) -> Result<usize, ApiError> {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return Ok(0);
    };
    let invalid = || ApiError::invalid(format!("invalid page token `{token}`"));
    let bytes = STANDARD.decode(token).map_err(|_| invalid())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let offset = match &value["offset"] {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    };
    offset
        .and_then(|offset| usize::try_from(offset).ok())
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        assert_eq!(decode(Some(&encode(1000))).unwrap(), 1000);
        assert_eq!(decode(None).unwrap(), 0);
        assert_eq!(decode(Some("")).unwrap(), 0);
        // MLflow's own: base64 of {"offset": 3}.
        assert_eq!(decode(Some("eyJvZmZzZXQiOiAzfQ==")).unwrap(), 3);
        for bad in ["not base64!", "e30=", "WzFd"] {
            let error = decode(Some(bad)).unwrap_err();
            assert_eq!(error.code, "INVALID_PARAMETER_VALUE", "{bad}");
        }
    }
}
