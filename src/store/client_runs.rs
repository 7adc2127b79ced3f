//! What an API client (the `mlflow` library through `flow server`) may do to runs: create
//! one, rename it, set its status, soft-delete and restore it, log params, tags and metrics
//! with MLflow's rules, and page through a metric's history.
//!
//! # Which runs a client drives
//!
//! A run a client created has no owning process (`pid` NULL, `client = 'mlflow'`): the
//! client sets its status, so `reap_dead_runs` never touches it. A run the runner started
//! (a step whose command logs through the API into `MLFLOW_RUN_ID`) keeps its status under
//! the runner's control: a client's status change to it is ignored, since the runner ends
//! the run only after it has published the step's outputs, from the step's exit code.
//!
//! # Columns of a client's run
//!
//! entry `mlflow`; key value the run name (renames follow); no key params, so the params it
//! logs are logged params; data version `none`; code version the
//! `mlflow.source.git.commit` tag or `none`; command the `mlflow.source.name` tag or empty;
//! run time = start time, as the client gives it.

use std::collections::BTreeMap;

use crate::store::db::{args, Db, DbResult, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::error::{Result, StoreError};
use crate::store::experiments::{require_experiment, Lifecycle};
use crate::store::metrics::Metric;
use crate::store::runs::{insert_run, NewRun, RunId, RunKey, RunStatus};
use crate::store::timestamps::{now, to_micros};
use crate::store::tracked_runs::{run_head, RunHead, RUN_NAME_TAG};
use crate::store::Store;

/// The entry point recorded for runs an API client created.
pub const CLIENT_ENTRY: &str = "mlflow";

/// What a client gives when it creates a run.
#[derive(Debug, Clone)]
pub struct NewClientRun<'a> {
    pub experiment_id: i64,
    pub name: &'a str,
    pub start_time: DateTime<Utc>,
    /// Set with the run, `mlflow.runName` among them.
    pub tags: &'a BTreeMap<String, String>,
}

/// A run's fields a client may change in one `runs/update`.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate<'a> {
    pub status: Option<RunStatus>,
    pub end_time: Option<DateTime<Utc>>,
    pub name: Option<&'a str>,
}

/// One `log-batch`: params and tags first, then metrics, as MLflow applies them.
#[derive(Debug, Clone, Default)]
pub struct ClientBatch {
    pub metrics: Vec<Metric>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

impl Store {
    /// Creates a RUNNING run that the client drives, in an active experiment.
    pub fn create_client_run(&self, new: &NewClientRun) -> Result<RunId> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        let (experiment, lifecycle) = require_experiment(&tx, new.experiment_id)?;
        if lifecycle == Lifecycle::Deleted {
            return Err(StoreError::Invalid {
                what: "experiment",
                value: new.experiment_id.to_string(),
                reason: "it is deleted; restore it before creating runs in it".to_string(),
            });
        }
        let tag = |key: &str| new.tags.get(key).map(String::as_str);
        let key = RunKey {
            entry: CLIENT_ENTRY.to_string(),
            key_value: Some(new.name.to_string()),
            params: BTreeMap::new(),
            upstream: Vec::new(),
            data_version: "none".to_string(),
            code_version: tag("mlflow.source.git.commit")
                .unwrap_or("none")
                .to_string(),
        };
        let run_id = insert_run(
            &tx,
            &NewRun {
                key: &key,
                experiment: &experiment,
                member: None,
                code_dirty: false,
                command: tag("mlflow.source.name").unwrap_or(""),
                run_time: new.start_time,
            },
            RunStatus::Running,
            None,
            &self.host,
            new.start_time,
            None,
        )?;
        let head = run_head(&tx, &run_id)?;
        tx.prepare_cached("UPDATE runs SET client = ?1 WHERE id = ?2")?
            .execute(args![CLIENT_ENTRY, head.rowid])?;
        for (key, value) in new.tags {
            set_tag(&tx, &head, key, value)?;
        }
        tx.commit()?;
        Ok(run_id)
    }

