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

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::store::error::{Result, StoreError};
use crate::store::experiments::{require_experiment, Lifecycle};
use crate::store::metrics::Metric;
use crate::store::runs::{insert_run, NewRun, RunId, RunKey, RunStatus};
use crate::store::search::page_values;
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            .execute(params![CLIENT_ENTRY, head.rowid])?;
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                .execute(params![
                    status.as_str(),
                    end_time.map(to_micros),
                    head.rowid
                ])?;
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
            .execute(params![lifecycle.as_str(), head.rowid])?;
        Ok(())
    }

    /// Logs a batch into an active run with MLflow's rules: a param, once logged, keeps its
    /// value (logging the same value again is a no-op, another value is refused and nothing
    /// of the batch is kept); tags are overwritten; metrics are appended.
    pub fn log_client_batch(&self, run_id: &str, batch: &ClientBatch) -> Result<()> {
        {
            let mut conn = self.connection();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            .execute(params![head.rowid, key])?;
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
        let (limit_value, offset_value) = page_values(offset, limit.saturating_add(1));
        let mut points: Vec<Metric> = conn
            .prepare_cached(
                "SELECT value, step, timestamp FROM metrics WHERE run = ?1 AND key = ?2
                 ORDER BY step, rowid LIMIT ?3 OFFSET ?4",
            )?
            .query_map(params![head.rowid, key, limit_value, offset_value], |row| {
                Ok(Metric {
                    key: key.to_string(),
                    value: row.get::<_, Option<f64>>(0)?.unwrap_or(f64::NAN),
                    step: row.get(1)?,
                    timestamp_ms: row.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let more = points.len() > limit;
        points.truncate(limit);
        Ok((points, more))
    }
}

/// The run, refused unless active: MLflow logs nothing into a deleted run.
fn active_run(conn: &Connection, run_id: &str) -> Result<RunHead> {
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

fn log_param(conn: &Connection, head: &RunHead, key: &str, value: &str) -> Result<()> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT value FROM logged_params WHERE run = ?1 AND key = ?2
             UNION ALL SELECT value FROM params WHERE run = ?1 AND key = ?2",
        )?
        .query_row(params![head.rowid, key], |row| row.get(0))
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
                .execute(params![head.rowid, key, value])?;
            Ok(())
        }
    }
}

/// Upserts a tag; renaming a client's run also renames what `flow runs list` shows.
fn set_tag(conn: &Connection, head: &RunHead, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tags (run, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (run, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![head.rowid, key, value])?;
    if key == RUN_NAME_TAG && head.client_driven {
        conn.prepare_cached("UPDATE runs SET key_value = ?1 WHERE id = ?2")?
            .execute(params![value, head.rowid])?;
    }
    Ok(())
}
