//! Clauses of a filter (`<identifier> <comparator> <value>`, joined by AND) and of an
//! order_by (`<identifier> [ASC|DESC]`), before their subjects are resolved.

use crate::store::{Comparison, Op, Operand};
use crate::tracking::filter::lexer::{describe, tokenize, Token};
use crate::tracking::filter::SyntaxError;

/// A comparison before its subject is resolved.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Clause {
    /// The text of the clause, for error messages.
    pub text: String,
    pub entity: Entity,
    pub key: String,
    pub comparison: Comparison,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

pub(super) fn parse_clauses(text: &str) -> Result<Vec<Clause>, SyntaxError> {
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
        text: format!("{ident} {}", op.as_str()),
        entity,
        key,
        comparison: Comparison { op, operand },
    };
    Ok((clause, next))
}

/// `<identifier> [ASC|DESC]` → entity, key, ascending (the default).
pub(super) fn parse_order(text: &str) -> Result<(Entity, String, bool), SyntaxError> {
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
