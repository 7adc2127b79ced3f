//! JSON request bodies in MLflow's scoring shapes: `dataframe_split` (pandas orient=split),
//! `dataframe_records` (a list of {column: value}), `instances` (rows or records) and `inputs`
//! (rows, records, or {column: [values]}); an optional `threshold` (or `params.threshold`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::serve::request::{
    check_series_id, check_threshold, column_positions, quoted_list, ParsedRows, RequestError,
    StreamFields, INPUT_FIELDS,
};
use crate::serve::strict_json::parse_strict;

/// A JSON value as a number: numbers, numeric strings, and null (= missing, NaN).
pub fn json_number(value: &Value, row: usize, column: &str) -> Result<f64, RequestError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| non_numeric(row, column, value)),
        Value::Null => Ok(f64::NAN),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| non_numeric(row, column, value)),
        _ => Err(non_numeric(row, column, value)),
    }
}
fn non_numeric(row: usize, column: &str, value: &Value) -> RequestError {
    let mut text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    RequestError::NonNumeric {
        row,
        column: column.to_string(),
        value: text,
    }
}

/// Parses a JSON body into rows in `columns` order.
pub fn parse_json(body: &[u8], columns: &[String]) -> Result<ParsedRows, RequestError> {
    let Value::Object(object) = parse_strict(body)? else {
        return Err(shape(format!(
            "the JSON body must be an object with one of {}",
            quoted_list(&INPUT_FIELDS)
        )));
    };
    let unknown: Vec<&String> = object
        .keys()
        .filter(|k| !INPUT_FIELDS.contains(&k.as_str()) && !OPTIONAL_FIELDS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(shape(format!(
            "unknown field(s) {}; expected one of {} (and optionally {})",
            quoted_list(&unknown),
            quoted_list(&INPUT_FIELDS),
            quoted_list(&OPTIONAL_FIELDS)
        )));
    }
    let present: Vec<&str> = INPUT_FIELDS
        .iter()
        .copied()
        .filter(|f| object.contains_key(*f))
        .collect();
    let [field] = present[..] else {
        return Err(shape(format!(
            "the JSON body must have exactly one of {}; found {}",
            quoted_list(&INPUT_FIELDS),
            if present.is_empty() {
                "none".to_string()
            } else {
                quoted_list(&present)
            }
        )));
    };
    let threshold = body_threshold(&object)?;
    let input = &object[field];
    let mut rows = Rows::new(columns);
    match field {
        "dataframe_split" => split(input, &mut rows)?,
        "dataframe_records" => records(field, input, &mut rows)?,
        "instances" => rows_or_records(field, input, &mut rows)?,
        _ => match input {
            Value::Object(by_column) => column_lists(by_column, &mut rows)?,
            _ => rows_or_records(field, input, &mut rows)?,
        },
    }
    let stream = stream_fields(&object, rows.n_rows)?;
    Ok(ParsedRows {
        n_rows: rows.n_rows,
        values: rows.values,
        threshold,
        stream,
    })
}

/// Top-level fields a body may carry besides its rows.
const OPTIONAL_FIELDS: [&str; 5] = ["threshold", "params", "series", "start", "timestamps"];

/// `series` (text, or an integer), `start` (a boolean) and `timestamps` (one per row).
fn stream_fields(object: &Map<String, Value>, n_rows: usize) -> Result<StreamFields, RequestError> {
    let series = match object.get("series") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(check_series_id(id)?),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Some(other) => {
            return Err(RequestError::BadSeries(format!(
                "`{other}` is not a series id; use text such as \"pump-7\""
            )))
        }
    };
    let start = match object.get("start") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(start)) => *start,
        Some(other) => {
            return Err(shape(format!(
                "`start` must be true or false, not `{other}`"
            )))
        }
    };
    let timestamps = match object.get("timestamps") {
        None | Some(Value::Null) => None,
        Some(value) => Some(timestamps(value, n_rows)?),
    };
    if series.is_none() && (start || timestamps.is_some()) {
        return Err(RequestError::BadSeries(format!(
            "`{}` needs a `series` to apply to",
            if start { "start" } else { "timestamps" }
        )));
    }
    Ok(StreamFields {
        series,
        start,
        timestamps,
    })
}

