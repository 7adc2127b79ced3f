//! Metric points: batched ingestion and read-back.

use std::collections::BTreeMap;

use rusqlite::{params, TransactionBehavior};

use crate::store::error::Result;
use crate::store::queries::resolve_run;
use crate::store::Store;

/// One logged value of a metric at a step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

impl Store {
    /// Appends a batch of points in one transaction (one fsync-free WAL append in
    /// synchronous=NORMAL), reusing one prepared statement for every row.
    pub fn log_metrics(&self, run: &str, metrics: &[Metric]) -> Result<()> {
        let mut conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO metrics (run, key, value, step, timestamp) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for metric in metrics {
                // SQLite turns a NaN REAL into NULL; store that explicitly and read it back as NaN.
                let value = (!metric.value.is_nan()).then_some(metric.value);
                insert.execute(params![rowid, metric.key, value, metric.step, metric.timestamp_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every point of the run, by key, then step, then logging order.
    pub fn metrics(&self, run: &str) -> Result<Vec<Metric>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let points = conn
            .prepare_cached(
                "SELECT key, value, step, timestamp FROM metrics WHERE run = ?1
                 ORDER BY key, step, rowid",
            )?
            .query_map([rowid], |row| {
                Ok(Metric {
                    key: row.get(0)?,
                    value: row.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                    step: row.get(2)?,
                    timestamp_ms: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(points)
    }

    /// The value at the highest step of each key (the last logged one on a tie).
    ///
    /// A skip-scan over the `(run, key, step)` index: one seek per key instead of
    /// reading every point, so listing runs by a metric stays fast for long trainings.
    pub fn latest_metrics(&self, run: &str) -> Result<BTreeMap<String, f64>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let latest = conn
            .prepare_cached(
                "WITH RECURSIVE keys(key) AS (
                     SELECT min(key) FROM metrics WHERE run = ?1
                     UNION ALL
                     SELECT (SELECT min(key) FROM metrics WHERE run = ?1 AND key > keys.key)
                     FROM keys WHERE keys.key IS NOT NULL
                 )
                 SELECT key, (SELECT value FROM metrics
                              WHERE run = ?1 AND metrics.key = keys.key
                              ORDER BY step DESC, rowid DESC LIMIT 1)
                 FROM keys WHERE key IS NOT NULL",
            )?
            .query_map([rowid], |row| {
                Ok((row.get(0)?, row.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(latest)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::{begin, day, temp_store};

    fn point(key: &str, value: f64, step: i64) -> Metric {
        Metric {
            key: key.to_string(),
            value,
            step,
            timestamp_ms: 1_700_000_000_000 + step,
        }
    }

    #[test]
    fn batch_round_trip_and_latest() {
        let (_dir, store) = temp_store();
        let run = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let batch: Vec<Metric> = (0..1000)
            .flat_map(|step| [point("loss", 1.0 / (step + 1) as f64, step), point("f1", step as f64 / 1000.0, step)])
            .collect();
        store.log_metrics(&run, &batch).unwrap();
        store.log_metrics(&run, &[point("f1", 0.5, 999)]).unwrap();

        let stored = store.metrics(&run).unwrap();
        assert_eq!(stored.len(), 2001);
        let mut expected = batch.clone();
        expected.push(point("f1", 0.5, 999));
        // Sorting by (key, step) keeps the logging order of equal steps: a stable sort.
        expected.sort_by(|a, b| (&a.key, a.step).cmp(&(&b.key, b.step)));
        assert_eq!(stored, expected);

        let latest = store.latest_metrics(&run).unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest["loss"], 1.0 / 1000.0);
        assert_eq!(latest["f1"], 0.5, "a later point at the same step wins");
    }

    #[test]
    fn nan_survives_the_database() {
        let (_dir, store) = temp_store();
        let run = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        store
            .log_metrics(&run, &[point("loss", f64::NAN, 0), point("loss", f64::INFINITY, 1)])
            .unwrap();
        let stored = store.metrics(&run).unwrap();
        assert!(stored[0].value.is_nan());
        assert_eq!(stored[1].value, f64::INFINITY);
    }

    #[test]
    fn unknown_run_is_not_found() {
        let (_dir, store) = temp_store();
        let result = store.log_metrics("abcdef", &[point("loss", 1.0, 0)]);
        assert!(matches!(result, Err(crate::store::StoreError::NotFound(_))));
    }
}
