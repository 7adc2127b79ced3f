//! The embedded tracking store: runs with their params, metrics, tags and lineage edges
//! in SQLite, and their outputs as content-addressed objects.
//!
//! # Layout
//!
//! ```text
//! .flow/flow.db         runs, params, metrics, tags, run_inputs, artifacts, registry (schema.rs)
//! .flow/objects/ab/cd…  blobs named by their blake3 hex (objects.rs)
//! .flow/runs/<run_id>/  read-only views of published outputs, rebuilt on demand (artifacts.rs)
//! .flow/tmp/            staging for atomic writes; gc reclaims only its own `store-*` entries
//! ```
//!
//! # Locking
//!
//! SQLite runs in WAL mode with a 10 s busy timeout, and every write is one IMMEDIATE
//! transaction, so concurrent processes queue instead of failing on a lock upgrade.
//! Object writes hold a shared `flock` on `.flow/objects.lock` and gc holds it
//! exclusively, so gc never deletes an object that a publish is about to reference.
//!
//! # Crash safety
//!
//! Objects are written to `tmp/`, fsynced and renamed into place; a run's manifest hash
//! is set in the same transaction as its artifact rows. A crash leaves at worst orphan
//! objects (gc reclaims them) and a run without a manifest, which has no outputs.
//!
//! # Performance
//!
//! The resolver's questions are answered by one index each (see schema.rs); reuse
//! compares params and upstream runs through stored digests (digest.rs). Metrics are
//! inserted in one transaction per batch with a cached prepared statement.
//!
//! # MLflow's tracking API
//!
//! `flow server` reads and writes the same tables: experiments get ids, tags and soft
//! deletion (experiments.rs), runs an API client creates are flow runs without an owning
//! process (client_runs.rs), searches are bound SQL over `(key, value)` indexes
//! (run_search.rs), and uploads are objects recorded beside, not among, published outputs
//! (logged_artifacts.rs). The statements are plain SQL but for SQLite's LIKE (search.rs).

mod artifacts;
mod claims;
mod client_runs;
pub(crate) mod db;
mod digest;
mod error;
mod experiments;
mod logged_artifacts;
mod metrics;
mod objects;
mod owner;
mod queries;
mod reuses;
mod run_search;
mod runs;
mod schema;
mod search;
mod staging;
mod synthetic;
mod tags;
mod timestamps;
mod tracked_runs;
pub mod ui_queries;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use artifacts::{Artifact, GcReport};
pub use claims::{lease, Claim, LEASE};
pub use client_runs::{ClientBatch, NewClientRun, RunUpdate, CLIENT_ENTRY};
pub use db::{Db, DbError};
pub use digest::{inputs_hash, params_hash};
pub use error::{Result, StoreError};
pub use experiments::{
    Experiment, ExperimentField, ExperimentFilter, ExperimentSearch, ExperimentSubject, Lifecycle,
    DEFAULT_EXPERIMENT_ID,
};
pub use logged_artifacts::{check_artifact_path, ArtifactUpload, LoggedArtifact};
pub use metrics::Metric;
pub use objects::ContentHash;
pub use reuses::Reuses;
pub use run_search::{RunField, RunSearch, RunSearchFilter, RunSubject};
pub use runs::{NewRun, ReuseQuery, RunFilter, RunId, RunKey, RunRecord, RunStatus};
pub use search::{Comparison, Op, Operand, ViewType};
#[doc(hidden)]
pub use synthetic::{fill_synthetic, SYNTHETIC_COMMIT};
pub use tracked_runs::{LatestMetric, TrackedRun, RUN_NAME_TAG, USER_TAG};

/// Name of the database file inside the store directory.
pub const DB_FILE: &str = "flow.db";

/// Handle on one store. Cheap to share across threads (`Send + Sync`); several handles,
/// in one process or many (on many hosts, for PostgreSQL), may use the same store at once.
pub struct Store {
    /// Objects, run views and staging; also the SQLite database unless `url` is set.
    dir: PathBuf,
    /// The PostgreSQL database holding the tables, when the store is not the embedded one.
    url: Option<String>,
    conn: Mutex<Db>,
    host: String,
}

/// Whether `--store` names a PostgreSQL database rather than a directory.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// A store location fit to print: a URL's password replaced by `***`.
pub fn redacted(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return location.to_string();
    };
    let user = match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => credentials.to_string(),
    };
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}@{host}{slash}{path}")
}

