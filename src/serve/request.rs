//! The body of `POST /invocations` -> a row-major matrix in the model's column order.
//!
//! Accepts MLflow's scoring shapes (`dataframe_split`, `dataframe_records`, `instances`,
//! `inputs`; see [`crate::serve::json_body`]) and CSV (see [`crate::serve::csv_body`]). Every
//! way a body can be wrong is a [`RequestError`] whose message names the row and column, so a
//! client can fix its input.

use std::collections::HashMap;

use crate::serve::{csv_body, json_body};

/// Longest accepted series id, in bytes: ids are kept in memory and echoed in errors.
pub const MAX_SERIES_ID_BYTES: usize = 256;

/// The JSON fields that select an input shape; exactly one must be present.
pub const INPUT_FIELDS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];

/// Rows ready for the scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRows {
    pub n_rows: usize,
    /// Row-major, `n_rows` x the model's columns; missing values are NaN.
    pub values: Vec<f64>,
    /// A `threshold` given in the JSON body (or `params.threshold`), overriding the bundle's.
    pub threshold: Option<f64>,
    /// The streaming fields; all empty for a stateless batch request.
    pub stream: StreamFields,
}

/// What makes a request the streaming form: the series its rows continue, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFields {
    /// `series`: the rows continue this series; None for a stateless batch request.
    pub series: Option<String>,
    /// `start`: (re)start the series with these rows instead of continuing it.
    pub start: bool,
    /// `timestamps`: one per row, strictly increasing (epoch seconds, or any increasing number).
    pub timestamps: Option<Vec<f64>>,
}

/// How the body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Csv,
}

/// Why a request body cannot be scored; every variant is the client's to fix (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is empty; send JSON (e.g. {{\"dataframe_split\": {{\"columns\": [...], \"data\": [[...]]}}}}) or CSV")]
    EmptyBody,
    #[error("unsupported Content-Type `{0}`; use `application/json` or `text/csv`")]
    UnsupportedContentType(String),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    Shape(String),
    #[error("columns do not match the model's: {0}")]
    Columns(String),
    #[error("row {row} has {got} values; the model expects {expected} ({columns})")]
    WrongColumnCount {
        row: usize,
        expected: usize,
        got: usize,
        columns: String,
    },
    #[error("row {row}, column `{column}`: `{value}` is not a number")]
    NonNumeric {
        row: usize,
        column: String,
        value: String,
    },
    #[error("row {row} is missing column `{column}`")]
    MissingValue { row: usize, column: String },
    #[error("the request has {rows} rows; the model needs more than its window of {window} rows (the first {window} only seed the first score)")]
    TooFewRows { rows: usize, window: usize },
    #[error("invalid threshold: {0}")]
    BadThreshold(String),
    #[error("invalid CSV: {0}")]
    Csv(String),
    #[error("invalid `series`: {0}")]
    BadSeries(String),
    #[error("unknown series `{series}`: it was never started, was evicted (the server keeps the {capacity} most recently used series), or the server restarted; send `\"start\": true` (or `?start=true`) with the series' last {window} rows to start it again")]
    UnknownSeries {
        series: String,
        capacity: usize,
        window: usize,
    },
    #[error("invalid `timestamps`: {0}")]
    Timestamps(String),
}

/// Picks the body format from the Content-Type header; without one, a body starting with `{`
/// is JSON and anything else CSV.
pub fn body_format(content_type: Option<&str>, body: &[u8]) -> Result<BodyFormat, RequestError> {
    let Some(content_type) = content_type else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        return Ok(if first == Some(&b'{') {
            BodyFormat::Json
        } else {
            BodyFormat::Csv
        });
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "text/json" => Ok(BodyFormat::Json),
        m if m.ends_with("+json") => Ok(BodyFormat::Json),
        "text/csv" | "application/csv" => Ok(BodyFormat::Csv),
        _ => Err(RequestError::UnsupportedContentType(
            content_type.to_string(),
        )),
    }
}

/// Parses a body into rows in `columns` order, with any `threshold` and streaming fields it
/// carries. How many rows a request needs depends on its form: see [`ParsedRows::check_rows`].
pub fn parse_invocation(
    format: BodyFormat,
    body: &[u8],
    columns: &[String],
) -> Result<ParsedRows, RequestError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(RequestError::EmptyBody);
    }
    match format {
        BodyFormat::Json => json_body::parse_json(body, columns),
        BodyFormat::Csv => csv_body::parse_csv(body, columns),
    }
}

impl ParsedRows {
    /// A batch request needs more than `window` rows (the first `window` only seed the first
    /// score); a streaming one at least one row (its context is on the server).
    pub fn check_rows(&self, window: usize) -> Result<(), RequestError> {
        if self.stream.series.is_some() {
            return match self.n_rows {
                0 => Err(RequestError::Shape(
                    "the request has no rows; send at least one".to_string(),
                )),
                _ => Ok(()),
            };
        }
        if self.n_rows <= window {
            return Err(RequestError::TooFewRows {
                rows: self.n_rows,
                window,
            });
        }
        Ok(())
    }

