//! Declared parameters: their types, defaults and the canonical text of a value.

use std::fmt;

use crate::spec::node::Node;

#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub kind: ParamType,
    /// Canonical default value; `None` means the parameter is required.
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Float,
    Path,
    Uri,
    Bool,
}

/// A parameter value that does not fit its declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    pub param: String,
    pub expected: ParamType,
    pub value: String,
}

/// The fields MLflow reads in a parameter's mapping; others are warned about and ignored.
pub const PARAMETER_FIELDS: [&str; 2] = ["type", "default"];

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parameter `{}` expects {} but got `{}`",
            self.param,
            self.expected.describe(),
            self.value
        )?;
        let digits = self.value.trim().trim_start_matches(['-', '+']);
        if self.expected == ParamType::Int
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            write!(f, " (out of range: integers are 64-bit)")?;
        }
        Ok(())
    }
}

impl ParamType {
    fn parse(text: &str) -> Option<ParamType> {
        Some(match text {
            "string" | "str" => ParamType::String,
            "int" | "integer" => ParamType::Int,
            "float" | "double" | "number" => ParamType::Float,
            "path" => ParamType::Path,
            "uri" => ParamType::Uri,
            "bool" | "boolean" => ParamType::Bool,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Path => "path",
            ParamType::Uri => "uri",
            ParamType::Bool => "bool",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Int => "an integer (`int`)",
            ParamType::Float => "a number (`float`)",
            ParamType::Path => "a path",
            ParamType::Uri => "a URI",
            ParamType::Bool => "`true` or `false` (`bool`)",
        }
    }
}

impl Parameter {
    /// Validates `value` against the type and returns its canonical text, so that
    /// `1e-3` and `0.001` (or `010` and `10`) are the same parameter value.
    pub fn canonical(&self, value: &str) -> Result<String, TypeError> {
        let bad = || TypeError {
            param: self.name.clone(),
            expected: self.kind,
            value: value.to_string(),
        };
        let trimmed = value.trim();
        match self.kind {
            ParamType::Int => trimmed
                .parse::<i64>()
                .map(|v| v.to_string())
                .map_err(|_| bad()),
            ParamType::Float => match trimmed.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(format_float(v)),
                _ => Err(bad()),
            },
            ParamType::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok("true".to_string()),
                "false" | "0" | "no" => Ok("false".to_string()),
                _ => Err(bad()),
            },
            ParamType::String | ParamType::Path | ParamType::Uri => Ok(value.to_string()),
        }
    }

    /// A `*_time` parameter selects a run by its run_time; it is never compared for reuse.
    pub fn is_time_selector(&self) -> bool {
        self.name.ends_with("_time")
    }

    /// Reads a declaration: a type name (`alpha: float`), a mapping with `type` and
    /// `default`, or nothing (a required string). Returns the parameter and the fields of
    /// its mapping that flow ignores; `Err` is a message for the declaration's line.
    pub(crate) fn read(name: &str, node: &Node) -> Result<(Parameter, Vec<String>), String> {
        let (type_node, default_node, ignored) = match node {
            Node::Null => (None, None, Vec::new()),
            Node::Scalar(_) => (Some(node), None, Vec::new()),
            Node::Map(fields) => {
                let field = |wanted: &str| {
                    fields
                        .iter()
                        .find(|(key, _)| key == wanted)
                        .map(|(_, value)| value)
                };
                let ignored = fields
                    .iter()
                    .map(|(key, _)| key.clone())
                    .filter(|key| !PARAMETER_FIELDS.contains(&key.as_str()))
                    .collect();
                (field("type"), field("default"), ignored)
            }
            Node::Seq(_) => {
                return Err(format!(
                "parameter `{name}` is a list; declare it as a type (`{name}: float`) or as `{{type: float, default: 0.5}}`"
            ))
            }
        };
        let kind = match type_node {
            None | Some(Node::Null) => ParamType::String,
            Some(type_node) => {
                let text = type_node.text().unwrap_or_default();
                ParamType::parse(text).ok_or_else(|| {
                    let shown = match type_node {
                        Node::Scalar(text) => format!("`{text}`"),
                        other => other.kind().to_string(),
                    };
                    format!(
                        "parameter `{name}` has type {shown}; expected one of string, int, float, path, uri, bool"
                    )
                })?
            }
        };
        let mut parameter = Parameter {
            name: name.to_string(),
            kind,
            default: None,
        };
        match default_node {
            None | Some(Node::Null) => {}
            Some(Node::Scalar(text)) => {
                parameter.default = Some(
                    parameter
                        .canonical(text)
                        .map_err(|e| format!("default: {e}"))?,
                );
            }
            Some(other) => {
                return Err(format!(
                    "the default of parameter `{name}` is {}; it must be a single value",
                    other.kind()
                ))
            }
        }
        Ok((parameter, ignored))
    }
}

fn format_float(v: f64) -> String {
    let text = format!("{v}");
    if v.fract() == 0.0 && !text.contains('e') && !text.contains('.') {
        format!("{text}.0")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<(Parameter, Vec<String>), String> {
        Parameter::read("p", &serde_yaml::from_str::<Node>(yaml).unwrap())
    }

    #[test]
    fn canonical_values_make_equal_numbers_equal() {
        let p = Parameter {
            name: "lr".into(),
            kind: ParamType::Float,
            default: None,
        };
        assert_eq!(p.canonical("1e-3").unwrap(), p.canonical("0.001").unwrap());
        assert_eq!(p.canonical("2").unwrap(), "2.0");
        let i = Parameter {
            name: "n".into(),
            kind: ParamType::Int,
            default: None,
        };
        assert_eq!(i.canonical("010").unwrap(), "10");
        assert!(i
            .canonical("1.5")
            .unwrap_err()
            .to_string()
            .contains("`n` expects an integer"));
        assert!(i
            .canonical("99999999999999999999")
            .unwrap_err()
            .to_string()
            .ends_with("(out of range: integers are 64-bit)"));
    }

    #[test]
    fn declarations_in_every_shape() {
        let (p, ignored) = read("float").unwrap();
        assert_eq!((p.kind, p.default), (ParamType::Float, None));
        assert!(ignored.is_empty());
        let (p, _) = read("~").unwrap();
        assert_eq!((p.kind, p.default), (ParamType::String, None));
        let (p, ignored) = read("{type: int, default: 3, description: epochs}").unwrap();
        assert_eq!((p.kind, p.default.as_deref()), (ParamType::Int, Some("3")));
        assert_eq!(ignored, vec!["description"]);
        let (p, _) = read("{default: 99999999999999999999999}").unwrap();
        assert_eq!(p.default.as_deref(), Some("99999999999999999999999"));
    }

    #[test]
    fn wrong_declarations_say_what_is_expected() {
        for (yaml, expected) in [
            ("{type: 5}", "has type `5`; expected one of string, int"),
            ("{type: [int]}", "has type a list; expected one of"),
            (
                "{type: int, default: 99999999999999999999999}",
                "out of range",
            ),
            (
                "{type: int, default: [1, 2]}",
                "is a list; it must be a single value",
            ),
            ("[int]", "`p` is a list; declare it as a type"),
        ] {
            let message = read(yaml).unwrap_err();
            assert!(message.contains(expected), "{yaml}: {message}");
        }
    }
}