/// A new, empty database `name` on the PostgreSQL server at `server` (a URL ending in
/// `/<database>`; an older one of that name is dropped), and the URL naming it: each test
/// and bench measures on a database of its own.
#[doc(hidden)]
pub fn create_postgres_database(server: &str, name: &str) -> Result<String> {
    let Some((base, _)) = server.rsplit_once('/') else {
        return Err(StoreError::Invalid {
            what: "PostgreSQL URL",
            value: redacted(server),
            reason: "it must end in /<database>".to_string(),
        });
    };
    drop_postgres_database(server, name)?;
    // One statement per call: CREATE DATABASE refuses to run inside a transaction block.
    Db::open_postgres(server)?.execute_batch(&format!("CREATE DATABASE {name}"))?;
    Ok(format!("{base}/{name}"))
}

/// Drops database `name` of the server at `server`, ending its sessions.
#[doc(hidden)]
pub fn drop_postgres_database(server: &str, name: &str) -> Result<()> {
    Db::open_postgres(server)?
        .execute_batch(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the embedded store in `dir`, usually the project's
    /// `.flow`, and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store> {
        create_layout(dir)?;
        let conn = open_connection(dir)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            url: None,
            conn: Mutex::new(conn),
            host: hostname(),
        })
    }

    /// Opens the store whose tables live in the PostgreSQL database at `url` and whose
    /// objects live in `artifacts` (a directory every machine using the store shares),
    /// migrating the schema if this flow knows newer steps.
    pub fn open_postgres(url: &str, artifacts: &Path) -> Result<Store> {
        create_layout(artifacts)?;
        let mut conn = Db::open_postgres(url)?;
        schema::migrate(&mut conn, &schema::migrations())?;
        Ok(Store {
            dir: artifacts.to_path_buf(),
            url: Some(url.to_string()),
            conn: Mutex::new(conn),
            host: hostname(),
        })
    }

    /// Another handle on the same store (its own connection), for a second thread's loop.
    pub fn reopen(&self) -> Result<Store> {
        match &self.url {
            Some(url) => Store::open_postgres(url, &self.dir),
            None => Store::open(&self.dir),
        }
    }

    /// The store's objects directory (the whole store, when embedded).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `--store` would name to open this store again: the directory or the URL.
    pub fn location(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => self.dir.display().to_string(),
        }
    }
}

fn create_layout(dir: &Path) -> Result<()> {
    for sub in ["", "objects", "runs", "tmp"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
    }
    Ok(())
}

/// Opens the database, switches it to WAL and migrates it. Two processes creating a
/// fresh store at once can see SQLITE_BUSY while one of them switches the journal mode
/// (SQLite does not call the busy handler there), so that step is retried for 10 s.
fn open_connection(dir: &Path) -> Result<Db> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match try_open_connection(dir) {
            Err(StoreError::Db(error))
                if error.is_busy() && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn try_open_connection(dir: &Path) -> Result<Db> {
    let mut db = Db::open_sqlite(&dir.join(DB_FILE))?;
    if let Some(conn) = db.sqlite() {
        let journal = sqlite_pragmas(conn).map_err(DbError::from)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::corrupt(format!(
                "{} refused WAL mode (journal_mode is `{journal}`)",
                dir.join(DB_FILE).display()
            )));
        }
    }
    schema::migrate(&mut db, &schema::migrations())?;
    Ok(db)
}

/// WAL, a busy timeout and foreign keys; the journal mode SQLite settled on.
fn sqlite_pragmas(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let journal: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(journal)
}

