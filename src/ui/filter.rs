//! The runs table's filter and sort language, as a user types it:
//!
//! ```text
//! metric.f1_pa_best > 0.9 and param.epochs >= 5 and status = FINISHED
//! entry = train and member ~ machine-1
//! ```
//!
//! A condition is `field op value`; conditions are joined by `and`. Fields: `run`, `entry`,
//! `key`, `member`, `status`, `experiment`, `commit`, `duration` (seconds), `start` (sort
//! only), `param.<name>`, `metric.<name>`, `tag.<name>`. Operators: `=`, `!=`, `<`, `<=`,
//! `>`, `>=`, `~` (contains). A value is a number, a bare word, or quoted (`'a b'`,
//! `"a b"`); quoted values always compare as text. Errors say where and what was expected.

use crate::store::ui_queries::{Comparison, ConditionValue, RunCondition, RunField};
use crate::store::RunStatus;

/// What went wrong in a filter, with the 1-based column it went wrong at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter column {column}: {message}")]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

/// Parses a filter; an empty or blank text is no condition at all.
pub fn parse_filter(text: &str) -> Result<Vec<RunCondition>, FilterError> {
    let tokens = tokenize(text)?;
    let mut conditions = Vec::new();
    let mut position = 0;
    while position < tokens.len() {
        if !conditions.is_empty() {
            let token = &tokens[position];
            if !matches!(&token.kind, Kind::Word(word) if word.eq_ignore_ascii_case("and")) {
                return Err(token.error(format!(
                    "expected `and` between conditions, found `{}`",
                    token.text
                )));
            }
            position += 1;
        }
        let field_token = tokens.get(position).ok_or_else(|| FilterError {
            column: text.len() + 1,
            message: "expected a condition after `and`".into(),
        })?;
        let field = match &field_token.kind {
            Kind::Word(word) => parse_field(word).map_err(|message| field_token.error(message))?,
            _ => {
                return Err(field_token.error(format!(
                    "expected a field such as `metric.f1` or `entry`, found `{}`",
                    field_token.text
                )))
            }
        };
        let op_token = tokens.get(position + 1).ok_or_else(|| FilterError {
            column: text.len() + 1,
            message: format!(
                "expected an operator (=, !=, <, <=, >, >=, ~) after `{}`",
                field_token.text
            ),
        })?;
        let comparison = match &op_token.kind {
            Kind::Operator(comparison) => *comparison,
            _ => {
                return Err(op_token.error(format!(
                    "expected an operator (=, !=, <, <=, >, >=, ~), found `{}`",
                    op_token.text
                )))
            }
        };
        let value_token = tokens.get(position + 2).ok_or_else(|| FilterError {
            column: text.len() + 1,
            message: format!("expected a value after `{}`", op_token.text),
        })?;
        let value = match &value_token.kind {
            Kind::Word(word) => match word.parse::<f64>() {
                Ok(number) if number.is_finite() => ConditionValue::Number(number),
                _ => ConditionValue::Text(word.clone()),
            },
            Kind::Quoted(text) => ConditionValue::Text(text.clone()),
            Kind::Operator(_) => {
                return Err(value_token.error(format!(
                    "expected a value, found the operator `{}`",
                    value_token.text
                )))
            }
        };
        let condition = RunCondition {
            field,
            comparison,
            value,
        };
        check_condition(&condition).map_err(|message| value_token.error(message))?;
        conditions.push(condition);
        position += 3;
    }
    Ok(conditions)
}

/// Parses a sort field (`metric.f1`, `param.epochs`, `start`, `duration`, ...).
pub fn parse_sort(text: &str) -> Result<RunField, FilterError> {
    parse_field(text.trim()).map_err(|message| FilterError { column: 1, message })
}

