//! Versioned schema migrations, after cargo's `util/sqlite.rs`.
//!
//! The list below is ordered and only ever grows: the database records in `user_version`
//! how many entries it has applied, and [`migrate`] applies the rest in one exclusive
//! transaction. Never edit or remove an entry, never drop a table or column; add a new
//! entry instead. Times are integers (microseconds since the Unix epoch, UTC) so range
//! queries and ordering use indexes.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::store::error::{Result, StoreError};

/// One schema step: a closure so a future step can move data, not only run DDL.
pub(crate) type Migration = Box<dyn Fn(&Connection) -> rusqlite::Result<()>>;

/// A migration that is a fixed batch of SQL statements.
pub(crate) fn sql_migration(sql: &'static str) -> Migration {
    Box::new(move |conn| conn.execute_batch(sql))
}

/// How many migrations the database has applied.
pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT user_version FROM pragma_user_version", [], |row| {
        row.get(0)
    })
}

/// Applies the migrations the database has not seen yet, all or nothing. A database that
/// has applied more than `migrations` was migrated by a newer flow and is refused: writing
/// to it would skip the bookkeeping of tables this flow does not know.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let found = user_version(&tx)?;
    let applied = usize::try_from(found).unwrap_or(0);
    if applied > migrations.len() {
        return Err(StoreError::NewerSchema {
            found,
            known: migrations.len(),
        });
    }
    if applied < migrations.len() {
        for migration in &migrations[applied..] {
            migration(&tx)?;
        }
        let version = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
        tx.pragma_update(None, "user_version", version)?;
    }
    Ok(tx.commit()?)
}

