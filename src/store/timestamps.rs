//! Conversions between `DateTime<Utc>` and the integer columns that store times.

use chrono::{DateTime, Utc};
use serde::Serializer;

use crate::store::error::{Result, StoreError};

/// Microseconds since the Unix epoch: what every `*_time` column holds.
pub(crate) fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::corrupt(format!("timestamp {micros} µs is out of range")))
}

/// The wall clock; one function so every write agrees on what "now" is.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// RFC 3339 in JSON output (chrono's serde feature is not enabled in this crate).
pub(crate) fn serialize_time<S: Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339())
}

pub(crate) fn serialize_optional_time<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize_time(time, serializer),
        None => serializer.serialize_none(),
    }
}