impl Store {
    /// The database connection, for sibling modules (the model registry) that own their
    /// queries over tables this schema creates. Hold it briefly: it serialises this handle.
    pub fn connection(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock cannot leave a transaction open (Transaction
        // rolls back on drop), so a poisoned connection is still consistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh, empty directory for a run's `FLOW_OUTPUT_DIR`, on the store's filesystem
    /// so `publish` can move files instead of copying them. gc does not touch it.
    pub fn new_output_dir(&self, run: &str) -> Result<PathBuf> {
        let record = self.get_run(run)?;
        let path = self.dir.join("tmp").join(format!("out-{}", record.run_id));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(StoreError::io(&path))?;
        }
        std::fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
        Ok(path)
    }

    fn objects(&self) -> objects::Objects {
        objects::Objects::new(&self.dir)
    }
}

/// This machine's name (or `FLOW_HOST`, for machines that share one, such as containers);
/// pids recorded on another host are never checked here.
fn hostname() -> String {
    if let Some(host) = std::env::var("FLOW_HOST")
        .ok()
        .filter(|host| !host.is_empty())
    {
        return host;
    }
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let len = buffer
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..len]).into_owned()
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    /// A fresh store for one test: embedded in a temp dir, or with `FLOW_TEST_STORE=postgres`
    /// its tables in a new database of the PostgreSQL server at `FLOW_TEST_POSTGRES`
    /// (scripts/test.sh runs the store's tests both ways). Keep the [`TestDir`] alive as
    /// long as the store; dropping it drops that database.
    pub(crate) fn temp_store() -> (TestDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".flow");
        match std::env::var("FLOW_TEST_STORE").as_deref() {
            Ok("postgres") => {
                let server = std::env::var("FLOW_TEST_POSTGRES").expect(
                    "FLOW_TEST_STORE=postgres needs FLOW_TEST_POSTGRES=<url>: run the tests \
                     through scripts/test.sh, or start one with scripts/postgres.sh start",
                );
                let name = format!("flow_test_{}", crate::store::digest::new_run_id());
                let url = create_postgres_database(&server, &name)
                    .unwrap_or_else(|error| panic!("PostgreSQL at {server}: {error}"));
                let store = Store::open_postgres(&url, &root).unwrap();
                let database = Some((server, name));
                (TestDir { dir, database }, store)
            }
            Ok(other) if !other.is_empty() && other != "sqlite" => {
                panic!("FLOW_TEST_STORE is `{other}`: expected sqlite or postgres")
            }
            _ => {
                let store = Store::open(&root).unwrap();
                (
                    TestDir {
                        dir,
                        database: None,
                    },
                    store,
                )
            }
        }
    }

    /// The temp dir of a test store, and its PostgreSQL database if it has one.
    pub(crate) struct TestDir {
        dir: tempfile::TempDir,
        database: Option<(String, String)>,
    }

    impl TestDir {
        pub(crate) fn path(&self) -> &std::path::Path {
            self.dir.path()
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            if let Some((server, name)) = &self.database {
                // Nothing to report to from a drop; the cluster is thrown away after the run.
                let _ = drop_postgres_database(server, name);
            }
        }
    }

    pub(crate) fn day(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    /// Begins a run of `entry` with the given params and upstream, everything else fixed.
    pub(crate) fn begin(
        store: &Store,
        entry: &str,
        params: &BTreeMap<String, String>,
        upstream: &[(String, RunId)],
        run_time: DateTime<Utc>,
    ) -> RunId {
        let key = RunKey {
            entry: entry.to_string(),
            key_value: Some("SMD".to_string()),
            params: params.clone(),
            upstream: upstream.to_vec(),
            data_version: "data-1".to_string(),
            code_version: "abc123".to_string(),
        };
        store
            .begin_run(&NewRun {
                key: &key,
                experiment: "Default",
                member: None,
                code_dirty: false,
                command: "echo hi",
                run_time,
            })
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::test_support::day;
    use super::*;

    #[test]
    fn open_creates_layout_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".flow");
        let store = Store::open(&root).unwrap();
        for sub in ["objects", "runs", "tmp"] {
            assert!(root.join(sub).is_dir(), "{sub}");
        }
        assert!(root.join(DB_FILE).is_file());
        drop(store);
        Store::open(&root).unwrap();
    }

    #[test]
    fn a_store_from_a_newer_flow_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".flow");
        let store = Store::open(&root).unwrap();
        let newer = schema::migrations().len() as i64 + 1;
        store
            .connection()
            .execute_batch(&format!("PRAGMA user_version = {newer}"))
            .unwrap();
        drop(store);
        let error = Store::open(&root).err().expect("refused");
        assert!(
            matches!(error, StoreError::NewerSchema { found, .. } if found == newer),
            "{error}"
        );
        assert!(error.to_string().contains("newer flow"), "{error}");
    }

    #[test]
    fn two_handles_write_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".flow");
        Store::open(&root).unwrap();
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&root).unwrap();
                    let key = RunKey {
                        entry: "train".to_string(),
                        params: BTreeMap::from([("worker".to_string(), worker.to_string())]),
                        data_version: "d".to_string(),
                        code_version: "none".to_string(),
                        ..RunKey::default()
                    };
                    for _ in 0..50 {
                        let run = store
                            .begin_run(&NewRun {
                                key: &key,
                                experiment: "concurrent",
                                member: None,
                                code_dirty: false,
                                command: "true",
                                run_time: day(1),
                            })
                            .unwrap();
                        let points: Vec<Metric> = (0..100)
                            .map(|step| Metric {
                                key: "loss".into(),
                                value: 1.0,
                                step,
                                timestamp_ms: 0,
                            })
                            .collect();
                        store.log_metrics(&run, &points).unwrap();
                        store.end_run(&run, RunStatus::Finished).unwrap();
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let store = Store::open(&root).unwrap();
        assert_eq!(store.list_runs(&RunFilter::default()).unwrap().len(), 100);
        let conn = store.connection();
        let points: i64 = conn
            .query_row("SELECT count(*) FROM metrics", (), |row| row.get(0))
            .unwrap();
        assert_eq!(points, 100 * 100);
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", (), |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }
}
