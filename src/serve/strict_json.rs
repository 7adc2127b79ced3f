//! JSON text into a [`serde_json::Value`], refusing an object that names a key twice.
//! serde_json alone keeps the last value, so `{"a": 1, "a": 9}` as a record, or a body with
//! two `instances`, would be scored from data the client may not have meant; a 400 that names
//! the key is safer.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::serve::request::RequestError;

/// Parses JSON text (one value, nothing after it), refusing duplicated object keys.
pub fn parse_strict(body: &[u8]) -> Result<Value, RequestError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue::deserialize(&mut deserializer)
        .and_then(|StrictValue(value)| deserializer.end().map(|()| value))
        .map_err(|e| RequestError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// A [`Value`] deserialized through [`StrictVisitor`].
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds a [`Value`] as serde_json does, but fails on a duplicated object key.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{key}`"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::json_body::parse_json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let columns = vec!["a".to_string(), "b".to_string()];
        for body in [
            r#"{"instances": [[1, 2], [3, 4]], "instances": [[5, 6], [7, 8]]}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2, "a": 3}, {"a": 3, "b": 4}]}"#,
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]], "data": []}}"#,
        ] {
            let message = parse_json(body.as_bytes(), &columns)
                .unwrap_err()
                .to_string();
            assert!(message.contains("duplicate key"), "{body}: {message}");
        }
        let value = parse_strict(br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}]}"#).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": [1, -2, 3.5, "x", null, true, {"b": {}}]})
        );
        assert!(parse_strict(b"{} {}").is_err(), "trailing data");
    }
}
