//! Runs as MLflow's tracking API presents them: a name, a user, an experiment id, a
//! lifecycle stage, params (the runner's key params, then the ones the run logged itself),
//! tags and each metric's latest point. Read in bulk, a few statements per page of runs.
//!
//! A run's name is its `mlflow.runName` tag; a run the runner started without one is
//! named after its step (`train`, or `train/SMD` with a key value). Its user is its
//! `mlflow.user` tag, or empty.

use std::collections::{BTreeMap, HashMap};

use crate::store::db::Value;
use crate::store::db::{args, params_vec, Db, DbResult, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::error::{Result, StoreError};
use crate::store::experiments::Lifecycle;
use crate::store::runs::{RunId, RunStatus};
use crate::store::timestamps::from_micros;
use crate::store::Store;

/// The tag holding a run's name, as MLflow keeps it.
pub const RUN_NAME_TAG: &str = "mlflow.runName";
/// The tag holding the user who started a run.
pub const USER_TAG: &str = "mlflow.user";

/// A run with everything MLflow's `Run` message carries.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedRun {
    pub run_id: RunId,
    pub experiment_id: i64,
    pub name: String,
    pub user: String,
    pub status: RunStatus,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub lifecycle: Lifecycle,
    /// An API client created the run and sets its status; false for the runner's runs.
    pub client_driven: bool,
    /// Key params overlaid by the params the run logged itself.
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Each metric's point at its highest step, by key.
    pub metrics: Vec<LatestMetric>,
}

/// A metric's latest point.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestMetric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

/// The columns of a run that decide what the API may do with it.
#[derive(Debug, Clone)]
pub(crate) struct RunHead {
    pub rowid: i64,
    pub run_id: RunId,
    pub lifecycle: Lifecycle,
    pub client_driven: bool,
}

/// Runs per `IN (...)` list, well below every backend's bound-parameter limit.
const RUNS_PER_QUERY: usize = 500;

impl Store {
    /// One run by its full id (no prefixes: API clients name runs exactly).
    pub fn tracked_run(&self, run_id: &str) -> Result<TrackedRun> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        let mut runs = load_tracked(&conn, &[head.rowid])?;
        runs.pop()
            .ok_or_else(|| StoreError::NotFound(run_id.to_string()))
    }
}

/// The SQL expression of a run's name (see the module doc), over `runs r`.
pub(crate) const RUN_NAME_SQL: &str = "COALESCE((SELECT t.value FROM tags t
    WHERE t.run = r.id AND t.key = 'mlflow.runName'), r.entry || COALESCE('/' || r.key_value, ''))";

/// The SQL expression of a run's user, over `runs r`.
pub(crate) const USER_SQL: &str =
    "COALESCE((SELECT t.value FROM tags t WHERE t.run = r.id AND t.key = 'mlflow.user'), '')";