/// One timestamp per row, strictly increasing: numbers (e.g. epoch seconds) or RFC 3339 text
/// (`2026-12-02T10:00:00Z`, read as epoch seconds).
fn timestamps(value: &Value, n_rows: usize) -> Result<Vec<f64>, RequestError> {
    let Value::Array(items) = value else {
        return Err(RequestError::Timestamps(
            "must be a list with one timestamp per row".to_string(),
        ));
    };
    if items.len() != n_rows {
        return Err(RequestError::Timestamps(format!(
            "{} timestamps for {n_rows} rows; send one per row",
            items.len()
        )));
    }
    let mut times = Vec::with_capacity(n_rows);
    for (row, item) in items.iter().enumerate() {
        let time = match item {
            Value::Number(n) => n.as_f64().filter(|t| t.is_finite()),
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text.trim())
                .ok()
                .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9),
            _ => None,
        };
        let Some(time) = time else {
            return Err(RequestError::Timestamps(format!(
                "row {row}: `{item}` is neither a number nor an RFC 3339 time"
            )));
        };
        if let Some(&previous) = times.last() {
            if time <= previous {
                return Err(RequestError::Timestamps(format!(
                    "row {row}: {item} is not after row {}'s; rows must come in time order",
                    row - 1
                )));
            }
        }
        times.push(time);
    }
    Ok(times)
}

/// `threshold` at the top level, or inside MLflow's `params`.
fn body_threshold(object: &Map<String, Value>) -> Result<Option<f64>, RequestError> {
    let value = match (object.get("threshold"), object.get("params")) {
        (Some(v), _) => v,
        (None, Some(Value::Object(params))) => match params.get("threshold") {
            Some(v) => v,
            None => return Ok(None),
        },
        (None, Some(Value::Null) | None) => return Ok(None),
        (None, Some(_)) => return Err(shape("`params` must be an object".to_string())),
    };
    match value.as_f64() {
        Some(t) => check_threshold(t).map(Some),
        None => Err(RequestError::BadThreshold(format!(
            "`{value}` is not a finite number"
        ))),
    }
}

/// `{"columns": [...], "data": [[...]]}` (pandas orient=split; `index` is ignored).
fn split(input: &Value, rows: &mut Rows) -> Result<(), RequestError> {
    let Value::Object(split) = input else {
        return Err(shape(
            "`dataframe_split` must be an object with `columns` and `data`".to_string(),
        ));
    };
    if let Some(extra) = split
        .keys()
        .find(|k| !["columns", "data", "index"].contains(&k.as_str()))
    {
        return Err(shape(format!(
            "unknown field `{extra}` in `dataframe_split`; expected `columns`, `data`"
        )));
    }
    if let Some(names) = split.get("columns") {
        let names = string_list(names, "dataframe_split.columns")?;
        rows.reorder(&names)?;
    }
    let Some(Value::Array(data)) = split.get("data") else {
        return Err(shape(
            "`dataframe_split.data` must be a list of rows".to_string(),
        ));
    };
    for (row, values) in data.iter().enumerate() {
        match values {
            Value::Array(values) => rows.push_positional(row, values)?,
            _ => {
                return Err(shape(format!(
                    "`dataframe_split.data` row {row} is not a list"
                )))
            }
        }
    }
    Ok(())
}

/// A list of `{column: value}` objects.
fn records(field: &str, input: &Value, rows: &mut Rows) -> Result<(), RequestError> {
    let Value::Array(list) = input else {
        return Err(shape(format!(
            "`{field}` must be a list of {{column: value}} objects"
        )));
    };
    for (row, record) in list.iter().enumerate() {
        match record {
            Value::Object(record) => rows.push_record(row, record)?,
            _ => return Err(shape(format!("`{field}` row {row} is not an object"))),
        }
    }
    Ok(())
}

