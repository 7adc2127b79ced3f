//! Runs: their key, their life cycle (begin, end, reap, delete) and the records read back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::store::db::{args, Db, DbResult, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::digest::{inputs_hash, new_run_id, params_hash};
use crate::store::error::{Result, StoreError};
use crate::store::owner::{owner_of_this_process, Owner};
use crate::store::queries::resolve_run;
use crate::store::timestamps::{now, serialize_optional_time, serialize_time, to_micros};
use crate::store::Store;

/// 32 lower-case hex chars; any unique prefix resolves to it.
pub type RunId = String;

/// Where a run is in its life; only `Finished` runs are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

/// What identifies a step run for reuse. The resolver builds it once per step; `begin_run`
/// stores it and `find_reusable` compares it, so a stored run and a request can only
/// agree when every field is equal.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct RunKey {
    pub entry: String,
    /// Value of the step's `key` parameter (dataset, logic, algorithm).
    pub key_value: Option<String>,
    /// Params with defaults applied (time selectors excluded): exactly what reuse compares.
    pub params: BTreeMap<String, String>,
    /// `(entry, run)` for every upstream run this run reads (a fan-in step lists one
    /// pair per member).
    pub upstream: Vec<(String, RunId)>,
    /// blake3 of the step's input content (raw files or upstream manifests).
    pub data_version: String,
    /// Commit hex (with a dirty suffix), a hash of the entry's declared code, or `none`.
    pub code_version: String,
}

/// Everything known when a run starts: its key, where it belongs and its command.
pub struct NewRun<'a> {
    pub key: &'a RunKey,
    pub experiment: &'a str,
    /// The fan-out member this run computes (`machine-1-1`, `seed=0`); `None` outside a
    /// fan-out. Shown and filtered on, never compared: params and upstream runs decide.
    pub member: Option<&'a str>,
    pub code_dirty: bool,
    pub command: &'a str,
    pub run_time: DateTime<Utc>,
}

/// A stored run as the CLI, lineage and resolver see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub experiment: String,
    pub entry: String,
    pub key_value: Option<String>,
    /// The fan-out member the run computed, if it ran as one.
    pub member: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub run_time: DateTime<Utc>,
    #[serde(serialize_with = "serialize_time")]
    pub start_time: DateTime<Utc>,
    #[serde(serialize_with = "serialize_optional_time")]
    pub end_time: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub params: BTreeMap<String, String>,
    /// `(entry, run)` pairs, sorted.
    pub upstream: Vec<(String, RunId)>,
    pub data_version: String,
    pub code_version: String,
    pub code_dirty: bool,
    pub command: String,
    pub pid: Option<i64>,
    pub manifest_hash: Option<String>,
}

/// The resolver's question: the newest FINISHED run with this key.
#[derive(Debug, Clone, Copy)]
pub struct ReuseQuery<'a> {
    pub key: &'a RunKey,
    /// Compare data versions; a run pinned by a time selector is taken as it was.
    pub match_data: bool,
    /// Compare code versions; the reuse policy decides.
    pub match_code: bool,
    /// Inclusive start, exclusive end; `None` accepts any run time.
    pub run_time: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Filters and order of `flow runs list`; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub entry: Option<String>,
    pub status: Option<RunStatus>,
    pub experiment: Option<String>,
    /// Runs of this fan-out member only.
    pub member: Option<String>,
    pub limit: Option<usize>,
    /// Order by this metric's latest value instead of by start, leaving out runs that
    /// never logged it; NaN values come last either way.
    pub metric: Option<String>,
    /// Lowest (or oldest) first instead of highest (or newest) first.
    pub ascending: bool,
}

impl RunRecord {
    /// The key the run was stored with.
    pub fn key(&self) -> RunKey {
        RunKey {
            entry: self.entry.clone(),
            key_value: self.key_value.clone(),
            params: self.params.clone(),
            upstream: self.upstream.clone(),
            data_version: self.data_version.clone(),
            code_version: self.code_version.clone(),
        }
    }
}

impl RunStatus {
    /// The spelling stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = StoreError;

    /// Case-insensitive, so `--status finished` works on the command line.
    fn from_str(text: &str) -> Result<RunStatus> {
        match text.to_ascii_uppercase().as_str() {
            "RUNNING" => Ok(RunStatus::Running),
            "FINISHED" => Ok(RunStatus::Finished),
            "FAILED" => Ok(RunStatus::Failed),
            "KILLED" => Ok(RunStatus::Killed),
            _ => Err(StoreError::Invalid {
                what: "run status",
                value: text.to_string(),
                reason: "expected RUNNING, FINISHED, FAILED or KILLED".to_string(),
            }),
        }
    }
}

