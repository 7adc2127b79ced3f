//! The tokens of MLflow's search syntax: identifiers (with quoted parts unquoted), quoted
//! strings, numbers, comparators, parentheses, commas and keywords.

use crate::store::Op;
use crate::tracking::filter::SyntaxError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
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

pub(super) fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
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

pub(super) fn describe(token: &Token) -> String {
    match token {
        Token::Ident { text, .. } => format!("`{}`", text.replace('\u{0}', ".")),
        Token::Str(value) => format!("'{value}'"),
        Token::Number(value) => format!("`{value}`"),
        Token::Op(op) => format!("`{}`", op.as_str()),
        Token::Open => "`(`".to_string(),
        Token::Close => "`)`".to_string(),
        Token::Comma => "`,`".to_string(),
        Token::Keyword(word) => format!("`{word}`"),
    }
}
