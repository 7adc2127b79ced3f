//! Metric points: batched ingestion and read-back.

use crate::store::db::{args, DbResult, Value};
use std::collections::BTreeMap;

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

/// Points per INSERT statement: binding 50 rows and stepping once roughly halves the
/// per-point cost of one statement per row (5 × 50 = 250 parameters, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 50;
/// The same for PostgreSQL, where each statement is a round trip to the server: 1,000 rows
/// (5,000 parameters, below its 65,535).
const ROWS_PER_INSERT_POSTGRES: usize = 1000;

impl Store {
    /// Appends a batch of points in one transaction, through cached prepared statements
    /// that insert [`ROWS_PER_INSERT`] rows at a time, and moves each key's latest value
    /// forward (one upsert per key of the batch).
    pub fn log_metrics(&self, run: &str, metrics: &[Metric]) -> Result<()> {
        let mut conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let tx = conn.write_transaction()?;
        {
            let rows_per_insert = if tx.is_postgres() {
                ROWS_PER_INSERT_POSTGRES
            } else {
                ROWS_PER_INSERT
            };
            let mut chunks = metrics.chunks_exact(rows_per_insert);
            let mut insert_many = tx.prepare_cached(&insert_sql(rows_per_insert))?;
            for chunk in chunks.by_ref() {
                insert_many.execute(point_values(rowid, chunk))?;
            }
            let rest = chunks.remainder();
            if tx.is_postgres() && !rest.is_empty() {
                // One round trip for the rest too. SQLite keeps one cached one-row statement:
                // a statement per remainder size would churn its statement cache.
                tx.execute(&insert_sql(rest.len()), point_values(rowid, rest))?;
            } else {
                let mut insert_one = tx.prepare_cached(&insert_sql(1))?;
                for point in rest {
                    insert_one.execute(point_values(rowid, std::slice::from_ref(point)))?;
                }
            }
            let mut advance = tx.prepare_cached(
                "INSERT INTO latest_metrics (run, key, step, value, timestamp)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run, key) DO UPDATE SET step = excluded.step,
                     value = excluded.value, timestamp = excluded.timestamp
                 WHERE excluded.step >= latest_metrics.step",
            )?;
            for point in latest_per_key(metrics) {
                advance.execute(args![
                    rowid,
                    point.key,
                    point.step,
                    stored_value(point.value),
                    point.timestamp_ms
                ])?;
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
            .collect::<DbResult<_>>()?;
        Ok(points)
    }

    /// The value at the highest step of each key (the last logged one on a tie).
    pub fn latest_metrics(&self, run: &str) -> Result<BTreeMap<String, f64>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let latest = conn
            .prepare_cached("SELECT key, value FROM latest_metrics WHERE run = ?1")?
            .query_map([rowid], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                ))
            })?
            .collect::<DbResult<_>>()?;
        Ok(latest)
    }
}

/// `INSERT INTO metrics ... VALUES (?1, ?2, ?3, ?4, ?5), (?6, ...)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * 5 + 1;
            format!(
                "(?{first}, ?{}, ?{}, ?{}, ?{})",
                first + 1,
                first + 2,
                first + 3,
                first + 4
            )
        })
        .collect();
    format!(
        "INSERT INTO metrics (run, key, value, step, timestamp) VALUES {}",
        tuples.join(", ")
    )
}

/// The point at the highest step of each key of `points` (the later one on a tie), in
/// key order.
fn latest_per_key(points: &[Metric]) -> Vec<&Metric> {
    let mut latest: BTreeMap<&str, &Metric> = BTreeMap::new();
    for point in points {
        let newer = latest
            .get(point.key.as_str())
            .is_none_or(|kept| point.step >= kept.step);
        if newer {
            latest.insert(&point.key, point);
        }
    }
    latest.into_values().collect()
}

/// SQLite turns a NaN REAL into NULL; store that explicitly and read it back as NaN.
fn stored_value(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

/// The arguments of one INSERT of `points`: five per point, in `insert_sql`'s order.
fn point_values(run_rowid: i64, points: &[Metric]) -> Vec<Value> {
    let mut values = Vec::with_capacity(points.len() * 5);
    for point in points {
        values.push(Value::Integer(run_rowid));
        values.push(Value::Text(point.key.clone()));
        values.push(stored_value(point.value).map_or(Value::Null, Value::Real));
        values.push(Value::Integer(point.step));
        values.push(Value::Integer(point.timestamp_ms));
    }
    values
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
            .flat_map(|step| {
                [
                    point("loss", 1.0 / (step + 1) as f64, step),
                    point("f1", step as f64 / 1000.0, step),
                ]
            })
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

    /// The latest value moves forward across batches, never back to a lower step, and
    /// follows a run's deletion.
    #[test]
    fn latest_follows_steps_across_batches() {
        let (_dir, store) = temp_store();
        let run = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        store
            .log_metrics(&run, &[point("loss", 0.4, 5), point("acc", 0.1, 0)])
            .unwrap();
        store
            .log_metrics(
                &run,
                &[
                    point("loss", 0.9, 3),
                    point("acc", 0.2, 1),
                    point("acc", 0.15, 1),
                ],
            )
            .unwrap();
        store
            .log_metrics(&run, &[point("loss", f64::NAN, 6)])
            .unwrap();
        let latest = store.latest_metrics(&run).unwrap();
        assert_eq!(latest["acc"], 0.15, "the later of two points at one step");
        assert!(
            latest["loss"].is_nan(),
            "a NaN at a higher step is the latest"
        );

        store.log_metrics(&run, &[point("loss", 0.2, 4)]).unwrap();
        assert!(store.latest_metrics(&run).unwrap()["loss"].is_nan());

        store.delete_run(&run, false).unwrap();
        let left: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM latest_metrics", (), |row| row.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn nan_survives_the_database() {
        let (_dir, store) = temp_store();
        let run = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        store
            .log_metrics(
                &run,
                &[point("loss", f64::NAN, 0), point("loss", f64::INFINITY, 1)],
            )
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
