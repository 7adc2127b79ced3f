//! The store's database connection, SQLite or PostgreSQL, behind one small interface in
//! the shape of rusqlite's: `prepare_cached(sql)?.query_map(args, |row| ...)`,
//! `query_row`, `execute`, and transactions that roll back unless committed.
//!
//! Statements are written once, in the SQL both engines share, with SQLite's `?N`
//! placeholders; PostgreSQL gets them as `$N` (postgres.rs). Values cross as [`Value`],
//! which each backend binds to whatever type the engine expects for that parameter, so a
//! statement does not care that PostgreSQL is strictly typed. The few places the dialects
//! differ ask [`Db::is_postgres`] (the schema's DDL, LIKE vs GLOB).
//!
//! Write transactions are serialised across every process using the store: SQLite's
//! `BEGIN IMMEDIATE` takes the database's write lock, PostgreSQL's takes one
//! transaction-scoped advisory lock. The claim protocol (claims.rs) relies on exactly that.

mod postgres;
mod sqlite;
mod value;

use std::ops::Deref;

pub use value::{FromValue, ToValue, Value};

/// Result of a database call.
pub type DbResult<T> = std::result::Result<T, DbError>;

/// What the database refused, or what a row did not hold.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    /// `query_row` found nothing (see [`OptionalExtension`]).
    #[error("query returned no rows")]
    NoRows,
    /// A column held a value of another type than the code reads.
    #[error("column {index} holds {found}, expected {expected}")]
    Type {
        index: usize,
        expected: &'static str,
        found: &'static str,
    },
}

/// PostgreSQL's own message (with its detail) rather than the driver's "db error".
fn postgres_message(error: &::postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

impl DbError {
    /// Whether the database was busy or locked (SQLite), worth retrying.
    pub(crate) fn is_busy(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// `query_row(...).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRows) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Arguments of a statement: `args![a, b]`, `[a]`, `()` or a `Vec<Value>`.
pub trait Params {
    fn into_values(self) -> Vec<Value>;
}

impl Params for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}

impl Params for &[Value] {
    fn into_values(self) -> Vec<Value> {
        self.to_vec()
    }
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

impl<T: ToValue, const N: usize> Params for [T; N] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}

/// Arguments from an iterator (a list of ids, the binds a search built).
pub(crate) fn params_vec<T: ToValue>(values: impl IntoIterator<Item = T>) -> Vec<Value> {
    values.into_iter().map(|value| value.to_value()).collect()
}

/// The arguments of one statement, each borrowed and converted: `args![run, key, 3]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($crate::store::db::ToValue::to_value(&$arg)),*]
    };
}
pub(crate) use args;

/// One result row, its columns as values.
#[derive(Debug, Clone)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Column `index` as a `T` (`Option<T>` for a nullable column).
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> DbResult<T> {
        let index = index.index();
        let value = self.values.get(index).unwrap_or(&Value::Null);
        T::from_value(value).ok_or(DbError::Type {
            index,
            expected: T::EXPECTED,
            found: value.type_name(),
        })
    }
}

/// A column position (a trait, as in rusqlite, so `row.get::<_, T>(0)` reads well).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// Which engine a connection talks to.
enum Engine {
    Sqlite(sqlite::Connection),
    Postgres(Box<postgres::Connection>),
}

/// One connection to the store's database.
pub struct Db {
    engine: Engine,
}

/// How a transaction locks (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads see one snapshot.
    Read,
    /// Writers queue behind each other.
    Write,
}

impl Db {
    /// An SQLite database file (created if missing).
    pub(crate) fn open_sqlite(path: &std::path::Path) -> DbResult<Db> {
        Ok(Db {
            engine: Engine::Sqlite(sqlite::Connection::open(path)?),
        })
    }

    /// An in-memory SQLite database (schema tests).
    #[cfg(test)]
    pub(crate) fn sqlite_in_memory() -> DbResult<Db> {
        Ok(Db {
            engine: Engine::Sqlite(sqlite::Connection::in_memory()?),
        })
    }

    /// A PostgreSQL database at `url` (`postgresql://user@host:port/db`).
    pub(crate) fn open_postgres(url: &str) -> DbResult<Db> {
        Ok(Db {
            engine: Engine::Postgres(Box::new(postgres::Connection::open(url)?)),
        })
    }