    /// Applies a client's update. A status change to a run the runner owns is ignored
    /// (see the module doc); a rename always applies. Returns whether the status changed.
    pub fn update_client_run(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        let head = run_head(&tx, run_id)?;
        if let Some(name) = update.name {
            set_tag(&tx, &head, RUN_NAME_TAG, name)?;
        }
        let mut changed = false;
        if let (Some(status), true) = (update.status, head.client_driven) {
            let end_time = match (status, update.end_time) {
                (RunStatus::Running, _) => None,
                (_, Some(end_time)) => Some(end_time),
                (_, None) => Some(now()),
            };
            tx.prepare_cached("UPDATE runs SET status = ?1, end_time = ?2 WHERE id = ?3")?
                .execute(args![status.as_str(), end_time.map(to_micros), head.rowid])?;
            changed = true;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Soft-deletes or restores one run. flow's own commands still see a deleted run; the
    /// resolver never reuses one.
    pub fn set_run_lifecycle(&self, run_id: &str, lifecycle: Lifecycle) -> Result<()> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        conn.prepare_cached("UPDATE runs SET lifecycle_stage = ?1 WHERE id = ?2")?
            .execute(args![lifecycle.as_str(), head.rowid])?;
        Ok(())
    }

    /// Logs a batch into an active run with MLflow's rules: a param, once logged, keeps its
    /// value (logging the same value again is a no-op, another value is refused and nothing
    /// of the batch is kept); tags are overwritten; metrics are appended.
    pub fn log_client_batch(&self, run_id: &str, batch: &ClientBatch) -> Result<()> {
        {
            let mut conn = self.connection();
            let tx = conn.write_transaction()?;
            let head = active_run(&tx, run_id)?;
            for (key, value) in &batch.params {
                log_param(&tx, &head, key, value)?;
            }
            for (key, value) in &batch.tags {
                set_tag(&tx, &head, key, value)?;
            }
            tx.commit()?;
        }
        if !batch.metrics.is_empty() {
            self.log_metrics(run_id, &batch.metrics)?;
        }
        Ok(())
    }

    /// Removes a tag of an active run; false when the run has no such tag.
    pub fn delete_client_tag(&self, run_id: &str, key: &str) -> Result<bool> {
        let conn = self.connection();
        let head = active_run(&conn, run_id)?;
        let removed = conn
            .prepare_cached("DELETE FROM tags WHERE run = ?1 AND key = ?2")?
            .execute(args![head.rowid, key])?;
        Ok(removed > 0)
    }

    /// A page of one metric's points, by step then logging order, and whether more follow.
    pub fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Metric>, bool)> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        let limit_value = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let offset_value = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut points: Vec<Metric> = conn
            .prepare_cached(
                "SELECT value, step, timestamp FROM metrics WHERE run = ?1 AND key = ?2
                 ORDER BY step, rowid LIMIT ?3 OFFSET ?4",
            )?
            .query_map(args![head.rowid, key, limit_value, offset_value], |row| {
                Ok(Metric {
                    key: key.to_string(),
                    value: row.get::<_, Option<f64>>(0)?.unwrap_or(f64::NAN),
                    step: row.get(1)?,
                    timestamp_ms: row.get(2)?,
                })
            })?
            .collect::<DbResult<_>>()?;
        let more = points.len() > limit;
        points.truncate(limit);
        Ok((points, more))
    }
}

/// The run, refused unless active: MLflow logs nothing into a deleted run.
fn active_run(conn: &Db, run_id: &str) -> Result<RunHead> {
    let head = run_head(conn, run_id)?;
    if head.lifecycle == Lifecycle::Deleted {
        return Err(StoreError::Invalid {
            what: "run",
            value: run_id.to_string(),
            reason: "it is deleted; restore it before logging into it".to_string(),
        });
    }
    Ok(head)
}

