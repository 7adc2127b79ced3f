//! MLflow's search syntax: `filter` strings (`metrics.loss < 0.5 and params.lr = '0.01'`)
//! and `order_by` clauses (`metrics.loss DESC`), parsed into the store's search values.
//!
//! The grammar is MLflow's: comparisons joined by AND (OR is refused); an identifier is
//! `<entity>.<key>` with the key optionally in backticks or double quotes, the entity one of
//! `metrics`, `params`, `tags`, `attributes` (and MLflow's aliases), a bare name being an
//! attribute; metrics compare with numbers, params and tags with quoted strings
//! (`=`, `!=`, `LIKE`, `ILIKE`, `IS [NOT] NULL`), `run_id` also with `[NOT] IN (...)`.

use crate::store::{
    Comparison, ExperimentField, ExperimentFilter, ExperimentSubject, Op, Operand, RunField,
    RunSearchFilter, RunSubject,
};

/// Why a filter or order_by clause was refused; the message quotes the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

/// The filters of a `runs/search` request.
pub fn run_filters(text: &str) -> Result<Vec<RunSearchFilter>, SyntaxError> {
    parse_clauses(text)?
        .into_iter()
        .map(|clause| {
            let subject = run_subject(&clause.entity, &clause.key)?;
            check_comparison(&subject, &clause)?;
            Ok(RunSearchFilter {
                subject,
                comparison: clause.comparison,
            })
        })
        .collect()
}

/// One `order_by` entry of a `runs/search` request: the subject and whether ascending.
pub fn run_order(text: &str) -> Result<(RunSubject, bool), SyntaxError> {
    let (entity, key, ascending) = parse_order(text)?;
    Ok((run_subject(&entity, &key)?, ascending))
}

/// The filters of an `experiments/search` request.
pub fn experiment_filters(text: &str) -> Result<Vec<ExperimentFilter>, SyntaxError> {
    parse_clauses(text)?
        .into_iter()
        .map(|clause| {
            let subject = experiment_subject(&clause.entity, &clause.key)?;
            let op = clause.comparison.op;
            let allowed = match subject {
                ExperimentSubject::Tag(_) => string_ops(op, false),
                ExperimentSubject::Field(ExperimentField::CreationTime)
                | ExperimentSubject::Field(ExperimentField::LastUpdateTime) => numeric_ops(op),
                ExperimentSubject::Field(ExperimentField::Id) => {
                    matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn)
                }
                ExperimentSubject::Field(ExperimentField::Name) => {
                    matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike)
                }
            };
            if !allowed {
                return Err(bad_comparator(&clause));
            }
            let numeric = matches!(
                subject,
                ExperimentSubject::Field(ExperimentField::CreationTime)
                    | ExperimentSubject::Field(ExperimentField::LastUpdateTime)
            );
            check_operand(&clause, numeric)?;
            Ok(ExperimentFilter {
                subject,
                comparison: clause.comparison,
            })
        })
        .collect()
}

/// One `order_by` entry of an `experiments/search` request.
pub fn experiment_order(text: &str) -> Result<(ExperimentField, bool), SyntaxError> {
    let (entity, key, ascending) = parse_order(text)?;
    match experiment_subject(&entity, &key)? {
        ExperimentSubject::Field(field) => Ok((field, ascending)),
        ExperimentSubject::Tag(_) => Err(SyntaxError(format!(
            "invalid order_by clause `{text}`: experiments order by name, experiment_id, \
             creation_time or last_update_time"
        ))),
    }
}

/// A comparison before its subject is resolved.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    /// The text of the clause, for error messages.
    text: String,
    entity: Entity,
    key: String,
    comparison: Comparison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An identifier, its quoted parts already unquoted; `quoted` when it was one quoted
    /// string (usable as a value, as MLflow allows `params.x = "a"`).
    Ident {
        text: String,
        quoted: bool,
    },
    Str(String),
    Number(f64),
    Op(Op),
    Open,
    Close,
    Comma,
    /// A keyword, upper-cased: AND, OR, NOT, IS, NULL, LIKE, ILIKE, IN, ASC, DESC.
    Keyword(String),
}

const KEYWORDS: [&str; 10] = [
    "AND", "OR", "NOT", "IS", "NULL", "LIKE", "ILIKE", "IN", "ASC", "DESC",
];