/// The schema of `flow.db`, in the order it was introduced.
pub(crate) fn migrations() -> Vec<Migration> {
    vec![
        sql_migration(
            "CREATE TABLE experiments (
                -- Compact key that runs reference.
                id INTEGER PRIMARY KEY,
                -- Name chosen by the user (`Default` unless set); groups runs in listings.
                name TEXT NOT NULL UNIQUE,
                -- When the first run of the experiment started (µs since epoch, UTC).
                created_at INTEGER NOT NULL
            );",
        ),
        sql_migration(
            "CREATE TABLE runs (
                -- Compact key every per-run table references (cheaper than the text id).
                id INTEGER PRIMARY KEY,
                -- 32 lower-case hex chars, what users see and type; UNIQUE gives the prefix index.
                run_id TEXT NOT NULL UNIQUE,
                -- Experiment the run belongs to.
                experiment_id INTEGER NOT NULL REFERENCES experiments(id),
                -- Entry point (step) name from MLproject.yaml.
                entry TEXT NOT NULL,
                -- Value of the step's `key` parameter (dataset, logic, algorithm); NULL when it has none.
                key_value TEXT,
                -- Logical time of the run key (µs); time selectors such as `retrieval_time=<day>` match it.
                run_time INTEGER NOT NULL,
                -- Wall clock when the run began (µs).
                start_time INTEGER NOT NULL,
                -- Wall clock when the run ended (µs); NULL while RUNNING.
                end_time INTEGER,
                -- RUNNING, FINISHED, FAILED or KILLED; only FINISHED runs are reused.
                status TEXT NOT NULL CHECK (status IN ('RUNNING', 'FINISHED', 'FAILED', 'KILLED')),
                -- blake3 of the canonical params (digest::params_hash), so reuse compares one column.
                params_hash TEXT NOT NULL,
                -- blake3 of the sorted (entry, upstream run) pairs (digest::inputs_hash).
                inputs_hash TEXT NOT NULL,
                -- blake3 of the step's input content (raw files or upstream manifests).
                data_version TEXT NOT NULL,
                -- git commit hex of the project, or `none` outside git.
                code_version TEXT NOT NULL,
                -- 1 when the work tree had uncommitted changes.
                code_dirty INTEGER NOT NULL,
                -- The command as executed, params substituted.
                command TEXT NOT NULL,
                -- OS process that owns a RUNNING row; reap_dead_runs checks it is alive.
                pid INTEGER,
                -- Host of that process: a pid means nothing on another machine.
                host TEXT NOT NULL,
                -- Object hash of the output manifest; NULL until publish commits, so a
                -- half-published run never looks complete.
                manifest_hash TEXT
            );
            -- find_reusable: equality on every key field, then newest run_time first.
            CREATE INDEX runs_reuse ON runs
                (entry, key_value, params_hash, inputs_hash, data_version, status, run_time);
            -- recent_runs: candidates of one step, newest first.
            CREATE INDEX runs_recent ON runs (entry, key_value, run_time);
            -- list_runs by step: most recently started first.
            CREATE INDEX runs_by_entry ON runs (entry, id);
            -- reap_dead_runs: only the few RUNNING rows.
            CREATE INDEX runs_running ON runs (host) WHERE status = 'RUNNING';",
        ),
        sql_migration(
            "CREATE TABLE params (
                -- Run the parameter belongs to.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Parameter name as declared in MLproject.yaml.
                key TEXT NOT NULL,
                -- Value with defaults applied, as text; these rows are what params_hash digests.
                value TEXT NOT NULL,
                PRIMARY KEY (run, key)
            ) WITHOUT ROWID;
            CREATE TABLE logged_params (
                -- Run that logged the parameter itself (not part of the reuse key).
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Parameter name chosen by the step.
                key TEXT NOT NULL,
                -- Last value logged.
                value TEXT NOT NULL,
                PRIMARY KEY (run, key)
            ) WITHOUT ROWID;",
        ),
        sql_migration(
            "CREATE TABLE metrics (
                -- Run that logged the point.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Metric name (`loss`, `f1`, ...).
                key TEXT NOT NULL,
                -- The value; NULL stands for NaN, which SQLite cannot store as REAL.
                value REAL,
                -- Training step or epoch the value belongs to.
                step INTEGER NOT NULL,
                -- When it was logged (ms since epoch, UTC).
                timestamp INTEGER NOT NULL
            );
            -- The points of one run. Deliberately not (run, key, step): inserts then land at
            -- the end of both b-trees (1M+ points/s) while readers sort one run's points.
            CREATE INDEX metrics_by_run ON metrics (run);",
        ),
        sql_migration(
            "CREATE TABLE tags (
                -- Run the tag is attached to.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Tag name.
                key TEXT NOT NULL,
                -- Tag value (last write wins).
                value TEXT NOT NULL,
                PRIMARY KEY (run, key)
            ) WITHOUT ROWID;",
        ),
        sql_migration(
            "CREATE TABLE run_inputs (
                -- The downstream run.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Entry point of the upstream run (the FLOW_INPUT_<STEP> it was given as).
                upstream_entry TEXT NOT NULL,
                -- run_id of the upstream run; text, not a foreign key, so lineage still names
                -- an upstream deleted with force.
                upstream_run_id TEXT NOT NULL,
                PRIMARY KEY (run, upstream_entry, upstream_run_id)
            ) WITHOUT ROWID;
            -- downstream(): who consumed a run; delete_run checks it.
            CREATE INDEX run_inputs_by_upstream ON run_inputs (upstream_run_id);",
        ),
        sql_migration(
            "CREATE TABLE artifacts (
                -- Run that produced the file.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Logical path inside the run's output directory, `/`-separated.
                path TEXT NOT NULL,
                -- blake3 hex of the content: the object's name under objects/.
                hash TEXT NOT NULL,
                -- Size in bytes.
                size INTEGER NOT NULL,
                PRIMARY KEY (run, path)
            ) WITHOUT ROWID;
            -- gc: the set of referenced objects as an index scan.
            CREATE INDEX artifacts_by_hash ON artifacts (hash);",
        ),
        sql_migration(
            "CREATE TABLE registered_models (
                -- Name users register under (`smd-detector`).
                name TEXT PRIMARY KEY,
                -- Free text.
                description TEXT NOT NULL DEFAULT '',
                -- When it was registered (µs since epoch, UTC).
                created_at INTEGER NOT NULL
            );
            CREATE TABLE model_versions (
                -- Registered model this is a version of.
                name TEXT NOT NULL REFERENCES registered_models(name) ON DELETE CASCADE,
                -- 1, 2, 3, ... per name.
                version INTEGER NOT NULL,
                -- run_id of the run whose bundle this version points at.
                run_id TEXT NOT NULL,
                -- Logical path of the bundle inside that run's outputs.
                artifact_path TEXT NOT NULL,
                -- None, Staging, Production or Archived.
                stage TEXT NOT NULL DEFAULT 'None'
                    CHECK (stage IN ('None', 'Staging', 'Production', 'Archived')),
                -- When the version was created (µs since epoch, UTC).
                created_at INTEGER NOT NULL,
                PRIMARY KEY (name, version)
            );
            -- delete_run: a run backing a model version is a dependant.
            CREATE INDEX model_versions_by_run ON model_versions (run_id);
            CREATE TABLE model_aliases (
                -- Registered model.
                name TEXT NOT NULL,
                -- Alias such as `champion`; unique per model.
                alias TEXT NOT NULL,
                -- Version the alias points at.
                version INTEGER NOT NULL,
                PRIMARY KEY (name, alias),
                FOREIGN KEY (name, version) REFERENCES model_versions(name, version) ON DELETE CASCADE
            );",
        ),
        sql_migration(
            "-- The highest version number ever given, so deleting the newest version never
            -- lets its number be handed out again (a URI must keep meaning one bundle).
            ALTER TABLE registered_models ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
            UPDATE registered_models SET last_version = COALESCE(
                (SELECT MAX(version) FROM model_versions v WHERE v.name = registered_models.name), 0);",
        ),
        sql_migration(
            "-- The value at the highest step of each metric of each run (the last logged one
            -- on a tie), kept up to date by log_metrics: reading a run's latest values then
            -- does not sort its every point (2M points took 5.6 s that way).
            CREATE TABLE latest_metrics (
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                step INTEGER NOT NULL,
                -- NULL stands for NaN, as in metrics.
                value REAL,
                PRIMARY KEY (run, key)
            ) WITHOUT ROWID;
            INSERT INTO latest_metrics (run, key, step, value)
                SELECT run, key, step, value FROM (
                    SELECT run, key, step, value, row_number() OVER
                        (PARTITION BY run, key ORDER BY step DESC, rowid DESC) AS rank
                    FROM metrics)
                WHERE rank = 1;",
        ),
        sql_migration(
            "-- When the process behind `pid` started (Linux: ticks since boot, from
            -- /proc/<pid>/stat): a dead run's pid may since name another process, and
            -- only the pair tells them apart. NULL where the platform does not say.
            ALTER TABLE runs ADD COLUMN pid_started INTEGER;",
        ),
        sql_migration(
            "-- The fan-out member a run computed (`machine-1-1`, `seed=0`), NULL outside a
            -- fan-out. Shown and filtered on; reuse compares params and upstream runs, which
            -- already tell members apart.
            ALTER TABLE runs ADD COLUMN member TEXT;",
        ),
        sql_migration(
            "-- When the owner of a RUNNING run last said it is alive (µs since epoch, UTC).
            -- A flow on another host cannot see the owner's pid; it takes the run as dead
            -- once this is older than the lease (claims.rs).
            ALTER TABLE runs ADD COLUMN heartbeat INTEGER;",
        ),
        sql_migration(
            "-- What MLflow's tracking API (`flow server`) needs beyond flow's own columns.
            -- Experiments and runs are soft-deleted as in MLflow: `deleted` ones are hidden
            -- from the API's default views and can be restored.
            ALTER TABLE experiments ADD COLUMN lifecycle_stage TEXT NOT NULL DEFAULT 'active'
                CHECK (lifecycle_stage IN ('active', 'deleted'));
            -- Last rename, deletion or restore (µs); NULL until the first.
            ALTER TABLE experiments ADD COLUMN last_update_time INTEGER;
            CREATE TABLE experiment_tags (
                experiment INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
                key TEXT NOT NULL,
                -- Last write wins.
                value TEXT NOT NULL,
                PRIMARY KEY (experiment, key)
            ) WITHOUT ROWID;
            ALTER TABLE runs ADD COLUMN lifecycle_stage TEXT NOT NULL DEFAULT 'active'
                CHECK (lifecycle_stage IN ('active', 'deleted'));
            -- The API client that created the run and sets its status (`mlflow`); NULL for
            -- runs flow's runner started, whose status only the runner sets.
            ALTER TABLE runs ADD COLUMN client TEXT;
            -- When the latest point was logged (ms), as MLflow reports it beside the value;
            -- NULL in rows written before this column existed.
            ALTER TABLE latest_metrics ADD COLUMN timestamp INTEGER;
            CREATE TABLE logged_artifacts (
                -- Run the file was uploaded to through the artifacts proxy while it ran;
                -- kept apart from `artifacts`, the outputs the runner publishes once.
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                -- Logical path under the run's artifact root, `/`-separated.
                path TEXT NOT NULL,
                -- blake3 hex: the object's name under objects/.
                hash TEXT NOT NULL,
                size INTEGER NOT NULL,
                PRIMARY KEY (run, path)
            ) WITHOUT ROWID;
            -- gc: referenced objects.
            CREATE INDEX logged_artifacts_by_hash ON logged_artifacts (hash);
            -- search_runs: filters on params, tags and metrics start from the matching rows.
            CREATE INDEX params_by_key ON params (key, value);
            CREATE INDEX logged_params_by_key ON logged_params (key, value);
            CREATE INDEX tags_by_key ON tags (key, value);
            CREATE INDEX latest_metrics_by_key ON latest_metrics (key, value);
            -- search_runs: the runs of some experiments, newest first.
            CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time);",
        ),
        Box::new(default_experiment_is_zero),
        sql_migration(
            "-- Each time a `flow run` reused a run instead of executing its step (µs): what
            -- a run saved, shown as \"reused by N later requests\".
            CREATE TABLE reuses (
                run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                at INTEGER NOT NULL
            );
            CREATE INDEX reuses_by_run ON reuses (run);",
        ),
    ]
}