/// The spelling of a field in filters, sorts and column headers.
pub fn field_name(field: &RunField) -> String {
    match field {
        RunField::RunId => "run".into(),
        RunField::Entry => "entry".into(),
        RunField::KeyValue => "key".into(),
        RunField::Member => "member".into(),
        RunField::Status => "status".into(),
        RunField::Experiment => "experiment".into(),
        RunField::CodeVersion => "commit".into(),
        RunField::Start => "start".into(),
        RunField::Duration => "duration".into(),
        RunField::Param(name) => format!("param.{name}"),
        RunField::Metric(name) => format!("metric.{name}"),
        RunField::Tag(name) => format!("tag.{name}"),
    }
}

fn parse_field(word: &str) -> Result<RunField, String> {
    let lower = word.to_ascii_lowercase();
    let prefixed = |prefixes: &[&str]| {
        prefixes.iter().find_map(|prefix| {
            (lower.starts_with(prefix) && word.len() > prefix.len())
                .then(|| word[prefix.len()..].to_string())
        })
    };
    if let Some(name) = prefixed(&["metric.", "metrics."]) {
        return Ok(RunField::Metric(name));
    }
    if let Some(name) = prefixed(&["param.", "params."]) {
        return Ok(RunField::Param(name));
    }
    if let Some(name) = prefixed(&["tag.", "tags."]) {
        return Ok(RunField::Tag(name));
    }
    Ok(match lower.as_str() {
        "run" | "run_id" | "id" => RunField::RunId,
        "entry" | "step" => RunField::Entry,
        "key" | "key_value" => RunField::KeyValue,
        "member" => RunField::Member,
        "status" => RunField::Status,
        "experiment" => RunField::Experiment,
        "commit" | "code" | "code_version" => RunField::CodeVersion,
        "start" | "start_time" | "started" => RunField::Start,
        "duration" => RunField::Duration,
        _ => {
            return Err(format!(
                "unknown field `{word}`; use run, entry, key, member, status, experiment, commit, \
                 duration, param.<name>, metric.<name> or tag.<name>"
            ))
        }
    })
}