fn parse_clauses(text: &str) -> Result<Vec<Clause>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut clauses = Vec::new();
    let mut position = 0;
    while position < tokens.len() {
        if !clauses.is_empty() {
            match &tokens[position] {
                Token::Keyword(word) if word == "AND" => position += 1,
                Token::Keyword(word) if word == "OR" => {
                    return Err(SyntaxError(format!(
                        "invalid filter `{text}`: OR is not supported, only clauses joined by AND"
                    )))
                }
                other => {
                    return Err(SyntaxError(format!(
                        "invalid filter `{text}`: expected AND between clauses, found {}",
                        describe(other)
                    )))
                }
            }
        }
        let (clause, next) = parse_clause(text, &tokens, position)?;
        clauses.push(clause);
        position = next;
    }
    Ok(clauses)
}

/// One comparison starting at `start`; returns it and the index after it.
fn parse_clause(
    text: &str,
    tokens: &[Token],
    start: usize,
) -> Result<(Clause, usize), SyntaxError> {
    let incomplete = || {
        SyntaxError(format!(
            "invalid filter `{text}`: the last clause is incomplete"
        ))
    };
    let Some(Token::Ident { text: ident, .. }) = tokens.get(start) else {
        return Err(SyntaxError(format!(
            "invalid filter `{text}`: expected an identifier such as `metrics.loss`, found {}",
            tokens.get(start).map_or("the end".to_string(), describe)
        )));
    };
    let (entity, key) = split_identifier(ident)?;
    let mut position = start + 1;
    let keyword =
        |at: usize, word: &str| matches!(tokens.get(at), Some(Token::Keyword(w)) if w == word);
    let op = match tokens.get(position).ok_or_else(incomplete)? {
        Token::Op(op) => *op,
        Token::Keyword(word) if word == "LIKE" => Op::Like,
        Token::Keyword(word) if word == "ILIKE" => Op::ILike,
        Token::Keyword(word) if word == "IN" => Op::In,
        Token::Keyword(word) if word == "NOT" && keyword(position + 1, "IN") => {
            position += 1;
            Op::NotIn
        }
        Token::Keyword(word) if word == "IS" => {
            let negated = keyword(position + 1, "NOT");
            let null_at = position + 1 + usize::from(negated);
            if !keyword(null_at, "NULL") {
                return Err(SyntaxError(format!(
                    "invalid filter `{text}`: expected `IS NULL` or `IS NOT NULL`"
                )));
            }
            position = null_at;
            if negated {
                Op::IsNotNull
            } else {
                Op::IsNull
            }
        }
        other => {
            return Err(SyntaxError(format!(
                "invalid filter `{text}`: expected a comparison after `{ident}`, found {}",
                describe(other)
            )))
        }
    };
    position += 1;
    // `position` is now the first token after the comparator; `next` the one after the clause.
    let mut next = position + 1;
    let operand = match op {
        Op::IsNull | Op::IsNotNull => {
            next = position;
            Operand::None
        }
        Op::In | Op::NotIn => {
            if tokens.get(position) != Some(&Token::Open) {
                return Err(SyntaxError(format!(
                    "invalid filter `{text}`: IN takes a parenthesised list of quoted strings"
                )));
            }
            position += 1;
            let mut items = Vec::new();
            loop {
                match tokens.get(position).ok_or_else(incomplete)? {
                    Token::Str(item) => items.push(item.clone()),
                    Token::Ident {
                        text: item,
                        quoted: true,
                    } => items.push(item.clone()),
                    other => {
                        return Err(SyntaxError(format!(
                            "invalid filter `{text}`: IN lists hold quoted strings, found {}",
                            describe(other)
                        )))
                    }
                }
                position += 1;
                match tokens.get(position).ok_or_else(incomplete)? {
                    Token::Comma => position += 1,
                    Token::Close => break,
                    other => {
                        return Err(SyntaxError(format!(
                            "invalid filter `{text}`: expected `,` or `)` in an IN list, found {}",
                            describe(other)
                        )))
                    }
                }
            }
            next = position + 1;
            Operand::List(items)
        }
        _ => match tokens.get(position).ok_or_else(incomplete)? {
            Token::Str(value) => Operand::Text(value.clone()),
            Token::Ident {
                text: value,
                quoted: true,
            } => Operand::Text(value.clone()),
            Token::Number(value) => Operand::Number(*value),
            other => {
                return Err(SyntaxError(format!(
                    "invalid filter `{text}`: expected a value after the comparison, found {}",
                    describe(other)
                )))
            }
        },
    };
    let clause = Clause {
        text: format!("{ident} {}", op_text(op)),
        entity,
        key,
        comparison: Comparison { op, operand },
    };
    Ok((clause, next))
}

