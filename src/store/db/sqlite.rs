//! SQLite through rusqlite: statements cached by text, values bound as they are.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{DbResult, Row, Value};

pub(super) struct Connection {
    conn: rusqlite::Connection,
}

impl Connection {
    pub(super) fn open(path: &Path) -> DbResult<Connection> {
        Self::with_dialect(rusqlite::Connection::open(path)?)
    }

    #[cfg(test)]
    pub(super) fn in_memory() -> DbResult<Connection> {
        Self::with_dialect(rusqlite::Connection::open_in_memory()?)
    }

    /// LIKE compares case as PostgreSQL's does, so one statement means one thing on both.
    fn with_dialect(conn: rusqlite::Connection) -> DbResult<Connection> {
        conn.pragma_update(None, "case_sensitive_like", true)?;
        Ok(Connection { conn })
    }

    pub(super) fn raw(&self) -> &rusqlite::Connection {
        &self.conn
    }

    pub(super) fn execute(&self, sql: &str, values: &[Value]) -> DbResult<usize> {
        let mut statement = self.conn.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(values))?)
    }

    pub(super) fn execute_batch(&self, sql: &str) -> DbResult<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    pub(super) fn query(&self, sql: &str, values: &[Value]) -> DbResult<Vec<Row>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns)
                .map(|index| Ok(from_sqlite(row.get_ref(index)?)))
                .collect::<rusqlite::Result<Vec<Value>>>()?;
            out.push(Row { values });
        }
        Ok(out)
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, so a writer never fails upgrading
    /// a read lock while another writes; the busy timeout queues it instead.
    pub(super) fn begin(&self, write: bool) -> DbResult<()> {
        let sql = if write { "BEGIN IMMEDIATE" } else { "BEGIN" };
        Ok(self.conn.execute_batch(sql)?)
    }
}

fn from_sqlite(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(int) => Value::Integer(int),
        ValueRef::Real(real) => Value::Real(real),
        ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => Value::Blob(blob.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(int) => ValueRef::Integer(*int),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(blob) => ValueRef::Blob(blob),
        }))
    }
}