    /// Adds the streaming fields of the query string (`?series=...&start=true`, how CSV bodies
    /// stream). A series named in both places must be the same one.
    pub fn merge_query(&mut self, series: Option<&str>, start: bool) -> Result<(), RequestError> {
        if let Some(series) = series {
            let series = check_series_id(series)?;
            match &self.stream.series {
                Some(body) if *body != series => {
                    return Err(RequestError::BadSeries(format!(
                        "the body names series `{body}` and the query string `{series}`"
                    )))
                }
                _ => self.stream.series = Some(series),
            }
        }
        self.stream.start |= start;
        if self.stream.start && self.stream.series.is_none() {
            return Err(RequestError::BadSeries(
                "`start` needs a `series` to start".to_string(),
            ));
        }
        Ok(())
    }
}

/// A series id: non-empty text of at most [`MAX_SERIES_ID_BYTES`] bytes.
pub fn check_series_id(id: &str) -> Result<String, RequestError> {
    if id.is_empty() {
        return Err(RequestError::BadSeries("the id is empty".to_string()));
    }
    if id.len() > MAX_SERIES_ID_BYTES {
        return Err(RequestError::BadSeries(format!(
            "the id is {} bytes long; at most {MAX_SERIES_ID_BYTES} are accepted",
            id.len()
        )));
    }
    Ok(id.to_string())
}

/// A threshold a request sets: finite and not negative. Anomaly scores are prediction errors,
/// never below 0, so a negative threshold would flag every row: a client's mistake, refused.
pub fn check_threshold(value: f64) -> Result<f64, RequestError> {
    if !value.is_finite() {
        return Err(RequestError::BadThreshold(format!(
            "`{value}` is not a finite number"
        )));
    }
    if value < 0.0 {
        return Err(RequestError::BadThreshold(format!(
            "`{value}` is negative; anomaly scores are never below 0, so it would flag every row"
        )));
    }
    Ok(value)
}

/// Where each given column goes in the model's order, checking names against the model's.
pub fn column_positions(given: &[String], model: &[String]) -> Result<Vec<usize>, RequestError> {
    let index: HashMap<&str, usize> = model
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut seen = vec![false; model.len()];
    let mut positions = Vec::with_capacity(given.len());
    let (mut unknown, mut duplicate) = (Vec::new(), Vec::new());
    for name in given {
        match index.get(name.as_str()) {
            Some(&i) if seen[i] => duplicate.push(name.as_str()),
            Some(&i) => {
                seen[i] = true;
                positions.push(i);
            }
            None => unknown.push(name.as_str()),
        }
    }
    let missing: Vec<&str> = model
        .iter()
        .zip(&seen)
        .filter(|(_, &s)| !s)
        .map(|(c, _)| c.as_str())
        .collect();
    if unknown.is_empty() && duplicate.is_empty() && missing.is_empty() {
        return Ok(positions);
    }
    let mut problems = Vec::new();
    for (label, names) in [
        ("unknown", &unknown),
        ("duplicated", &duplicate),
        ("missing", &missing),
    ] {
        if !names.is_empty() {
            problems.push(format!("{label} {}", quoted_list(names)));
        }
    }
    Err(RequestError::Columns(format!(
        "{}; expected {}",
        problems.join(", "),
        quoted_list(model)
    )))
}

/// `a`, `b`, `c` — names in backticks, long lists shortened.
pub fn quoted_list<S: AsRef<str>>(names: &[S]) -> String {
    const SHOWN: usize = 12;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_content_type_or_sniffs() {
        assert_eq!(
            body_format(Some("application/json; charset=utf-8"), b""),
            Ok(BodyFormat::Json)
        );
        assert_eq!(body_format(Some("text/csv"), b"{"), Ok(BodyFormat::Csv));
        assert_eq!(
            body_format(None, b"  {\"instances\": []}"),
            Ok(BodyFormat::Json)
        );
        assert_eq!(body_format(None, b"a,b\n1,2"), Ok(BodyFormat::Csv));
        let err = body_format(Some("application/x-www-form-urlencoded"), b"").unwrap_err();
        assert!(err
            .to_string()
            .contains("use `application/json` or `text/csv`"));
    }

    #[test]
    fn too_few_rows_names_the_window() {
        let columns = vec!["a".to_string()];
        let two = parse_invocation(BodyFormat::Csv, b"1\n2\n", &columns).unwrap();
        let err = two.check_rows(2).unwrap_err();
        assert_eq!(err, RequestError::TooFewRows { rows: 2, window: 2 });
        let three = parse_invocation(BodyFormat::Csv, b"1\n2\n3\n", &columns).unwrap();
        assert!(three.check_rows(2).is_ok());
    }

    #[test]
    fn a_streaming_request_needs_one_row_and_one_series() {
        let columns = vec!["a".to_string()];
        let mut one = parse_invocation(BodyFormat::Csv, b"1\n", &columns).unwrap();
        one.merge_query(Some("pump-7"), false).unwrap();
        assert_eq!(one.stream.series.as_deref(), Some("pump-7"));
        assert!(one.check_rows(100).is_ok());
        let conflict = one.merge_query(Some("pump-8"), false).unwrap_err();
        assert!(conflict.to_string().contains("`pump-7`"), "{conflict}");
        let mut batch = parse_invocation(BodyFormat::Csv, b"1\n", &columns).unwrap();
        let lonely = batch.merge_query(None, true).unwrap_err();
        assert!(lonely.to_string().contains("needs a `series`"), "{lonely}");
        let long = "x".repeat(MAX_SERIES_ID_BYTES + 1);
        assert!(check_series_id(&long).is_err() && check_series_id("").is_err());
    }
}