/// `<identifier> [ASC|DESC]` → entity, key, ascending (the default).
fn parse_order(text: &str) -> Result<(Entity, String, bool), SyntaxError> {
    let tokens = tokenize(text)?;
    let invalid = || {
        SyntaxError(format!(
            "invalid order_by clause `{text}`: expected `<identifier> [ASC|DESC]`"
        ))
    };
    let (ident, ascending) = match tokens.as_slice() {
        [Token::Ident { text, .. }] => (text, true),
        [Token::Ident { text, .. }, Token::Keyword(word)] if word == "ASC" => (text, true),
        [Token::Ident { text, .. }, Token::Keyword(word)] if word == "DESC" => (text, false),
        _ => return Err(invalid()),
    };
    let (entity, key) = split_identifier(ident)?;
    Ok((entity, key, ascending))
}

fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let character = chars[at];
        match character {
            _ if character.is_whitespace() => at += 1,
            '(' | ')' | ',' => {
                tokens.push(match character {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
                at += 1;
            }
            '\'' => {
                let (value, next) = quoted(text, &chars, at)?;
                tokens.push(Token::Str(value));
                at = next;
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[at..chars.len().min(at + 2)].iter().collect();
                let (op, width) = match two.as_str() {
                    "!=" | "<>" => (Op::Ne, 2),
                    "<=" => (Op::Le, 2),
                    ">=" => (Op::Ge, 2),
                    "==" => (Op::Eq, 2),
                    _ => match character {
                        '=' => (Op::Eq, 1),
                        '<' => (Op::Lt, 1),
                        '>' => (Op::Gt, 1),
                        _ => {
                            return Err(SyntaxError(format!(
                                "invalid filter `{text}`: unexpected `!`"
                            )))
                        }
                    },
                };
                tokens.push(Token::Op(op));
                at += width;
            }
            _ if character.is_ascii_digit()
                || (matches!(character, '-' | '+' | '.')
                    && chars
                        .get(at + 1)
                        .is_some_and(|next| next.is_ascii_digit() || *next == '.')) =>
            {
                let start = at;
                at += 1;
                while at < chars.len()
                    && (chars[at].is_ascii_alphanumeric()
                        || chars[at] == '.'
                        || (matches!(chars[at], '-' | '+') && matches!(chars[at - 1], 'e' | 'E')))
                {
                    at += 1;
                }
                let literal: String = chars[start..at].iter().collect();
                let number = literal.parse::<f64>().map_err(|_| {
                    SyntaxError(format!(
                        "invalid filter `{text}`: `{literal}` is not a number"
                    ))
                })?;
                tokens.push(Token::Number(number));
            }
            _ if is_identifier_char(character) || character == '"' || character == '`' => {
                let (ident, quoted_whole, next) = identifier(text, &chars, at)?;
                let upper = ident.to_ascii_uppercase();
                if !quoted_whole && KEYWORDS.contains(&upper.as_str()) {
                    tokens.push(Token::Keyword(upper));
                } else {
                    tokens.push(Token::Ident {
                        text: ident,
                        quoted: quoted_whole,
                    });
                }
                at = next;
            }
            other => {
                return Err(SyntaxError(format!(
                    "invalid filter `{text}`: unexpected character `{other}`"
                )))
            }
        }
    }
    Ok(tokens)
}

fn is_identifier_char(character: char) -> bool {
    character.is_alphanumeric() || matches!(character, '_' | '.')
}

