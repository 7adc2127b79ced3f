//! Request fields, read the way MLflow's protobuf JSON writes them: POST bodies are JSON
//! objects, GET requests carry the same fields as query parameters (all strings). int64
//! fields arrive as numbers or strings, doubles as numbers or `"NaN"`, `"Infinity"`,
//! `"-Infinity"`. A wrong field is refused naming its path (`metrics[3].value`).

use serde_json::{Map, Value};

use crate::tracking::error::ApiError;

/// The fields of one request object (the body, or a nested object such as a metric).
#[derive(Debug, Clone)]
pub struct Fields {
    object: Map<String, Value>,
    /// Where this object sits in the request, for error messages (`metrics[3].`).
    prefix: String,
}

impl Fields {
    /// A POST body; an empty body is an empty object.
    pub fn from_body(body: &[u8]) -> Result<Fields, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields::new(Map::new(), String::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Ok(Fields::new(object, String::new())),
            Ok(_) => Err(ApiError::invalid("the request body must be a JSON object")),
            Err(error) => Err(ApiError::invalid(format!(
                "the request body is not valid JSON: {error}"
            ))),
        }
    }

    /// GET query parameters; a repeated name becomes a list.
    pub fn from_query(pairs: Vec<(String, String)>) -> Fields {
        let mut object = Map::new();
        for (name, value) in pairs {
            match object.get_mut(&name) {
                Some(Value::Array(items)) => items.push(Value::String(value)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(value)]);
                }
                None => {
                    object.insert(name, Value::String(value));
                }
            }
        }
        Fields::new(object, String::new())
    }

    fn new(object: Map<String, Value>, prefix: String) -> Fields {
        Fields { object, prefix }
    }

    /// A string field; absent (or null) is None.
    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(self.wrong(name, other, "a string")),
        }
    }

    /// A string field that must be present and non-empty.
    pub fn required_string(&self, name: &str) -> Result<String, ApiError> {
        match self.string(name)? {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(self.missing(name)),
        }
    }

    /// The run id under `run_id`, or under the older `run_uuid`.
    pub fn run_id(&self) -> Result<String, ApiError> {
        match self.string("run_id")?.filter(|id| !id.is_empty()) {
            Some(id) => Ok(id),
            None => match self.string("run_uuid")?.filter(|id| !id.is_empty()) {
                Some(id) => Ok(id),
                None => Err(self.missing("run_id")),
            },
        }
    }

    /// An int64 field: a JSON integer or a string holding one.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(number) => number.as_i64().or_else(|| {
                number
                    .as_f64()
                    .filter(|f| f.fract() == 0.0)
                    .map(|f| f as i64)
            }),
            Value::String(text) => text.trim().parse::<i64>().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.wrong(name, value, "an integer"))
    }

    /// A double field: a JSON number, a numeric string, or NaN / ±Infinity spelled out.
    pub fn float(&self, name: &str) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => match text.trim() {
                "NaN" | "nan" => Some(f64::NAN),
                "Infinity" | "inf" => Some(f64::INFINITY),
                "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
                other => other.parse::<f64>().ok(),
            },
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.wrong(name, value, "a number"))
    }

    /// A list field; absent is empty. A single query parameter is a list of one.
    pub fn list(&self, name: &str) -> Result<Vec<Value>, ApiError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(Value::String(text)) => Ok(vec![Value::String(text.clone())]),
            Some(other) => Err(self.wrong(name, other, "a list")),
        }
    }

    /// A list of strings (experiment ids, order_by clauses).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        self.list(name)?
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text),
                Value::Number(number) => Ok(number.to_string()),
                other => Err(self.wrong(&format!("{name}[{index}]"), &other, "a string")),
            })
            .collect()
    }

    /// A list of objects (metrics, params, tags), each readable as Fields.
    pub fn objects(&self, name: &str) -> Result<Vec<Fields>, ApiError> {
        self.list(name)?
            .into_iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Object(object) => Ok(Fields::new(
                    object,
                    format!("{}{name}[{index}].", self.prefix),
                )),
                other => Err(self.wrong(&format!("{name}[{index}]"), &other, "an object")),
            })
            .collect()
    }

    /// Error for a required field that is missing, in MLflow's words.
    pub fn missing(&self, name: &str) -> ApiError {
        ApiError::invalid(format!(
            "Missing value for required parameter '{}{name}'",
            self.prefix
        ))
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.object.get(name).filter(|value| !value.is_null())
    }

    fn wrong(&self, name: &str, value: &Value, expected: &str) -> ApiError {
        ApiError::invalid(format!(
            "Invalid value {value} for parameter '{}{name}' supplied: expected {expected}",
            self.prefix
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_arrive_as_protobuf_json_writes_them() {
        let fields = Fields::from_body(
            br#"{"step": "12", "timestamp": 1700000000000, "value": "NaN", "big": 1e3,
                 "inf": "-Infinity", "text": 5}"#,
        )
        .unwrap();
        assert_eq!(fields.int("step").unwrap(), Some(12));
        assert_eq!(fields.int("timestamp").unwrap(), Some(1_700_000_000_000));
        assert!(fields.float("value").unwrap().unwrap().is_nan());
        assert_eq!(fields.int("big").unwrap(), Some(1000));
        assert_eq!(fields.float("inf").unwrap(), Some(f64::NEG_INFINITY));
        assert_eq!(fields.int("absent").unwrap(), None);
        let error = fields.string("text").unwrap_err();
        assert!(error.message.contains("'text'"), "{}", error.message);
    }

    #[test]
    fn nested_errors_name_their_path() {
        let body = Fields::from_body(
            br#"{"metrics": [{"key": "a", "value": 1}, {"key": "b", "value": "x"}]}"#,
        )
        .unwrap();
        let metrics = body.objects("metrics").unwrap();
        assert_eq!(metrics[0].float("value").unwrap(), Some(1.0));
        let error = metrics[1].float("value").unwrap_err();
        assert_eq!(error.code, "INVALID_PARAMETER_VALUE");
        assert!(
            error.message.contains("'metrics[1].value'"),
            "{}",
            error.message
        );
        let missing = metrics[1].required_string("run_id").unwrap_err();
        assert!(
            missing.message.contains("'metrics[1].run_id'"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        assert!(Fields::from_body(b"[1, 2]").is_err());
        assert!(Fields::from_body(b"{").is_err());
        assert!(Fields::from_body(b"").is_ok());
    }

    #[test]
    fn query_parameters_repeat_into_lists() {
        let fields = Fields::from_query(vec![
            ("run_id".into(), "abc".into()),
            ("experiment_ids".into(), "1".into()),
            ("experiment_ids".into(), "2".into()),
        ]);
        assert_eq!(fields.run_id().unwrap(), "abc");
        assert_eq!(fields.strings("experiment_ids").unwrap(), vec!["1", "2"]);
    }
}