    /// The raw SQLite connection, for its pragmas (store opening, integrity checks).
    pub(crate) fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.engine {
            Engine::Sqlite(conn) => Some(conn.raw()),
            Engine::Postgres(_) => None,
        }
    }

    /// Whether this is PostgreSQL, for the few statements the dialects write differently.
    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// Runs `sql` once with `params`; the number of rows changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> DbResult<usize> {
        let values = params.into_values();
        match &self.engine {
            Engine::Sqlite(conn) => conn.execute(sql, &values),
            Engine::Postgres(conn) => conn.execute(sql, &values),
        }
    }

    /// Runs several `;`-separated statements without arguments (DDL).
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match &self.engine {
            Engine::Sqlite(conn) => conn.execute_batch(sql),
            Engine::Postgres(conn) => conn.execute_batch(sql),
        }
    }

    /// Every row `sql` returns.
    pub fn query(&self, sql: &str, params: impl Params) -> DbResult<Vec<Row>> {
        let values = params.into_values();
        match &self.engine {
            Engine::Sqlite(conn) => conn.query(sql, &values),
            Engine::Postgres(conn) => conn.query(sql, &values),
        }
    }

    /// The first row `sql` returns, mapped; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        let rows = self.query(sql, params)?;
        map(rows.first().ok_or(DbError::NoRows)?)
    }

    /// A statement to run (both backends cache what they prepare, by its text).
    pub fn prepare_cached<'db>(&'db self, sql: &str) -> DbResult<Statement<'db>> {
        Ok(Statement {
            db: self,
            sql: sql.to_string(),
        })
    }

    /// Same as [`Db::prepare_cached`]; kept for statements built once.
    pub fn prepare<'db>(&'db self, sql: &str) -> DbResult<Statement<'db>> {
        self.prepare_cached(sql)
    }

    /// A transaction that takes the store's write lock first (see the module doc).
    pub fn write_transaction(&mut self) -> DbResult<Transaction<'_>> {
        self.begin(Mode::Write)
    }

    /// A transaction for consistent reads.
    pub fn read_transaction(&mut self) -> DbResult<Transaction<'_>> {
        self.begin(Mode::Read)
    }

    fn begin(&mut self, mode: Mode) -> DbResult<Transaction<'_>> {
        match &self.engine {
            Engine::Sqlite(conn) => conn.begin(mode == Mode::Write)?,
            Engine::Postgres(conn) => conn.begin(mode == Mode::Write)?,
        }
        Ok(Transaction {
            db: self,
            open: true,
        })
    }

    fn end(&self, commit: bool) -> DbResult<()> {
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        self.execute_batch(sql)
    }
}

/// An open transaction; derefs to the connection, rolls back when dropped uncommitted.
pub struct Transaction<'db> {
    db: &'db mut Db,
    open: bool,
}

impl Transaction<'_> {
    /// Makes the transaction's writes visible to everyone, all at once.
    pub fn commit(mut self) -> DbResult<()> {
        self.open = false;
        self.db.end(true)
    }
}

impl Deref for Transaction<'_> {
    type Target = Db;

    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to: the caller is already returning an error or panicking.
            let _ = self.db.end(false);
        }
    }
}

/// A statement bound to its connection, run with different arguments.
pub struct Statement<'db> {
    db: &'db Db,
    sql: String,
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl Params) -> DbResult<usize> {
        self.db.execute(&self.sql, params)
    }

    /// Every row, mapped; collect into `DbResult<Vec<_>>` (or any collection).
    pub fn query_map<T, F>(
        &mut self,
        params: impl Params,
        mut map: F,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>>
    where
        F: FnMut(&Row) -> DbResult<T>,
    {
        let rows = self.db.query(&self.sql, params)?;
        let mapped: Vec<DbResult<T>> = rows.iter().map(&mut map).collect();
        Ok(mapped.into_iter())
    }

    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        map: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        self.db.query_row(&self.sql, params, map)
    }

    /// The rows, walked with `while let Some(row) = rows.next()?`.
    pub fn query(&mut self, params: impl Params) -> DbResult<Rows> {
        Ok(Rows {
            rows: self.db.query(&self.sql, params)?.into_iter(),
            current: None,
        })
    }

    /// Whether the statement returns at least one row.
    pub fn exists(&mut self, params: impl Params) -> DbResult<bool> {
        Ok(!self.db.query(&self.sql, params)?.is_empty())
    }
}

/// The rows of [`Statement::query`], in order.
pub struct Rows {
    rows: std::vec::IntoIter<Row>,
    current: Option<Row>,
}

impl Rows {
    /// The next row, if any (a `Result` only so the loop reads as with rusqlite).
    #[allow(clippy::should_implement_trait, clippy::unnecessary_wraps)]
    pub fn next(&mut self) -> DbResult<Option<&Row>> {
        self.current = self.rows.next();
        Ok(self.current.as_ref())
    }
}