/// A run of identifier characters and quoted parts (`metrics."my loss"`), unquoted; whether
/// it was a single quoted part; the index after it.
fn identifier(
    text: &str,
    chars: &[char],
    start: usize,
) -> Result<(String, bool, usize), SyntaxError> {
    let mut ident = String::new();
    let mut at = start;
    let mut parts = 0;
    let mut quoted_parts = 0;
    while at < chars.len() {
        let character = chars[at];
        if character == '"' || character == '`' {
            let (value, next) = quoted(text, chars, at)?;
            // Keep a dot-separated key's quotes as a marker that the dot belongs to the key.
            if ident.is_empty() {
                ident.push_str(&value);
            } else {
                ident.push('\u{0}');
                ident.push_str(&value);
            }
            at = next;
            parts += 1;
            quoted_parts += 1;
        } else if is_identifier_char(character) {
            while at < chars.len() && is_identifier_char(chars[at]) {
                ident.push(chars[at]);
                at += 1;
            }
            parts += 1;
        } else {
            break;
        }
    }
    Ok((ident, parts == 1 && quoted_parts == 1, at))
}

/// A string between `chars[start]` and its matching quote; a doubled quote is one quote.
fn quoted(text: &str, chars: &[char], start: usize) -> Result<(String, usize), SyntaxError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut at = start + 1;
    while at < chars.len() {
        if chars[at] == quote {
            if chars.get(at + 1) == Some(&quote) {
                value.push(quote);
                at += 2;
                continue;
            }
            return Ok((value, at + 1));
        }
        if chars[at] == '\\' && chars.get(at + 1) == Some(&quote) {
            value.push(quote);
            at += 2;
            continue;
        }
        value.push(chars[at]);
        at += 1;
    }
    Err(SyntaxError(format!(
        "invalid filter `{text}`: a {quote}-quoted string is not closed"
    )))
}

/// `metrics.loss` → (Metric, "loss"); `"metrics"."a.b"` keeps the key's dot; a bare name is
/// an attribute.
fn split_identifier(ident: &str) -> Result<(Entity, String), SyntaxError> {
    let (entity, key) = match ident.split_once('\u{0}') {
        // `entity."quoted key"`: the entity text ends with the dot before the quote.
        Some((entity, key)) => (entity.trim_end_matches('.'), key.to_string()),
        None => match ident.split_once('.') {
            Some((entity, key)) => (entity, key.to_string()),
            None => ("attributes", ident.to_string()),
        },
    };
    let entity = match entity {
        "metric" | "metrics" => Entity::Metric,
        "param" | "params" | "parameter" | "parameters" => Entity::Param,
        "tag" | "tags" => Entity::Tag,
        "attribute" | "attributes" | "attr" | "run" => Entity::Attribute,
        "dataset" | "datasets" => Entity::Dataset,
        other => {
            return Err(SyntaxError(format!(
            "invalid entity type `{other}` in `{}`: expected metrics, params, tags or attributes",
            ident.replace('\u{0}', ".")
        )))
        }
    };
    if key.is_empty() {
        return Err(SyntaxError(format!(
            "`{}` names no key",
            ident.replace('\u{0}', ".")
        )));
    }
    Ok((entity, key))
}

fn run_subject(entity: &Entity, key: &str) -> Result<RunSubject, SyntaxError> {
    Ok(match entity {
        Entity::Metric => RunSubject::Metric(key.to_string()),
        Entity::Param => RunSubject::Param(key.to_string()),
        Entity::Tag => RunSubject::Tag(key.to_string()),
        Entity::Attribute => RunSubject::Field(match key {
            "run_id" => RunField::RunId,
            "run_name" | "run name" | "Run name" | "Run Name" => RunField::RunName,
            "user_id" => RunField::UserId,
            "status" => RunField::Status,
            "start_time" | "created" | "Created" => RunField::StartTime,
            "end_time" => RunField::EndTime,
            "experiment_id" => RunField::ExperimentId,
            "artifact_uri" => {
                return Err(SyntaxError(
                    "searching on `artifact_uri` is not supported by flow server: every run's \
                     artifact URI is derived from its experiment and run id"
                        .to_string(),
                ))
            }
            other => {
                return Err(SyntaxError(format!(
                    "invalid attribute key `{other}`: expected one of run_id, run_name, user_id, \
                     status, start_time, end_time"
                )))
            }
        }),
        Entity::Dataset => {
            return Err(SyntaxError(
                "searching on datasets is not supported by flow server".to_string(),
            ))
        }
    })
}