/// MLflow clients log into experiment `0` unless told otherwise, and `flow run` into
/// `Default`: this makes them one experiment. A `Default` created earlier under another id
/// is renumbered with its runs; a store without one gets it. Plain SQL, no deferred keys.
fn default_experiment_is_zero(conn: &Connection) -> rusqlite::Result<()> {
    let zero_taken: i64 =
        conn.query_row("SELECT count(*) FROM experiments WHERE id = 0", [], |row| {
            row.get(0)
        })?;
    if zero_taken > 0 {
        return Ok(());
    }
    let default: Option<(i64, i64)> = conn
        .query_row(
            "SELECT id, created_at FROM experiments WHERE name = 'Default'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match default {
        None => {
            let now = chrono::Utc::now().timestamp_micros();
            conn.execute(
                "INSERT INTO experiments (id, name, created_at) VALUES (0, 'Default', ?1)",
                [now],
            )?;
        }
        Some((id, created_at)) => {
            // A temporary name keeps `name` unique while both rows exist.
            conn.execute(
                "INSERT INTO experiments (id, name, created_at) VALUES (0, ?1, ?2)",
                params![format!("Default (moving from {id})"), created_at],
            )?;
            conn.execute(
                "UPDATE runs SET experiment_id = 0 WHERE experiment_id = ?1",
                [id],
            )?;
            conn.execute("DELETE FROM experiments WHERE id = ?1", [id])?;
            conn.execute("UPDATE experiments SET name = 'Default' WHERE id = 0", [])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_applies_only_new_steps() {
        let mut conn = Connection::open_in_memory().unwrap();
        let mut steps = vec![sql_migration("CREATE TABLE foo (a, b)")];
        migrate(&mut conn, &steps).unwrap();
        conn.execute("INSERT INTO foo VALUES (1, 2)", []).unwrap();
        steps.push(sql_migration("ALTER TABLE foo ADD COLUMN c"));
        migrate(&mut conn, &steps).unwrap();
        conn.execute("INSERT INTO foo VALUES (1, 2, 3)", [])
            .unwrap();
        // A third pass with nothing new must not re-run `CREATE TABLE foo`.
        migrate(&mut conn, &steps).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM foo", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn full_schema_migrates_twice() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &migrations()).unwrap();
        migrate(&mut conn, &migrations()).unwrap();
        assert_eq!(user_version(&conn).unwrap(), migrations().len() as i64);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 15);
    }

    /// A store written before `latest_metrics` existed gets it filled from its points.
    #[test]
    fn latest_metrics_are_backfilled() {
        let mut conn = Connection::open_in_memory().unwrap();
        let all = migrations();
        // latest_metrics is the 10th step; the list only grows, so that never changes.
        let before = 9;
        migrate(&mut conn, &all[..before]).unwrap();
        // Points of run 1 without a run row.
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        for (key, value, step) in [
            ("loss", 0.5, 1),
            ("loss", 0.3, 2),
            ("loss", 0.9, 0),
            ("f1", 0.7, 2),
            ("f1", 0.8, 2),
        ] {
            conn.execute(
                "INSERT INTO metrics (run, key, value, step, timestamp) VALUES (1, ?1, ?2, ?3, 0)",
                rusqlite::params![key, value, step],
            )
            .unwrap();
        }
        migrate(&mut conn, &all).unwrap();
        let latest: Vec<(String, f64, i64)> = conn
            .prepare("SELECT key, value, step FROM latest_metrics WHERE run = 1 ORDER BY key")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            latest,
            vec![("f1".to_string(), 0.8, 2), ("loss".to_string(), 0.3, 2)]
        );
    }

    /// A store whose `Default` experiment predates the tracking API keeps its runs in it,
    /// now under id 0, where MLflow clients log by default.
    #[test]
    fn default_experiment_moves_to_id_zero_with_its_runs() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        let all = migrations();
        let before_tracking = 12;
        migrate(&mut conn, &all[..before_tracking]).unwrap();
        conn.execute_batch(
            "INSERT INTO experiments (id, name, created_at) VALUES (1, 'other', 5), (2, 'Default', 7);
             INSERT INTO runs (run_id, experiment_id, entry, run_time, start_time, status,
                 params_hash, inputs_hash, data_version, code_version, code_dirty, command, host)
             VALUES ('a', 2, 'train', 0, 0, 'FINISHED', '', '', '', '', 0, '', 'h'),
                    ('b', 1, 'train', 0, 0, 'FINISHED', '', '', '', '', 0, '', 'h');",
        )
        .unwrap();
        migrate(&mut conn, &all).unwrap();
        let experiments: Vec<(i64, String, i64)> = conn
            .prepare("SELECT id, name, created_at FROM experiments ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            experiments,
            vec![(0, "Default".to_string(), 7), (1, "other".to_string(), 5)]
        );
        let runs: Vec<(String, i64)> = conn
            .prepare("SELECT run_id, experiment_id FROM runs ORDER BY run_id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(runs, vec![("a".to_string(), 0), ("b".to_string(), 1)]);
    }

    #[test]
    fn a_fresh_store_has_the_default_experiment_at_zero() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &migrations()).unwrap();
        let name: String = conn
            .query_row("SELECT name FROM experiments WHERE id = 0", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(name, "Default");
    }
}