/// A list of positional rows, of records, or (single-column models) of scalars.
fn rows_or_records(field: &str, input: &Value, rows: &mut Rows) -> Result<(), RequestError> {
    let Value::Array(list) = input else {
        return Err(shape(format!("`{field}` must be a list of rows")));
    };
    if list.first().is_some_and(Value::is_object) {
        return records(field, input, rows);
    }
    for (row, values) in list.iter().enumerate() {
        match values {
            Value::Array(values) => rows.push_positional(row, values)?,
            Value::Object(_) => {
                return Err(shape(format!(
                    "`{field}` mixes lists and objects (row {row})"
                )))
            }
            scalar if rows.columns.len() == 1 => {
                rows.push_positional(row, std::slice::from_ref(scalar))?
            }
            _ => return Err(shape(format!("`{field}` row {row} is not a list"))),
        }
    }
    Ok(())
}

/// `{"inputs": {column: [values...]}}`: one list per column, all the same length.
fn column_lists(by_column: &Map<String, Value>, rows: &mut Rows) -> Result<(), RequestError> {
    let names: Vec<String> = by_column.keys().cloned().collect();
    let positions = column_positions(&names, rows.columns)?;
    let mut lists = Vec::with_capacity(names.len());
    for name in &names {
        match &by_column[name] {
            Value::Array(list) => lists.push(list),
            _ => return Err(shape(format!("`inputs.{name}` must be a list of values"))),
        }
    }
    let n_rows = lists.first().map_or(0, |l| l.len());
    if let Some((name, list)) = names.iter().zip(&lists).find(|(_, l)| l.len() != n_rows) {
        return Err(shape(format!(
            "column lists differ in length: `{}` has {n_rows} values, `{name}` has {}",
            names[0],
            list.len()
        )));
    }
    let width = rows.columns.len();
    rows.values = vec![f64::NAN; n_rows * width];
    for ((name, list), &col) in names.iter().zip(&lists).zip(&positions) {
        for (row, value) in list.iter().enumerate() {
            rows.values[row * width + col] = json_number(value, row, name)?;
        }
    }
    rows.n_rows = n_rows;
    Ok(())
}

fn string_list(value: &Value, what: &str) -> Result<Vec<String>, RequestError> {
    let Value::Array(items) = value else {
        return Err(shape(format!("`{what}` must be a list of column names")));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(shape(format!(
                "`{what}` holds `{other}`, not a column name"
            ))),
        })
        .collect()
}

fn shape(message: String) -> RequestError {
    RequestError::Shape(message)
}

/// The matrix under construction, with the mapping from given to model column order.
struct Rows<'a> {
    columns: &'a [String],
    index: HashMap<&'a str, usize>,
    /// For positional input: model column of each given column (identity unless names given).
    positions: Vec<usize>,
    n_rows: usize,
    values: Vec<f64>,
}