/// The run with exactly this id, or NotFound.
pub(crate) fn run_head(conn: &Db, run_id: &str) -> Result<RunHead> {
    let row: Option<(i64, String, Option<String>)> = conn
        .prepare_cached("SELECT id, lifecycle_stage, client FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let (rowid, lifecycle, client) = row.ok_or_else(|| StoreError::NotFound(run_id.to_string()))?;
    Ok(RunHead {
        rowid,
        run_id: run_id.to_string(),
        lifecycle: Lifecycle::parse(&lifecycle)?,
        client_driven: client.is_some(),
    })
}

/// The runs with these rowids, in the same order; rowids that vanished are skipped.
pub(crate) fn load_tracked(conn: &Db, rowids: &[i64]) -> Result<Vec<TrackedRun>> {
    let mut loaded: HashMap<i64, TrackedRun> = HashMap::with_capacity(rowids.len());
    for chunk in rowids.chunks(RUNS_PER_QUERY) {
        load_chunk(conn, chunk, &mut loaded)?;
    }
    Ok(rowids.iter().filter_map(|id| loaded.remove(id)).collect())
}

/// A run the runner started without a name tag is named after its step.
pub(crate) fn default_run_name(entry: &str, key_value: Option<&str>) -> String {
    match key_value {
        Some(key) => format!("{entry}/{key}"),
        None => entry.to_string(),
    }
}

fn load_chunk(conn: &Db, rowids: &[i64], loaded: &mut HashMap<i64, TrackedRun>) -> Result<()> {
    let placeholders = vec!["?"; rowids.len()].join(", ");
    let ids = || params_vec(rowids.iter().map(|id| Value::Integer(*id)));
    let mut heads: Vec<(i64, TrackedRun, String, Option<String>)> = Vec::new();
    {
        let sql = format!(
            "SELECT id, run_id, experiment_id, entry, key_value, status, start_time, end_time,
                    lifecycle_stage, client
             FROM runs WHERE id IN ({placeholders})"
        );
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query(ids())?;
        while let Some(row) = rows.next()? {
            let status: String = row.get(5)?;
            let lifecycle: String = row.get(8)?;
            let end_time: Option<i64> = row.get(7)?;
            let run = TrackedRun {
                run_id: row.get(1)?,
                experiment_id: row.get(2)?,
                name: String::new(),
                user: String::new(),
                status: parse_status(&status)?,
                start_time: from_micros(row.get(6)?)?,
                end_time: end_time.map(from_micros).transpose()?,
                lifecycle: Lifecycle::parse(&lifecycle)?,
                client_driven: row.get::<_, Option<String>>(9)?.is_some(),
                params: BTreeMap::new(),
                tags: BTreeMap::new(),
                metrics: Vec::new(),
            };
            heads.push((row.get(0)?, run, row.get(3)?, row.get(4)?));
        }
    }
    let pairs = |table: &str| -> Result<Vec<(i64, String, String)>> {
        let sql = format!("SELECT run, key, value FROM {table} WHERE run IN ({placeholders})");
        let rows = conn
            .prepare(&sql)?
            .query_map(ids(), |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<DbResult<_>>()?;
        Ok(rows)
    };
    let key_params = pairs("params")?;
    let logged_params = pairs("logged_params")?;
    let tags = pairs("tags")?;
    let mut latest: Vec<(i64, LatestMetric)> = Vec::new();
    {
        let sql = format!(
            "SELECT run, key, value, step, timestamp FROM latest_metrics
             WHERE run IN ({placeholders}) ORDER BY run, key"
        );
        let mut statement = conn.prepare(&sql)?;
        let mut rows = statement.query(ids())?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let key: String = row.get(1)?;
            let step: i64 = row.get(3)?;
            let timestamp_ms = match row.get::<_, Option<i64>>(4)? {
                Some(timestamp) => timestamp,
                None => legacy_latest_timestamp(conn, rowid, &key, step)?,
            };
            let value = row.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN);
            latest.push((
                rowid,
                LatestMetric {
                    key,
                    value,
                    step,
                    timestamp_ms,
                },
            ));
        }
    }

    let mut by_rowid: HashMap<i64, TrackedRun> = HashMap::with_capacity(heads.len());
    let mut steps: HashMap<i64, (String, Option<String>)> = HashMap::with_capacity(heads.len());
    for (rowid, run, entry, key_value) in heads {
        by_rowid.insert(rowid, run);
        steps.insert(rowid, (entry, key_value));
    }
    for (rowid, key, value) in key_params.into_iter().chain(logged_params) {
        if let Some(run) = by_rowid.get_mut(&rowid) {
            run.params.insert(key, value);
        }
    }
    for (rowid, key, value) in tags {
        if let Some(run) = by_rowid.get_mut(&rowid) {
            run.tags.insert(key, value);
        }
    }
    for (rowid, point) in latest {
        if let Some(run) = by_rowid.get_mut(&rowid) {
            run.metrics.push(point);
        }
    }
    for (rowid, mut run) in by_rowid {
        let (entry, key_value) = &steps[&rowid];
        run.name = run
            .tags
            .get(RUN_NAME_TAG)
            .cloned()
            .unwrap_or_else(|| default_run_name(entry, key_value.as_deref()));
        run.user = run.tags.get(USER_TAG).cloned().unwrap_or_default();
        loaded.insert(rowid, run);
    }
    Ok(())
}

/// The timestamp of a latest point stored before `latest_metrics` kept one.
fn legacy_latest_timestamp(conn: &Db, rowid: i64, key: &str, step: i64) -> Result<i64> {
    let timestamp: Option<i64> = conn
        .prepare_cached(
            "SELECT max(timestamp) FROM metrics WHERE run = ?1 AND key = ?2 AND step = ?3",
        )?
        .query_row(args![rowid, key, step], |row| row.get(0))?;
    Ok(timestamp.unwrap_or(0))
}

fn parse_status(text: &str) -> Result<RunStatus> {
    text.parse::<RunStatus>()
        .map_err(|_| StoreError::corrupt(format!("unknown run status `{text}`")))
}