fn experiment_subject(entity: &Entity, key: &str) -> Result<ExperimentSubject, SyntaxError> {
    match entity {
        Entity::Tag => Ok(ExperimentSubject::Tag(key.to_string())),
        Entity::Attribute => Ok(ExperimentSubject::Field(match key {
            "name" => ExperimentField::Name,
            "experiment_id" => ExperimentField::Id,
            "creation_time" => ExperimentField::CreationTime,
            "last_update_time" => ExperimentField::LastUpdateTime,
            other => {
                return Err(SyntaxError(format!(
                    "invalid attribute key `{other}`: expected one of name, experiment_id, \
                     creation_time, last_update_time"
                )))
            }
        })),
        _ => Err(SyntaxError(format!(
            "experiments are searched by attributes and tags, not by `{key}` of that kind"
        ))),
    }
}

/// MLflow's comparator and value rules for each kind of run subject.
fn check_comparison(subject: &RunSubject, clause: &Clause) -> Result<(), SyntaxError> {
    let op = clause.comparison.op;
    let (allowed, numeric) = match subject {
        RunSubject::Metric(_) => (numeric_ops(op), true),
        RunSubject::Param(_) | RunSubject::Tag(_) => (string_ops(op, false), false),
        RunSubject::Field(RunField::StartTime | RunField::EndTime) => (numeric_ops(op), true),
        RunSubject::Field(RunField::RunId) => (string_ops(op, true), false),
        RunSubject::Field(_) => (matches!(op, Op::Eq | Op::Ne | Op::Like | Op::ILike), false),
    };
    if !allowed {
        return Err(bad_comparator(clause));
    }
    check_operand(clause, numeric)
}

fn numeric_ops(op: Op) -> bool {
    matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
}

fn string_ops(op: Op, lists: bool) -> bool {
    match op {
        Op::Eq | Op::Ne | Op::Like | Op::ILike => true,
        Op::IsNull | Op::IsNotNull => !lists,
        Op::In | Op::NotIn => lists,
        _ => false,
    }
}

fn check_operand(clause: &Clause, numeric: bool) -> Result<(), SyntaxError> {
    match (&clause.comparison.operand, numeric) {
        (Operand::Number(_), false) => Err(SyntaxError(format!(
            "`{}` expects a quoted string value (e.g. 'my-value')",
            clause.text
        ))),
        (Operand::Text(_), true) => Err(SyntaxError(format!(
            "`{}` expects a numeric value",
            clause.text
        ))),
        _ => Ok(()),
    }
}

