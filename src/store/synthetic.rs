//! Synthetic history for benchmarks and for timing `flow plan` on a large store.

use std::collections::BTreeMap;

use crate::store::db::args;
use chrono::{Duration, TimeZone, Utc};

use crate::store::artifacts::empty_manifest;
use crate::store::error::{Result, StoreError};
use crate::store::runs::{insert_run, NewRun, RunKey, RunStatus};
use crate::store::Store;

/// Code version of every synthetic run.
pub const SYNTHETIC_COMMIT: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// Runs inserted per transaction.
const RUNS_PER_TRANSACTION: usize = 10_000;

/// Adds `n_runs` runs forming chains over `entries` (chain `c` runs `entries[0]`, then
/// `entries[1]` with the first as upstream, and so on), written in large transactions
/// with the same rows `begin_run` writes. Chain `c` has experiment `synthetic`,
/// key value `machine-{c % 28}`, params `{seed: c % 10, window: 100}`, data version
/// `synthetic-data-{c % 3}`, code version [`SYNTHETIC_COMMIT`], run_time
/// 2026-01-01T00:00Z plus `c` minutes, an empty published manifest, and status
/// FINISHED except the last step of every tenth chain (FAILED).
#[doc(hidden)]
pub fn fill_synthetic(store: &Store, n_runs: usize, entries: &[&str]) -> Result<()> {
    if entries.is_empty() {
        return Err(StoreError::Invalid {
            what: "synthetic entries",
            value: String::new(),
            reason: "at least one entry point is needed".to_string(),
        });
    }
    let manifest_hash = empty_manifest(&store.objects())?;
    let base_time = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let mut conn = store.connection();
    let mut inserted = 0;
    let mut chain = 0;
    while inserted < n_runs {
        let tx = conn.write_transaction()?;
        let batch_end = (inserted + RUNS_PER_TRANSACTION).min(n_runs);
        while inserted < batch_end {
            let params = BTreeMap::from([
                ("seed".to_string(), (chain % 10).to_string()),
                ("window".to_string(), "100".to_string()),
            ]);
            let key_value = format!("machine-{}", chain % 28);
            let data_version = format!("synthetic-data-{}", chain % 3);
            let run_time = base_time + Duration::minutes(chain as i64);
            let mut upstream = Vec::new();
            for (step_idx, entry) in entries.iter().enumerate() {
                if inserted == n_runs {
                    break;
                }
                let last_step = step_idx + 1 == entries.len();
                let status = if last_step && chain % 10 == 9 {
                    RunStatus::Failed
                } else {
                    RunStatus::Finished
                };
                let key = RunKey {
                    entry: entry.to_string(),
                    key_value: Some(key_value.clone()),
                    params: params.clone(),
                    upstream: upstream.clone(),
                    data_version: data_version.clone(),
                    code_version: SYNTHETIC_COMMIT.to_string(),
                };
                let new = NewRun {
                    key: &key,
                    experiment: "synthetic",
                    member: Some(&key_value),
                    code_dirty: false,
                    command: "synthetic",
                    run_time,
                };
                let run_id = insert_run(
                    &tx,
                    &new,
                    status,
                    None,
                    &store.host,
                    run_time,
                    Some(run_time),
                )?;
                tx.prepare_cached("UPDATE runs SET manifest_hash = ?1 WHERE run_id = ?2")?
                    .execute(args![manifest_hash.as_str(), run_id])?;
                upstream = vec![(entry.to_string(), run_id)];
                inserted += 1;
            }
            chain += 1;
        }
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;
    use crate::store::{ReuseQuery, RunFilter};

    #[test]
    fn fills_reusable_chains() {
        let (_dir, store) = temp_store();
        fill_synthetic(&store, 25, &["load", "process", "train"]).unwrap();
        let runs = store.list_runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.len(), 25);
        let train = runs.iter().find(|run| run.entry == "train").unwrap();
        assert_eq!(train.upstream.len(), 1);
        assert_eq!(
            store.get_run(&train.upstream[0].1).unwrap().entry,
            "process"
        );
        let found = store
            .find_reusable(&ReuseQuery {
                key: &train.key(),
                match_data: true,
                match_code: true,
                run_time: None,
            })
            .unwrap();
        assert_eq!(found.map(|run| run.run_id), Some(train.run_id.clone()));
        assert!(store.run_dir(&train.run_id).unwrap().is_dir());
    }
}