fn log_param(conn: &Db, head: &RunHead, key: &str, value: &str) -> Result<()> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM logged_params WHERE run = ?1 AND key = ?2
             UNION ALL SELECT value FROM params WHERE run = ?1 AND key = ?2",
        )?
        .query_row(args![head.rowid, key], |row| row.get(0))
        .optional()?;
    match existing {
        Some(existing) if existing == value => Ok(()),
        Some(existing) => Err(StoreError::Invalid {
            what: "param value",
            value: value.to_string(),
            reason: format!(
                "param `{key}` of run {} was already logged with value `{existing}`, and a \
                 param's value cannot change",
                head.run_id
            ),
        }),
        None => {
            conn.prepare_cached("INSERT INTO logged_params (run, key, value) VALUES (?1, ?2, ?3)")?
                .execute(args![head.rowid, key, value])?;
            Ok(())
        }
    }
}

/// Upserts a tag; renaming a client's run also renames what `flow runs list` shows.
fn set_tag(conn: &Db, head: &RunHead, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tags (run, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(args![head.rowid, key, value])?;
    if key == RUN_NAME_TAG && head.client_driven {
        conn.prepare_cached("UPDATE runs SET key_value = ?1 WHERE id = ?2")?
            .execute(args![value, head.rowid])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::experiments::DEFAULT_EXPERIMENT_ID;
    use crate::store::runs::ReuseQuery;
    use crate::store::test_support::{begin, day, temp_store};

    fn client_run(store: &Store, name: &str) -> RunId {
        let tags = BTreeMap::from([(RUN_NAME_TAG.to_string(), name.to_string())]);
        store
            .create_client_run(&NewClientRun {
                experiment_id: DEFAULT_EXPERIMENT_ID,
                name,
                start_time: day(2),
                tags: &tags,
            })
            .unwrap()
    }

    fn point(key: &str, value: f64, step: i64) -> Metric {
        Metric {
            key: key.to_string(),
            value,
            step,
            timestamp_ms: 1_000 + step,
        }
    }

    /// A client's run is a flow run: listed under entry `mlflow`, its name as key value,
    /// RUNNING without an owning process, so reaping leaves it alone.
    #[test]
    fn a_client_run_is_a_flow_run_the_reaper_leaves_alone() {
        let (_dir, store) = temp_store();
        let run_id = client_run(&store, "brave-otter-1");
        let record = store.get_run(&run_id).unwrap();
        assert_eq!(record.entry, CLIENT_ENTRY);
        assert_eq!(record.key_value.as_deref(), Some("brave-otter-1"));
        assert_eq!(record.experiment, "Default");
        assert_eq!(record.status, RunStatus::Running);
        assert_eq!(record.pid, None);
        assert_eq!(record.start_time, day(2));
        assert!(store.reap_dead_runs().unwrap().is_empty());
        let tracked = store.tracked_run(&run_id).unwrap();
        assert!(tracked.client_driven);
        assert_eq!(tracked.name, "brave-otter-1");
    }

    #[test]
    fn clients_set_their_own_runs_status_but_not_the_runners() {
        let (_dir, store) = temp_store();
        let client = client_run(&store, "mine");
        let finished = RunUpdate {
            status: Some(RunStatus::Finished),
            ..RunUpdate::default()
        };
        assert!(store.update_client_run(&client, &finished).unwrap());
        let record = store.get_run(&client).unwrap();
        assert_eq!(record.status, RunStatus::Finished);
        assert!(record.end_time.is_some());

        let step = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let renamed = RunUpdate {
            name: Some("train-smd"),
            ..finished.clone()
        };
        assert!(!store.update_client_run(&step, &renamed).unwrap());
        let record = store.get_run(&step).unwrap();
        assert_eq!(
            record.status,
            RunStatus::Running,
            "the runner owns its status"
        );
        assert!(record.pid.is_some(), "and stays its owner");
        assert_eq!(store.tracked_run(&step).unwrap().name, "train-smd");
    }

    #[test]
    fn params_keep_their_first_value_and_a_refused_batch_keeps_nothing() {
        let (_dir, store) = temp_store();
        let key_params = BTreeMap::from([("epochs".to_string(), "3".to_string())]);
        let step = begin(&store, "train", &key_params, &[], day(1));
        let batch = |params: &[(&str, &str)], tag: &str| ClientBatch {
            metrics: vec![point("loss", 0.5, 0)],
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: vec![("note".to_string(), tag.to_string())],
        };
        store
            .log_client_batch(&step, &batch(&[("lr", "0.1"), ("epochs", "3")], "a"))
            .unwrap();
        for conflicting in [("lr", "0.2"), ("epochs", "4")] {
            let error = store
                .log_client_batch(&step, &batch(&[conflicting], "b"))
                .unwrap_err();
            assert!(
                error.to_string().contains("cannot change"),
                "{conflicting:?}: {error}"
            );
        }
        let tracked = store.tracked_run(&step).unwrap();
        assert_eq!(tracked.params["lr"], "0.1");
        assert_eq!(tracked.params["epochs"], "3");
        assert_eq!(tracked.tags["note"], "a", "a refused batch sets no tag");
        assert_eq!(store.metrics(&step).unwrap().len(), 1, "nor any metric");
    }

    /// A soft-deleted run refuses logging, and the resolver never reuses it; restored, both
    /// work again.
    #[test]
    fn deleted_runs_refuse_logging_and_are_not_reused() {
        let (_dir, store) = temp_store();
        let step = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        store.end_run(&step, RunStatus::Finished).unwrap();
        let key = store.get_run(&step).unwrap().key();
        let query = ReuseQuery {
            key: &key,
            match_data: true,
            match_code: true,
            run_time: None,
        };
        assert!(store.find_reusable(&query).unwrap().is_some());
        store.set_run_lifecycle(&step, Lifecycle::Deleted).unwrap();
        assert!(store.find_reusable(&query).unwrap().is_none());
        let batch = ClientBatch {
            metrics: vec![point("loss", 1.0, 0)],
            ..ClientBatch::default()
        };
        assert!(matches!(
            store.log_client_batch(&step, &batch),
            Err(StoreError::Invalid { .. })
        ));
        store.set_run_lifecycle(&step, Lifecycle::Active).unwrap();
        assert!(store.find_reusable(&query).unwrap().is_some());
        store.log_client_batch(&step, &batch).unwrap();
    }

    #[test]
    fn metric_history_pages_in_step_order() {
        let (_dir, store) = temp_store();
        let run_id = client_run(&store, "history");
        let points: Vec<Metric> = [3, 0, 2, 1, 4]
            .iter()
            .map(|&step| point("loss", step as f64 / 10.0, step))
            .collect();
        store
            .log_client_batch(
                &run_id,
                &ClientBatch {
                    metrics: points,
                    ..ClientBatch::default()
                },
            )
            .unwrap();
        let (first, more) = store.metric_history(&run_id, "loss", 0, 3).unwrap();
        assert!(more);
        assert_eq!(
            first.iter().map(|p| p.step).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let (rest, more) = store.metric_history(&run_id, "loss", 3, 3).unwrap();
        assert!(!more);
        assert_eq!(rest.iter().map(|p| p.step).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(rest[1].timestamp_ms, 1_004);
        let latest = &store.tracked_run(&run_id).unwrap().metrics[0];
        assert_eq!(
            (latest.step, latest.value, latest.timestamp_ms),
            (4, 0.4, 1_004)
        );
        assert!(
            matches!(
                store.metric_history(&run_id[..8], "loss", 0, 3),
                Err(StoreError::NotFound(_))
            ),
            "API clients name runs by their full id"
        );
    }
}
