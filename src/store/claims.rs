//! Claiming a key before executing it, so that concurrent flows compute each key once.
//!
//! A flow about to execute a step asks [`Store::claim_run`], in one IMMEDIATE
//! transaction: a FINISHED run of the key (another flow just finished it) is reused; a
//! RUNNING one whose owner is alive is waited for; otherwise this process inserts its own
//! RUNNING run and owns the key. An owner is alive while its process exists (same host:
//! pid and start time) or, for a run owned on another host, while its heartbeat is
//! younger than the [`lease`]; a dead owner's run is reaped FAILED and the key is free again.

use std::time::Duration;

use crate::store::db::{args, Db, OptionalExtension};

use crate::store::error::Result;
use crate::store::owner::Owner;
use crate::store::queries::find_by_key;
use crate::store::runs::{NewRun, ReuseQuery, RunId};
use crate::store::timestamps::{now, to_micros};
use crate::store::{RunRecord, RunStatus, Store};

/// How long a run owned on another host stays alive without a heartbeat, unless
/// `FLOW_LEASE_SECONDS` says otherwise.
pub const LEASE: Duration = Duration::from_secs(120);

/// The lease in force: [`LEASE`], or `FLOW_LEASE_SECONDS` (at least 1) when set — shorter
/// for a cluster that wants dead hosts' keys back sooner, or for tests.
pub fn lease() -> Duration {
    static LEASE_IN_FORCE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LEASE_IN_FORCE.get_or_init(|| {
        std::env::var("FLOW_LEASE_SECONDS")
            .ok()
            .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            .map_or(LEASE, |seconds| Duration::from_secs(seconds.max(1)))
    })
}

/// What [`Store::claim_run`] found.
#[derive(Debug)]
pub enum Claim {
    /// This process owns the new RUNNING run: execute it.
    Claimed(RunId),
    /// A FINISHED run of this key exists: reuse it.
    Finished(Box<RunRecord>),
    /// A live flow is computing this key: wait for it.
    Running(Box<RunRecord>),
}

impl Store {
    /// The RUNNING run of this key whose owner is alive, if any.
    pub fn find_running(&self, query: &ReuseQuery) -> Result<Option<RunRecord>> {
        let conn = self.connection();
        let query = ReuseQuery {
            run_time: None,
            ..*query
        };
        let Some(run) = find_by_key(&conn, &query, RunStatus::Running)? else {
            return Ok(None);
        };
        Ok(self.owner_alive(&conn, &run.run_id)?.then_some(run))
    }

    /// Reuses, waits for or claims the key of `new` in one transaction (see the module
    /// doc). With `reuse` false (`--force`, `--reuse never`) a FINISHED run does not count.
    pub fn claim_run(&self, new: &NewRun, query: &ReuseQuery, reuse: bool) -> Result<Claim> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        if reuse {
            if let Some(run) = find_by_key(&tx, query, RunStatus::Finished)? {
                return Ok(Claim::Finished(Box::new(run)));
            }
        }
        let running = ReuseQuery {
            run_time: None,
            ..*query
        };
        if let Some(run) = find_by_key(&tx, &running, RunStatus::Running)? {
            if self.owner_alive(&tx, &run.run_id)? {
                return Ok(Claim::Running(Box::new(run)));
            }
        }
        let run_id = self.insert_own_run(&tx, new)?;
        tx.commit()?;
        Ok(Claim::Claimed(run_id))
    }

    /// Marks the runs this process owns as alive now, for flows on other hosts.
    pub fn heartbeat(&self, runs: &[RunId]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE runs SET heartbeat = ?1 WHERE run_id = ?2 AND status = 'RUNNING'",
            )?;
            let stamp = to_micros(now());
            for run in runs {
                update.execute(args![stamp, run])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether the owner of RUNNING run `run_id` is alive (see the module doc).
    fn owner_alive(&self, conn: &Db, run_id: &str) -> Result<bool> {
        type OwnerRow = (Option<i64>, Option<i64>, String, Option<i64>);
        let row: Option<OwnerRow> = conn
            .prepare_cached("SELECT pid, pid_started, host, heartbeat FROM runs WHERE run_id = ?1")?
            .query_row([run_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()?;
        let Some((pid, started, host, heartbeat)) = row else {
            return Ok(false);
        };
        Ok(if host == self.host {
            pid.is_some_and(|pid| Owner::new(pid, started).alive())
        } else {
            heartbeat_fresh(heartbeat)
        })
    }
}

/// A heartbeat younger than the lease.
pub(crate) fn heartbeat_fresh(heartbeat: Option<i64>) -> bool {
    let lease = i64::try_from(lease().as_micros()).unwrap_or(i64::MAX);
    heartbeat.is_some_and(|beat| to_micros(now()) - beat < lease)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::{day, temp_store};
    use crate::store::RunKey;

    fn key() -> RunKey {
        RunKey {
            entry: "train".into(),
            key_value: Some("m".into()),
            params: BTreeMap::from([("seed".into(), "0".into())]),
            upstream: Vec::new(),
            data_version: "d".into(),
            code_version: "c".into(),
        }
    }

    fn claim(store: &Store, key: &RunKey, reuse: bool) -> Claim {
        let new = NewRun {
            key,
            experiment: "Default",
            member: None,
            code_dirty: false,
            command: "true",
            run_time: day(1),
        };
        let query = ReuseQuery {
            key,
            match_data: true,
            match_code: true,
            run_time: None,
        };
        store.claim_run(&new, &query, reuse).unwrap()
    }

    #[test]
    fn a_key_is_claimed_once_then_waited_for_then_reused() {
        let (_dir, store) = temp_store();
        let key = key();
        let Claim::Claimed(first) = claim(&store, &key, true) else {
            panic!("the first claim owns the key")
        };
        // This process is alive, so its RUNNING run is waited for.
        let Claim::Running(running) = claim(&store, &key, true) else {
            panic!("a live RUNNING run is waited for")
        };
        assert_eq!(running.run_id, first);
        store.end_run(&first, RunStatus::Finished).unwrap();
        let Claim::Finished(finished) = claim(&store, &key, true) else {
            panic!("a FINISHED run is reused")
        };
        assert_eq!(finished.run_id, first);
        // Forced: a new run although one finished.
        assert!(matches!(claim(&store, &key, false), Claim::Claimed(id) if id != first));
    }

    #[test]
    fn a_dead_owner_frees_the_key() {
        let (_dir, store) = temp_store();
        let key = key();
        let Claim::Claimed(first) = claim(&store, &key, true) else {
            panic!()
        };
        // Pretend the owner was a process that no longer exists.
        store
            .connection()
            .execute(
                "UPDATE runs SET pid = 2147483646, pid_started = NULL WHERE run_id = ?1",
                [&first],
            )
            .unwrap();
        assert!(store
            .find_running(&ReuseQuery {
                key: &key,
                match_data: true,
                match_code: true,
                run_time: None
            })
            .unwrap()
            .is_none());
        assert!(matches!(claim(&store, &key, true), Claim::Claimed(id) if id != first));
        // On another host only the heartbeat speaks for the owner.
        let Claim::Claimed(remote) = claim(
            &store,
            &RunKey {
                data_version: "e".into(),
                ..key.clone()
            },
            true,
        ) else {
            panic!()
        };
        store
            .connection()
            .execute(
                "UPDATE runs SET host = 'elsewhere', heartbeat = 0 WHERE run_id = ?1",
                [&remote],
            )
            .unwrap();
        let other = RunKey {
            data_version: "e".into(),
            ..key
        };
        assert!(matches!(claim(&store, &other, true), Claim::Claimed(id) if id != remote));
    }
}
