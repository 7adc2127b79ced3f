//! PostgreSQL through the `postgres` crate: SQLite's `?N` placeholders rewritten to `$N`,
//! statements prepared once per connection, and [`Value`]s encoded as whatever type the
//! server inferred for each parameter.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;
use std::mem::ManuallyDrop;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};

use super::{DbResult, Row, Value};

/// The advisory lock every write transaction takes: one writer at a time, as in SQLite,
/// across every process and host using the database. ("flow" in ASCII.)
const WRITE_LOCK: i64 = 0x666c_6f77;

pub(super) struct Connection {
    /// Dropped by hand (see `Drop`), never otherwise.
    inner: ManuallyDrop<RefCell<Inner>>,
}

/// The `postgres` client closes its connection on drop by blocking on a runtime of its
/// own, which tokio refuses inside another runtime (`flow server` drops its stores there at
/// shutdown): there the close happens on a thread of its own.
impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken exactly once, here, and not used after.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Nothing to report a failed close to; the server ends the session either way.
            let _ = std::thread::spawn(move || drop(inner)).join();
        } else {
            drop(inner);
        }
    }
}

struct Inner {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

impl Connection {
    pub(super) fn open(url: &str) -> DbResult<Connection> {
        let client = postgres::Client::connect(url, postgres::NoTls)?;
        Ok(Connection {
            inner: ManuallyDrop::new(RefCell::new(Inner {
                client,
                statements: HashMap::new(),
            })),
        })
    }

    pub(super) fn execute(&self, sql: &str, values: &[Value]) -> DbResult<usize> {
        let mut inner = self.inner.borrow_mut();
        let statement = inner.statement(sql)?;
        let args: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let changed = inner.client.execute(&statement, &args)?;
        Ok(usize::try_from(changed).unwrap_or(usize::MAX))
    }

    pub(super) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        Ok(self.inner.borrow_mut().client.batch_execute(sql)?)
    }

    pub(super) fn query(&self, sql: &str, values: &[Value]) -> DbResult<Vec<Row>> {
        let mut inner = self.inner.borrow_mut();
        let statement = inner.statement(sql)?;
        let args: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
        let rows = inner.client.query(&statement, &args)?;
        rows.iter()
            .map(|row| {
                let values = (0..row.len())
                    .map(|index| row.try_get::<_, Value>(index))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Row { values })
            })
            .collect()
    }

    /// READ COMMITTED: after the lock, each statement sees every write committed before it.
    pub(super) fn begin(&self, write: bool) -> DbResult<()> {
        let mut inner = self.inner.borrow_mut();
        if write {
            inner.client.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            ))?;
        } else {
            inner
                .client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")?;
        }
        Ok(())
    }
}

impl Inner {
    fn statement(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&placeholders(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// `?N` as `$N`, and each bare `?` as the next number, outside quotes and comments.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for inner in chars.by_ref() {
                    out.push(inner);
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits
                    .parse::<usize>()
                    .map_or(next, |n| n.max(next - 1) + 1);
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(c),
        }
    }
    out
}

type BoxError = Box<dyn Error + Sync + Send>;

fn is_text(ty: &Type) -> bool {
    <&str as ToSql>::accepts(ty)
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(int), &Type::INT8) => int.to_sql(ty, out),
            (Value::Integer(int), &Type::INT4) => i32::try_from(*int)?.to_sql(ty, out),
            (Value::Integer(int), &Type::INT2) => i16::try_from(*int)?.to_sql(ty, out),
            (Value::Integer(int), &Type::FLOAT8) => (*int as f64).to_sql(ty, out),
            (Value::Integer(int), &Type::BOOL) => (*int != 0).to_sql(ty, out),
            (Value::Integer(int), ty) if is_text(ty) => int.to_string().to_sql(ty, out),
            (Value::Real(real), &Type::FLOAT8) => real.to_sql(ty, out),
            (Value::Real(real), &Type::FLOAT4) => (*real as f32).to_sql(ty, out),
            (Value::Real(real), ty) if is_text(ty) => real.to_string().to_sql(ty, out),
            (Value::Text(text), ty) if is_text(ty) => text.as_str().to_sql(ty, out),
            (Value::Text(text), &Type::INT8) => text.parse::<i64>()?.to_sql(ty, out),
            (Value::Text(text), &Type::FLOAT8) => text.parse::<f64>()?.to_sql(ty, out),
            (Value::Blob(blob), &Type::BYTEA) => blob.as_slice().to_sql(ty, out),
            (value, ty) => Err(format!("cannot bind {} as {ty}", value.type_name()).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            ref ty if <&str as FromSql>::accepts(ty) => {
                Value::Text(<&str>::from_sql(ty, raw)?.to_string())
            }
            ref ty => return Err(format!("column type {ty} is not read by flow").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_become_numbered_outside_quotes_and_comments() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?2 OR d = ?1"),
            "SELECT a FROM t WHERE b = $1 AND c = $2 OR d = $1"
        );
        assert_eq!(placeholders("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert_eq!(
            placeholders("SELECT '?' , ? -- what?\n, \"a?\""),
            "SELECT '?' , $1 -- what?\n, \"a?\""
        );
        assert_eq!(placeholders("?3 ?"), "$3 $4");
    }
}
