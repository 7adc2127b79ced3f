//! When a request reused a run instead of executing its step: the figure that says what a
//! run saved ("reused by 12 later requests"). One row per reuse by `flow run`; plans and
//! the dashboard only read them.

use crate::store::db::{args, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::error::Result;
use crate::store::queries::resolve_run;
use crate::store::timestamps::{from_micros, now, to_micros};
use crate::store::Store;

/// How often a run was reused, and when last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reuses {
    pub count: u64,
    pub last: Option<DateTime<Utc>>,
}

impl Store {
    /// Records that one request reused each of `runs` (full ids), in one transaction.
    pub fn record_reuses(&self, runs: &[&str]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let at = to_micros(now());
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO reuses (run, at) SELECT id, ?2 FROM runs WHERE run_id = ?1",
            )?;
            for run in runs {
                insert.execute(args![run, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How often requests reused `run` (any unique prefix).
    pub fn reuses(&self, run: &str) -> Result<Reuses> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let (count, last): (i64, Option<i64>) = conn
            .prepare_cached("SELECT count(*), max(at) FROM reuses WHERE run = ?1")?
            .query_row([rowid], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .unwrap_or((0, None));
        Ok(Reuses {
            count: count.max(0) as u64,
            last: last.map(from_micros).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::store::test_support::{begin, day, temp_store};

    #[test]
    fn reuses_are_counted_per_run() {
        let (_dir, store) = temp_store();
        let a = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let b = begin(&store, "train", &BTreeMap::new(), &[], day(2));
        assert_eq!(store.reuses(&a).unwrap().count, 0);
        store.record_reuses(&[&a, &b]).unwrap();
        store.record_reuses(&[&a]).unwrap();
        let reuses = store.reuses(&a).unwrap();
        assert_eq!(reuses.count, 2);
        assert!(reuses.last.is_some());
        assert_eq!(store.reuses(&b).unwrap().count, 1);
        // An unknown id names nothing and records nothing.
        store.record_reuses(&["0".repeat(32).as_str()]).unwrap();
    }
}