impl Store {
    /// Records a RUNNING run owned by this process, with its params and upstream edges,
    /// in one transaction.
    pub fn begin_run(&self, new: &NewRun) -> Result<RunId> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        let run_id = self.insert_own_run(&tx, new)?;
        tx.commit()?;
        Ok(run_id)
    }

    /// Inserts `new` as RUNNING, owned by this process, inside the caller's transaction.
    pub(crate) fn insert_own_run(&self, tx: &Db, new: &NewRun) -> Result<RunId> {
        insert_run(
            tx,
            new,
            RunStatus::Running,
            Some(owner_of_this_process()),
            &self.host,
            now(),
            None,
        )
    }

    /// Sets the final status and end time.
    pub fn end_run(&self, run: &str, status: RunStatus) -> Result<()> {
        if status == RunStatus::Running {
            return Err(StoreError::Invalid {
                what: "final status",
                value: status.to_string(),
                reason: "a run ends FINISHED, FAILED or KILLED".to_string(),
            });
        }
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        conn.prepare_cached(
            "UPDATE runs SET status = ?1, end_time = ?2, pid = NULL, pid_started = NULL
             WHERE id = ?3",
        )?
        .execute(args![status.as_str(), to_micros(now()), rowid])?;
        Ok(())
    }

    /// Marks FAILED the RUNNING runs whose owner is gone — on this host a process that no
    /// longer exists (a crash or a kill -9 never reached `end_run`), on another host a
    /// heartbeat older than the lease — and removes the staging directories of runs that are
    /// not RUNNING. Returns the runs it changed.
    pub fn reap_dead_runs(&self) -> Result<Vec<RunId>> {
        let reaped = {
            let mut conn = self.connection();
            let tx = conn.write_transaction()?;
            type Row = (i64, RunId, Option<i64>, Option<i64>, String, Option<i64>);
            let running: Vec<Row> = tx
                .prepare_cached(
                    "SELECT id, run_id, pid, pid_started, host, heartbeat FROM runs
                     WHERE status = 'RUNNING'",
                )?
                .query_map((), |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                })?
                .collect::<DbResult<_>>()?;
            let mut reaped = Vec::new();
            for (rowid, run_id, pid, started, host, heartbeat) in running {
                if pid.is_none() && heartbeat.is_none() {
                    // A run an API client created: it sets its own status (tracking/).
                    continue;
                }
                let alive = if host == self.host {
                    // A run without a pid was written by a tool that owns no process.
                    pid.is_none_or(|pid| Owner::new(pid, started).alive())
                } else {
                    crate::store::claims::heartbeat_fresh(heartbeat)
                };
                if alive {
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE runs SET status = 'FAILED', end_time = ?1, pid = NULL, pid_started = NULL
                     WHERE id = ?2",
                )?
                .execute(args![to_micros(now()), rowid])?;
                reaped.push(run_id);
            }
            tx.commit()?;
            reaped
        };
        // The staging of the reaped runs, and of runs whose flow died after ending them.
        self.remove_orphan_staging()?;
        Ok(reaped)
    }

    /// Removes the run's rows (params, metrics, tags, edges, artifacts) and its run_dir.
    /// Refuses, naming them, while other runs or model versions use it, unless `force`.
    /// Its objects stay until `gc`, which may find them shared with other runs.
    pub fn delete_run(&self, run: &str, force: bool) -> Result<()> {
        let run_id = {
            let mut conn = self.connection();
            let tx = conn.write_transaction()?;
            let (rowid, run_id) = resolve_run(&tx, run)?;
            let mut dependants = crate::store::queries::downstream_of(&tx, &run_id)?;
            let models: Vec<String> = tx
                .prepare_cached(
                    "SELECT name, version FROM model_versions WHERE run_id = ?1 ORDER BY name, version",
                )?
                .query_map([&run_id], |row| {
                    Ok(format!("models:/{}/{}", row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<DbResult<_>>()?;
            dependants.extend(models);
            if !force && !dependants.is_empty() {
                return Err(StoreError::HasDependants {
                    run: run_id,
                    dependants,
                });
            }
            tx.execute("DELETE FROM runs WHERE id = ?1", [rowid])?;
            tx.commit()?;
            run_id
        };
        let view = self.dir.join("runs").join(&run_id);
        if view.exists() {
            std::fs::remove_dir_all(&view).map_err(StoreError::io(&view))?;
        }
        Ok(())
    }
}

/// Inserts one run with its params and edges inside the caller's transaction; shared by
/// `begin_run` and the synthetic filler so both write identical rows.
pub(crate) fn insert_run(
    tx: &Db,
    new: &NewRun,
    status: RunStatus,
    owner: Option<Owner>,
    host: &str,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
) -> Result<RunId> {
    let key = new.key;
    for (_, upstream_run) in &key.upstream {
        let known = tx
            .prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1")?
            .query_row([upstream_run], |_| Ok(()))
            .optional()?;
        if known.is_none() {
            return Err(StoreError::NotFound(upstream_run.clone()));
        }
    }
    tx.prepare_cached(
        "INSERT INTO experiments (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(args![new.experiment, to_micros(start_time)])?;
    let experiment_id: i64 = tx
        .prepare_cached("SELECT id FROM experiments WHERE name = ?1")?
        .query_row([new.experiment], |row| row.get(0))?;
    let run_id = new_run_id();
    let rowid: i64 = tx.prepare_cached(
        "INSERT INTO runs (run_id, experiment_id, entry, key_value, run_time, start_time, end_time,
             status, params_hash, inputs_hash, data_version, code_version, code_dirty, command,
             pid, pid_started, host, member, heartbeat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         RETURNING id",
    )?
    .query_row(args![
        run_id,
        experiment_id,
        key.entry,
        key.key_value,
        to_micros(new.run_time),
        to_micros(start_time),
        end_time.map(to_micros),
        status.as_str(),
        params_hash(&key.params),
        inputs_hash(&key.upstream),
        key.data_version,
        key.code_version,
        new.code_dirty,
        new.command,
        owner.map(|o| o.pid),
        owner.and_then(|o| o.started),
        host,
        new.member,
        owner.map(|_| to_micros(start_time)),
    ], |row| row.get(0))?;
    let mut insert_param =
        tx.prepare_cached("INSERT INTO params (run, key, value) VALUES (?1, ?2, ?3)")?;
    for (name, value) in &key.params {
        insert_param.execute(args![rowid, name, value])?;
    }
    let mut insert_edge = tx.prepare_cached(
        "INSERT INTO run_inputs (run, upstream_entry, upstream_run_id) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )?;
    for (entry, upstream_run) in &key.upstream {
        insert_edge.execute(args![rowid, entry, upstream_run])?;
    }
    Ok(run_id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::owner::process_started;
    use crate::store::test_support::{begin, day, temp_store};

    #[test]
    fn status_round_trips_through_text() {
        for status in [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Failed,
            RunStatus::Killed,
        ] {
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        assert_eq!(
            "finished".parse::<RunStatus>().unwrap(),
            RunStatus::Finished
        );
        assert!(matches!(
            "done".parse::<RunStatus>(),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn begin_end_get_round_trip() {
        let (_dir, store) = temp_store();
        let params = BTreeMap::from([("dataset".to_string(), "SMD".to_string())]);
        let load = begin(&store, "load", &params, &[], day(1));
        let upstream = vec![("load".to_string(), load.clone())];
        let train = begin(&store, "train", &params, &upstream, day(2));

        let record = store.get_run(&train).unwrap();
        assert_eq!(record.status, RunStatus::Running);
        assert_eq!(record.pid, Some(i64::from(std::process::id())));
        assert_eq!(record.params, params);
        assert_eq!(record.upstream, upstream);
        assert_eq!(record.run_time, day(2));
        assert_eq!(record.key_value.as_deref(), Some("SMD"));
        assert!(record.end_time.is_none());

        store.end_run(&train, RunStatus::Finished).unwrap();
        let record = store.get_run(&train).unwrap();
        assert_eq!(record.status, RunStatus::Finished);
        assert!(record.end_time.is_some());
        assert_eq!(record.pid, None);
        assert!(store.end_run(&train, RunStatus::Running).is_err());
    }

    #[test]
    fn begin_run_rejects_unknown_upstream() {
        let (_dir, store) = temp_store();
        let upstream = vec![("load".to_string(), "f".repeat(32))];
        let key = RunKey {
            entry: "train".to_string(),
            upstream,
            data_version: "d".to_string(),
            code_version: "none".to_string(),
            ..RunKey::default()
        };
        let result = store.begin_run(&NewRun {
            key: &key,
            experiment: "Default",
            member: None,
            code_dirty: false,
            command: "true",
            run_time: day(1),
        });
        assert!(matches!(result, Err(StoreError::NotFound(id)) if id == "f".repeat(32)));
        assert!(store.list_runs(&RunFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn reap_marks_only_runs_of_dead_processes() {
        let (_dir, store) = temp_store();
        let none = BTreeMap::new();
        let alive = begin(&store, "load", &none, &[], day(1));
        let dead = begin(&store, "load", &none, &[], day(1));
        // A child that has exited and been waited for: its pid names no process.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = i64::from(child.id());
        child.wait().unwrap();
        store
            .connection()
            .execute(
                "UPDATE runs SET pid = ?1 WHERE run_id = ?2",
                args![dead_pid, dead],
            )
            .unwrap();

        assert_eq!(store.reap_dead_runs().unwrap(), vec![dead.clone()]);
        assert_eq!(store.get_run(&dead).unwrap().status, RunStatus::Failed);
        assert_eq!(store.get_run(&alive).unwrap().status, RunStatus::Running);
        assert!(store.reap_dead_runs().unwrap().is_empty());
    }

    /// A flow killed after ending a run but before removing its staging leaves it behind;
    /// the next start removes it, and never the staging of a run still RUNNING.
    #[test]
    fn reap_removes_the_staging_of_ended_runs_only() {
        let (_dir, store) = temp_store();
        let none = BTreeMap::new();
        let running = begin(&store, "load", &none, &[], day(1));
        let ended = begin(&store, "load", &none, &[], day(1));
        for run in [&running, &ended] {
            std::fs::create_dir_all(store.staging_dir(run).join("outputs")).unwrap();
        }
        store.end_run(&ended, RunStatus::Killed).unwrap();
        let unrelated = store.dir().join("tmp").join("out-something");
        std::fs::create_dir_all(&unrelated).unwrap();

        assert!(store.reap_dead_runs().unwrap().is_empty());
        assert!(!store.staging_dir(&ended).exists());
        assert!(store.staging_dir(&running).join("outputs").is_dir());
        assert!(
            unrelated.is_dir(),
            "only directories named like a run id are swept"
        );
    }

    /// A run whose pid now names another process (same pid, other start time) is dead.
    #[cfg(target_os = "linux")]
    #[test]
    fn reap_tells_a_reused_pid_from_the_owner() {
        let (_dir, store) = temp_store();
        let none = BTreeMap::new();
        let alive = begin(&store, "load", &none, &[], day(1));
        let reused = begin(&store, "load", &none, &[], day(1));
        let started = |run: &RunId| -> Option<i64> {
            store
                .connection()
                .query_row(
                    "SELECT pid_started FROM runs WHERE run_id = ?1",
                    [run],
                    |row| row.get(0),
                )
                .unwrap()
        };
        let own = process_started(std::process::id());
        assert!(own.is_some(), "/proc gives this process's start time");
        assert_eq!(started(&alive), own);
        store
            .connection()
            .execute(
                "UPDATE runs SET pid_started = pid_started + 1 WHERE run_id = ?1",
                [&reused],
            )
            .unwrap();

        assert_eq!(store.reap_dead_runs().unwrap(), vec![reused.clone()]);
        assert_eq!(store.get_run(&alive).unwrap().status, RunStatus::Running);
        assert_eq!(started(&reused), None, "a reaped run owns no process");
        store.end_run(&alive, RunStatus::Finished).unwrap();
        assert_eq!(started(&alive), None, "an ended run owns no process");
    }

    #[test]
    fn delete_refuses_with_dependants_unless_forced() {
        let (_dir, store) = temp_store();
        let none = BTreeMap::new();
        let load = begin(&store, "load", &none, &[], day(1));
        let train = begin(
            &store,
            "train",
            &none,
            &[("load".to_string(), load.clone())],
            day(1),
        );
        store.set_tag(&load, "note", "x").unwrap();

        match store.delete_run(&load, false) {
            Err(StoreError::HasDependants { run, dependants }) => {
                assert_eq!(run, load);
                assert_eq!(dependants, vec![train.clone()]);
            }
            other => panic!("expected HasDependants, got {other:?}"),
        }
        store.delete_run(&train, false).unwrap();
        store.delete_run(&load, false).unwrap();
        assert!(matches!(store.get_run(&load), Err(StoreError::NotFound(_))));
        let tags: i64 = store
            .connection()
            .query_row("SELECT count(*) FROM tags", (), |row| row.get(0))
            .unwrap();
        assert_eq!(tags, 0, "cascade removes the run's tags");
    }

    #[test]
    fn forced_delete_keeps_downstream_lineage_text() {
        let (_dir, store) = temp_store();
        let none = BTreeMap::new();
        let load = begin(&store, "load", &none, &[], day(1));
        let train = begin(
            &store,
            "train",
            &none,
            &[("load".to_string(), load.clone())],
            day(1),
        );
        store.delete_run(&load, true).unwrap();
        assert_eq!(
            store.get_run(&train).unwrap().upstream,
            vec![("load".to_string(), load)]
        );
    }
}
