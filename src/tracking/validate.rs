//! MLflow's rules for names and values, so a request MLflow would refuse is refused here
//! too (with INVALID_PARAMETER_VALUE) instead of being stored.

use crate::tracking::error::ApiError;

/// Longest metric, param or tag key.
pub const MAX_KEY_LENGTH: usize = 250;
/// Longest param value.
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
/// Longest run tag value.
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
/// Longest experiment tag value.
pub const MAX_EXPERIMENT_TAG_VALUE_LENGTH: usize = 20000;
/// Longest experiment name.
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
/// A log-batch holds at most this many metrics...
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// ... this many params, and this many tags ...
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
/// ... and this many entries in all.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// The largest page a search returns.
pub const MAX_RESULTS: usize = 50_000;
/// The page a search returns when the request does not say.
pub const DEFAULT_MAX_RESULTS: usize = 1000;

/// A metric, param or tag key: letters, digits, `_ - . / : ` and spaces, usable as a
/// relative path that does not resolve elsewhere (no empty, `.` or `..` parts).
pub fn key(what: &str, path: &str, key: &str) -> Result<(), ApiError> {
    let characters_ok = key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ' '));
    if !characters_ok {
        return Err(ApiError::invalid(format!(
            "Invalid value \"{key}\" for parameter '{path}' supplied: {what} names may only \
             contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), \
             colon(:) and slashes (/)"
        )));
    }
    let resolves_elsewhere = key.is_empty()
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if resolves_elsewhere {
        return Err(ApiError::invalid(format!(
            "Invalid value \"{key}\" for parameter '{path}' supplied: {what} names must not be \
             empty or contain empty, `.` or `..` path parts"
        )));
    }
    length(path, key, MAX_KEY_LENGTH)
}

/// A value no longer than `limit` characters.
pub fn length(path: &str, value: &str, limit: usize) -> Result<(), ApiError> {
    let count = value.chars().count();
    if count > limit {
        return Err(ApiError::invalid(format!(
            "'{path}' exceeds the maximum length of {limit} characters (got {count})"
        )));
    }
    Ok(())
}

/// A page size: positive and at most [`MAX_RESULTS`]; [`DEFAULT_MAX_RESULTS`] if absent.
pub fn max_results(requested: Option<i64>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_MAX_RESULTS),
        Some(count) if count > 0 && count as u64 <= MAX_RESULTS as u64 => Ok(count as usize),
        Some(count) => Err(ApiError::invalid(format!(
            "Invalid value {count} for parameter 'max_results' supplied: it must be between 1 \
             and {MAX_RESULTS}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for good in ["loss", "val/loss", "a b", "f1:macro", "x.y-z_1", "épochs"] {
            assert!(key("metric", "key", good).is_ok(), "{good}");
        }
        for bad in [
            "", "a//b", "/a", "a/", "../a", "a/./b", "loss!", "a\\b", "a\nb",
        ] {
            let error = key("metric", "key", bad).unwrap_err();
            assert_eq!(error.code, "INVALID_PARAMETER_VALUE", "{bad}");
        }
        assert!(key("metric", "key", &"k".repeat(251)).is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(max_results(None).unwrap(), 1000);
        assert_eq!(max_results(Some(5)).unwrap(), 5);
        assert!(max_results(Some(0)).is_err());
        assert!(max_results(Some(50_001)).is_err());
    }
}