fn bad_comparator(clause: &Clause) -> SyntaxError {
    SyntaxError(format!(
        "invalid comparator in `{}` for a {} key",
        clause.text,
        match clause.entity {
            Entity::Metric => "metric",
            Entity::Param => "param",
            Entity::Tag => "tag",
            Entity::Attribute => "attribute",
            Entity::Dataset => "dataset",
        }
    ))
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Like => "LIKE",
        Op::ILike => "ILIKE",
        Op::In => "IN",
        Op::NotIn => "NOT IN",
        Op::IsNull => "IS NULL",
        Op::IsNotNull => "IS NOT NULL",
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident { text, .. } => format!("`{}`", text.replace('\u{0}', ".")),
        Token::Str(value) => format!("'{value}'"),
        Token::Number(value) => format!("`{value}`"),
        Token::Op(op) => format!("`{}`", op_text(*op)),
        Token::Open => "`(`".to_string(),
        Token::Close => "`)`".to_string(),
        Token::Comma => "`,`".to_string(),
        Token::Keyword(word) => format!("`{word}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(subject: RunSubject, op: Op, operand: Operand) -> RunSearchFilter {
        RunSearchFilter {
            subject,
            comparison: Comparison { op, operand },
        }
    }

    #[test]
    fn clauses_of_every_kind() {
        let parsed = run_filters(
            "metrics.loss < 0.5 and params.lr = '0.01' AND tags.`mlflow.user` != 'ana' \
             and attributes.status = 'FINISHED' and run_name LIKE 'brave-%' \
             and params.\"batch size\" IS NOT NULL and tags.note is null \
             and run_id IN ('a', 'b') and start_time >= 1700000000000 and metrics.f1 >= -1e-3",
        )
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                filter(
                    RunSubject::Metric("loss".into()),
                    Op::Lt,
                    Operand::Number(0.5)
                ),
                filter(
                    RunSubject::Param("lr".into()),
                    Op::Eq,
                    Operand::Text("0.01".into())
                ),
                filter(
                    RunSubject::Tag("mlflow.user".into()),
                    Op::Ne,
                    Operand::Text("ana".into())
                ),
                filter(
                    RunSubject::Field(RunField::Status),
                    Op::Eq,
                    Operand::Text("FINISHED".into())
                ),
                filter(
                    RunSubject::Field(RunField::RunName),
                    Op::Like,
                    Operand::Text("brave-%".into())
                ),
                filter(
                    RunSubject::Param("batch size".into()),
                    Op::IsNotNull,
                    Operand::None
                ),
                filter(RunSubject::Tag("note".into()), Op::IsNull, Operand::None),
                filter(
                    RunSubject::Field(RunField::RunId),
                    Op::In,
                    Operand::List(vec!["a".into(), "b".into()])
                ),
                filter(
                    RunSubject::Field(RunField::StartTime),
                    Op::Ge,
                    Operand::Number(1.7e12)
                ),
                filter(
                    RunSubject::Metric("f1".into()),
                    Op::Ge,
                    Operand::Number(-1e-3)
                ),
            ]
        );
    }

    #[test]
    fn quotes_inside_values_and_keys_with_dots() {
        assert_eq!(
            run_filters("params.note = 'it''s' and metrics.\"val.loss\" = 1").unwrap(),
            vec![
                filter(
                    RunSubject::Param("note".into()),
                    Op::Eq,
                    Operand::Text("it's".into())
                ),
                filter(
                    RunSubject::Metric("val.loss".into()),
                    Op::Eq,
                    Operand::Number(1.0)
                ),
            ]
        );
        assert_eq!(
            run_filters("params.optimizer = \"adam\"").unwrap(),
            vec![filter(
                RunSubject::Param("optimizer".into()),
                Op::Eq,
                Operand::Text("adam".into())
            )]
        );
        assert_eq!(run_filters("").unwrap(), vec![]);
        assert_eq!(run_filters("   ").unwrap(), vec![]);
    }

    #[test]
    fn refusals_name_the_problem() {
        for (text, needle) in [
            (
                "metrics.loss < 0.5 or params.lr = '1'",
                "OR is not supported",
            ),
            ("metrics.loss < 'x'", "expects a numeric value"),
            ("params.lr > '1'", "invalid comparator"),
            ("params.lr = 1", "expects a quoted string"),
            ("foo.bar = 1", "invalid entity type `foo`"),
            ("attributes.colour = 'x'", "invalid attribute key `colour`"),
            ("params.lr = 'x", "not closed"),
            ("metrics.loss <", "incomplete"),
            ("metrics.loss < 1 metrics.f1 > 2", "expected AND"),
            ("tags.x IN ('a')", "invalid comparator"),
            ("datasets.name = 'x'", "datasets"),
            (
                "params.a = 'x' ; drop table runs",
                "unexpected character `;`",
            ),
        ] {
            let error = run_filters(text).expect_err(text);
            assert!(error.0.contains(needle), "{text}: {}", error.0);
        }
    }

    #[test]
    fn order_by_clauses() {
        assert_eq!(
            run_order("metrics.loss DESC").unwrap(),
            (RunSubject::Metric("loss".into()), false)
        );
        assert_eq!(
            run_order("start_time").unwrap(),
            (RunSubject::Field(RunField::StartTime), true)
        );
        assert_eq!(
            run_order("params.`batch size` asc").unwrap(),
            (RunSubject::Param("batch size".into()), true)
        );
        assert!(run_order("metrics.loss sideways").is_err());
        assert_eq!(
            experiment_order("last_update_time DESC").unwrap(),
            (ExperimentField::LastUpdateTime, false)
        );
        assert!(experiment_order("tags.x").is_err());
    }

    #[test]
    fn experiment_filters_on_names_and_tags() {
        let parsed = experiment_filters("name LIKE 'smd-%' and tags.team = 'ops'").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].subject,
            ExperimentSubject::Field(ExperimentField::Name)
        );
        assert_eq!(parsed[1].subject, ExperimentSubject::Tag("team".into()));
        assert!(experiment_filters("metrics.loss < 1").is_err());
    }
}