impl<'a> Rows<'a> {
    fn new(columns: &'a [String]) -> Rows<'a> {
        Rows {
            columns,
            index: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect(),
            positions: (0..columns.len()).collect(),
            n_rows: 0,
            values: Vec::new(),
        }
    }

    fn reorder(&mut self, given: &[String]) -> Result<(), RequestError> {
        self.positions = column_positions(given, self.columns)?;
        Ok(())
    }

    fn push_positional(&mut self, row: usize, values: &[Value]) -> Result<(), RequestError> {
        if values.len() != self.positions.len() {
            return Err(RequestError::WrongColumnCount {
                row,
                expected: self.positions.len(),
                got: values.len(),
                columns: quoted_list(self.columns),
            });
        }
        let start = self.values.len();
        self.values.resize(start + self.columns.len(), f64::NAN);
        for (value, &col) in values.iter().zip(&self.positions) {
            self.values[start + col] = json_number(value, row, &self.columns[col])?;
        }
        self.n_rows += 1;
        Ok(())
    }

    fn push_record(&mut self, row: usize, record: &Map<String, Value>) -> Result<(), RequestError> {
        let start = self.values.len();
        self.values.resize(start + self.columns.len(), f64::NAN);
        let mut filled = 0;
        for (name, value) in record {
            let Some(&col) = self.index.get(name.as_str()) else {
                return Err(RequestError::Columns(format!(
                    "row {row} has unknown column `{name}`; expected {}",
                    quoted_list(self.columns)
                )));
            };
            self.values[start + col] = json_number(value, row, name)?;
            filled += 1;
        }
        if filled < self.columns.len() {
            let missing = self
                .columns
                .iter()
                .find(|c| !record.contains_key(c.as_str()));
            let column = missing.cloned().unwrap_or_default();
            return Err(RequestError::MissingValue { row, column });
        }
        self.n_rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::request::{parse_invocation, BodyFormat};

    fn columns() -> Vec<String> {
        vec!["a".to_string(), "b".to_string()]
    }

    fn parse(body: &str) -> Result<ParsedRows, RequestError> {
        let rows = parse_invocation(BodyFormat::Json, body.as_bytes(), &columns())?;
        rows.check_rows(1)?;
        Ok(rows)
    }

    const EXPECTED: [f64; 4] = [1.0, 2.0, 3.0, 4.0];

    #[test]
    fn dataframe_split_reorders_named_columns() {
        let rows =
            parse(r#"{"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1], [4, 3]]}}"#)
                .unwrap();
        assert_eq!(
            (rows.n_rows, rows.values.as_slice(), rows.threshold),
            (2, &EXPECTED[..], None)
        );
        let positional =
            parse(r#"{"dataframe_split": {"data": [[1, 2], [3, 4]], "index": [0, 1]}}"#).unwrap();
        assert_eq!(positional.values, EXPECTED);
    }

    #[test]
    fn records_instances_and_inputs_shapes() {
        let bodies = [
            r#"{"dataframe_records": [{"b": 2, "a": 1}, {"a": 3, "b": 4}]}"#,
            r#"{"instances": [[1, 2], [3, 4]]}"#,
            r#"{"instances": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}"#,
            r#"{"inputs": [[1, 2], [3, 4]]}"#,
            r#"{"inputs": {"b": [2, 4], "a": [1, 3]}}"#,
            r#"{"inputs": [["1", "2.0"], [3, 4e0]]}"#,
        ];
        for body in bodies {
            let rows = parse(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                (rows.n_rows, rows.values.as_slice()),
                (2, &EXPECTED[..]),
                "{body}"
            );
        }
    }

    #[test]
    fn null_is_missing_and_threshold_is_read() {
        let rows = parse(r#"{"instances": [[null, 2], [3, 4]], "threshold": 0.5}"#).unwrap();
        assert!(rows.values[0].is_nan());
        assert_eq!(rows.threshold, Some(0.5));
        let rows = parse(r#"{"instances": [[1, 2], [3, 4]], "params": {"threshold": 2}}"#).unwrap();
        assert_eq!(rows.threshold, Some(2.0));
        let err = parse(r#"{"instances": [[1, 2], [3, 4]], "threshold": "high"}"#).unwrap_err();
        assert!(matches!(err, RequestError::BadThreshold(_)), "{err}");
        let err = parse(r#"{"instances": [[1, 2], [3, 4]], "threshold": -5}"#).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        let zero = parse(r#"{"instances": [[1, 2], [3, 4]], "threshold": 0}"#).unwrap();
        assert_eq!(zero.threshold, Some(0.0));
    }

    #[test]
    fn streaming_fields_series_start_and_timestamps() {
        let rows = parse(
            r#"{"series": "pump-7", "start": true, "instances": [[1, 2]], "timestamps": ["2026-12-02T10:00:00Z"]}"#,
        )
        .unwrap();
        assert_eq!(
            rows.stream,
            StreamFields {
                series: Some("pump-7".into()),
                start: true,
                timestamps: Some(vec![1_796_205_600.0]),
            }
        );
        let numeric =
            parse(r#"{"series": 17, "instances": [[1, 2], [3, 4]], "timestamps": [1, 2.5]}"#)
                .unwrap();
        assert_eq!(numeric.stream.series.as_deref(), Some("17"));
        assert_eq!(numeric.stream.timestamps, Some(vec![1.0, 2.5]));
        let cases = [
            (
                r#"{"series": "", "instances": [[1, 2]]}"#,
                "the id is empty",
            ),
            (
                r#"{"series": [1], "instances": [[1, 2]]}"#,
                "not a series id",
            ),
            (
                r#"{"series": "s", "start": "yes", "instances": [[1, 2]]}"#,
                "true or false",
            ),
            (
                r#"{"start": true, "instances": [[1, 2], [3, 4]]}"#,
                "`start` needs a `series`",
            ),
            (
                r#"{"timestamps": [1, 2], "instances": [[1, 2], [3, 4]]}"#,
                "`timestamps` needs a `series`",
            ),
            (
                r#"{"series": "s", "instances": [[1, 2], [3, 4]], "timestamps": [1]}"#,
                "1 timestamps for 2 rows",
            ),
            (
                r#"{"series": "s", "instances": [[1, 2], [3, 4]], "timestamps": [2, 2]}"#,
                "row 1: 2 is not after row 0's",
            ),
            (
                r#"{"series": "s", "instances": [[1, 2]], "timestamps": ["yesterday"]}"#,
                "neither a number nor an RFC 3339 time",
            ),
        ];
        for (body, expected) in cases {
            let message = parse_invocation(BodyFormat::Json, body.as_bytes(), &columns())
                .unwrap_err()
                .to_string();
            assert!(
                message.contains(expected),
                "{body}: {message:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn single_column_models_take_scalars() {
        let one = vec!["x".to_string()];
        let rows =
            parse_invocation(BodyFormat::Json, br#"{"instances": [1, 2, 3]}"#, &one).unwrap();
        assert_eq!(rows.values, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let cases: [(&str, &str); 12] = [
            ("", "empty"),
            ("{\"instances\": [[1, 2]", "malformed JSON"),
            ("[1, 2]", "must be an object"),
            (r#"{"rows": [[1, 2]]}"#, "unknown field(s) `rows`"),
            (
                r#"{"instances": [[1,2],[3,4]], "inputs": [[1,2],[3,4]]}"#,
                "exactly one",
            ),
            (
                r#"{"dataframe_split": {"columns": ["a", "c"], "data": [[1, 2], [3, 4]]}}"#,
                "unknown `c`, missing `b`",
            ),
            (
                r#"{"instances": [[1, 2], [3]]}"#,
                "row 1 has 1 values; the model expects 2",
            ),
            (
                r#"{"instances": [[1, 2], [3, "x"]]}"#,
                "row 1, column `b`: `x` is not a number",
            ),
            (
                r#"{"instances": [[1, 2], [3, true]]}"#,
                "row 1, column `b`: `true`",
            ),
            (
                r#"{"dataframe_records": [{"a": 1, "b": 2}, {"a": 3}]}"#,
                "row 1 is missing column `b`",
            ),
            (
                r#"{"dataframe_records": [{"a": 1, "b": 2, "z": 0}]}"#,
                "unknown column `z`",
            ),
            (
                r#"{"instances": [[1, 2]]}"#,
                "1 rows; the model needs more than its window of 1",
            ),
        ];
        for (body, expected) in cases {
            let message = parse(body).unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "{body:?}: {message:?} lacks {expected:?}"
            );
        }
        let message = parse(r#"{"inputs": {"a": [1, 2], "b": [3]}}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("differ in length"), "{message}");
        let message = parse(r#"{"dataframe_split": {"columns": ["a", "a"], "data": []}}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("duplicated `a`"), "{message}");
    }
}