/// Rejects conditions that parse but cannot mean anything.
fn check_condition(condition: &RunCondition) -> Result<(), String> {
    let ordered = matches!(
        condition.comparison,
        Comparison::Lt | Comparison::Le | Comparison::Gt | Comparison::Ge
    );
    match (&condition.field, &condition.value) {
        (RunField::Start, _) => Err("`start` can be sorted on, not filtered".into()),
        (RunField::Metric(name), ConditionValue::Text(text)) => Err(format!(
            "metric.{name} compares with a number, not `{text}`"
        )),
        (RunField::Duration, ConditionValue::Text(text)) => Err(format!(
            "duration compares with a number of seconds, not `{text}`"
        )),
        (RunField::Status, value) => {
            let text = match value {
                ConditionValue::Text(text) => text.clone(),
                ConditionValue::Number(number) => number.to_string(),
            };
            if ordered {
                return Err("status compares with = or !=".into());
            }
            if condition.comparison == Comparison::Eq || condition.comparison == Comparison::Ne {
                text.parse::<RunStatus>().map_err(|_| {
                    format!("unknown status `{text}`; expected RUNNING, FINISHED, FAILED or KILLED")
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Normalises the value of a status condition to the stored spelling.
pub fn normalise(mut conditions: Vec<RunCondition>) -> Vec<RunCondition> {
    for condition in &mut conditions {
        if condition.field == RunField::Status {
            if let ConditionValue::Text(text) = &mut condition.value {
                *text = text.to_ascii_uppercase();
            }
        }
    }
    conditions
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    text: String,
    column: usize,
}

#[derive(Debug)]
enum Kind {
    Word(String),
    Quoted(String),
    Operator(Comparison),
}

impl Token {
    fn error(&self, message: String) -> FilterError {
        FilterError {
            column: self.column,
            message,
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let column_of = |index: usize| {
        text[..chars.get(index).map_or(text.len(), |c| c.0)]
            .chars()
            .count()
            + 1
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (_, ch) = chars[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if ch == '\'' || ch == '"' {
            let mut value = String::new();
            i += 1;
            while i < chars.len() && chars[i].1 != ch {
                value.push(chars[i].1);
                i += 1;
            }
            if i == chars.len() {
                return Err(FilterError {
                    column: column_of(start),
                    message: format!("unterminated quote {ch}"),
                });
            }
            i += 1;
            tokens.push(Token {
                text: format!("{ch}{value}{ch}"),
                kind: Kind::Quoted(value),
                column: column_of(start),
            });
            continue;
        }
        let next = chars.get(i + 1).map(|c| c.1);
        let operator = match (ch, next) {
            ('!', Some('=')) | ('<', Some('=')) | ('>', Some('=')) | ('=', Some('=')) => Some(2),
            ('=', _) | ('<', _) | ('>', _) | ('~', _) => Some(1),
            _ => None,
        };
        if let Some(len) = operator {
            let symbol: String = chars[i..i + len].iter().map(|c| c.1).collect();
            let comparison = match symbol.as_str() {
                "=" | "==" => Comparison::Eq,
                "!=" => Comparison::Ne,
                "<" => Comparison::Lt,
                "<=" => Comparison::Le,
                ">" => Comparison::Gt,
                ">=" => Comparison::Ge,
                _ => Comparison::Contains,
            };
            tokens.push(Token {
                kind: Kind::Operator(comparison),
                text: symbol,
                column: column_of(start),
            });
            i += len;
            continue;
        }
        let mut word = String::new();
        while i < chars.len() {
            let c = chars[i].1;
            if c.is_whitespace() || matches!(c, '=' | '<' | '>' | '~' | '!' | '\'' | '"') {
                break;
            }
            word.push(c);
            i += 1;
        }
        if word.is_empty() {
            return Err(FilterError {
                column: column_of(start),
                message: format!("unexpected `{ch}`"),
            });
        }
        tokens.push(Token {
            text: word.clone(),
            kind: Kind::Word(word),
            column: column_of(start),
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_join_with_and() {
        let conditions =
            parse_filter("metric.f1_pa_best > 0.9 and param.window=100 AND member ~ 'machine-1'")
                .unwrap();
        assert_eq!(
            conditions,
            vec![
                RunCondition {
                    field: RunField::Metric("f1_pa_best".into()),
                    comparison: Comparison::Gt,
                    value: ConditionValue::Number(0.9),
                },
                RunCondition {
                    field: RunField::Param("window".into()),
                    comparison: Comparison::Eq,
                    value: ConditionValue::Number(100.0),
                },
                RunCondition {
                    field: RunField::Member,
                    comparison: Comparison::Contains,
                    value: ConditionValue::Text("machine-1".into()),
                },
            ]
        );
        assert!(parse_filter("   ").unwrap().is_empty());
    }

    #[test]
    fn errors_say_where_and_what() {
        let error = parse_filter("metric.f1 >").unwrap_err();
        assert_eq!(error.column, 12);
        assert!(error.message.contains("expected a value"), "{error}");
        let error = parse_filter("metric.f1 > 0.9 entry = train").unwrap_err();
        assert_eq!(error.column, 17);
        assert!(error.message.contains("expected `and`"), "{error}");
        let error = parse_filter("colour = red").unwrap_err();
        assert!(error.message.contains("unknown field `colour`"), "{error}");
        let error = parse_filter("status = DONE").unwrap_err();
        assert!(error.message.contains("unknown status `DONE`"), "{error}");
        let error = parse_filter("metric.f1 > high").unwrap_err();
        assert!(error.message.contains("with a number"), "{error}");
        let error = parse_filter("entry = 'train").unwrap_err();
        assert!(error.message.contains("unterminated"), "{error}");
    }

    #[test]
    fn sort_fields_round_trip_through_their_names() {
        for text in [
            "metric.val_loss",
            "param.epochs",
            "tag.owner",
            "start",
            "duration",
            "member",
        ] {
            assert_eq!(field_name(&parse_sort(text).unwrap()), text);
        }
        assert!(parse_sort("nonsense").is_err());
    }
}
