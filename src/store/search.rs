//! Comparisons that run and experiment searches share, and their SQL.
//!
//! The tracking API parses MLflow's filter syntax into these values; the store renders
//! them as SQL with bound parameters, never by splicing user text into a statement. The
//! SQL is the same on both backends: LIKE is case-sensitive on both (the SQLite connection
//! sets `case_sensitive_like`), and ILIKE, which SQLite lacks, is LIKE over `lower()`.

use crate::store::db::Value;
use crate::store::db::{params_vec, Db, DbResult};

use crate::store::error::Result;

/// The comparators of MLflow's search syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `%` and `_` wildcards, case-sensitive.
    Like,
    /// The same, ignoring case.
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// For `IS NULL` and `IS NOT NULL`.
    None,
    Text(String),
    Number(f64),
    List(Vec<String>),
}

/// `<subject> <op> <operand>`, the subject being the caller's.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub op: Op,
    pub operand: Operand,
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl Op {
    /// The comparator as MLflow's syntax (and SQL) spells it.
    pub fn as_str(self) -> &'static str {
        match self {
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
}

impl Comparison {
    /// `expr <op> ?N` with the operand bound as the next parameters in `values`.
    /// `IS NULL` and `IS NOT NULL` are the caller's to express (they test whether a row
    /// exists, not a column), so here they render as the always-true `1 = 1`.
    pub(crate) fn sql(&self, expr: &str, values: &mut Vec<Value>) -> String {
        let mut bind = |value: Value| {
            values.push(value);
            format!("?{}", values.len())
        };
        let operand = match &self.operand {
            Operand::None => return "1 = 1".to_string(),
            Operand::Text(text) => bind(Value::Text(text.clone())),
            Operand::Number(number) => bind(Value::Real(*number)),
            Operand::List(items) => {
                let placeholders: Vec<String> = items
                    .iter()
                    .map(|item| bind(Value::Text(item.clone())))
                    .collect();
                format!("({})", placeholders.join(", "))
            }
        };
        match self.op {
            Op::ILike => format!("lower({expr}) LIKE lower({operand})"),
            Op::IsNull | Op::IsNotNull => "1 = 1".to_string(),
            other => format!("{expr} {} {operand}", other.as_str()),
        }
    }
}

impl ViewType {
    /// The condition on a `lifecycle_stage` column that selects this view.
    pub(crate) fn condition(self, column: &str) -> String {
        match self {
            ViewType::ActiveOnly => format!("{column} = 'active'"),
            ViewType::DeletedOnly => format!("{column} = 'deleted'"),
            ViewType::All => "1 = 1".to_string(),
        }
    }
}

/// One page of ids from `SELECT <id> FROM <from> WHERE <conditions> ORDER BY <order>`, one
/// row past the page read to learn whether more follow. `values` are the parameters
/// already bound in `conditions` and `order`.
pub(crate) fn page_of_ids(
    conn: &Db,
    select: &str,
    conditions: &[String],
    order: &[String],
    mut values: Vec<Value>,
    offset: usize,
    limit: usize,
) -> Result<(Vec<i64>, bool)> {
    values.push(Value::Integer(
        i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
    ));
    values.push(Value::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    let sql = format!(
        "{select} WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
        conditions.join(" AND "),
        order.join(", "),
        values.len() - 1,
        values.len()
    );
    let mut ids: Vec<i64> = conn
        .prepare(&sql)?
        .query_map(params_vec(values), |row| row.get(0))?
        .collect::<DbResult<_>>()?;
    let more = ids.len() > limit;
    ids.truncate(limit);
    Ok((ids, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(op: Op, subject: &str, pattern: &str) -> bool {
        let conn = Db::sqlite_in_memory().unwrap();
        let mut values = vec![Value::Text(subject.to_string())];
        let comparison = Comparison {
            op,
            operand: Operand::Text(pattern.to_string()),
        };
        let sql = format!("SELECT {}", comparison.sql("?1", &mut values));
        conn.query_row(&sql, params_vec(values), |row| row.get::<_, bool>(0))
            .unwrap()
    }

    #[test]
    fn like_is_case_sensitive_and_ilike_is_not() {
        assert!(matches(Op::Like, "lr-Adam", "lr-%"));
        assert!(!matches(Op::Like, "lr-Adam", "LR-%"));
        assert!(matches(Op::ILike, "lr-Adam", "LR-%"));
        assert!(matches(Op::Like, "a_b", "a_b"));
        assert!(matches(Op::Like, "axb", "a_b"), "`_` is any one character");
        assert!(!matches(Op::Like, "ab", "a_b"));
    }

    #[test]
    fn glob_specials_in_a_like_pattern_are_literal() {
        assert!(matches(Op::Like, "a*b?[c]", "a*b?[c]"));
        assert!(!matches(Op::Like, "axxb", "a*b"));
        assert!(!matches(Op::Like, "ac", "a[bc]"));
    }
}
