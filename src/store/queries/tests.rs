//! Tests of the run queries: reuse lookup, listings, prefixes, downstream runs.

use crate::store::db::DbResult;
use std::collections::BTreeMap;

use super::*;
use crate::store::test_support::{begin, day, temp_store};
use crate::store::RunKey;

fn params(seed: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("seed".to_string(), seed.to_string())])
}

/// A FINISHED `train` run keyed like `begin` does, with the given params and upstream.
fn finished(
    store: &Store,
    seed: &str,
    upstream: &[(String, RunId)],
    run_time: chrono::DateTime<chrono::Utc>,
) -> RunId {
    let run = begin(store, "train", &params(seed), upstream, run_time);
    store.end_run(&run, RunStatus::Finished).unwrap();
    run
}

/// The key `finished` stores for these params and upstream runs.
fn key(params: &BTreeMap<String, String>, upstream: &[(String, RunId)]) -> RunKey {
    RunKey {
        entry: "train".to_string(),
        key_value: Some("SMD".to_string()),
        params: params.clone(),
        upstream: upstream.to_vec(),
        data_version: "data-1".to_string(),
        code_version: "abc123".to_string(),
    }
}

/// A query comparing every field of `key`.
fn exact(key: &RunKey) -> ReuseQuery<'_> {
    ReuseQuery {
        key,
        match_data: true,
        match_code: true,
        run_time: None,
    }
}

fn found(store: &Store, query: &ReuseQuery) -> Option<RunId> {
    store.find_reusable(query).unwrap().map(|run| run.run_id)
}

#[test]
fn find_reusable_requires_every_key_field() {
    let (_dir, store) = temp_store();
    let load = finished(&store, "0", &[], day(1));
    let other_load = finished(&store, "1", &[], day(1));
    let upstream = vec![("load".to_string(), load)];
    let run = finished(&store, "7", &upstream, day(3));
    let seven = params("7");

    let base = key(&seven, &upstream);
    assert_eq!(found(&store, &exact(&base)), Some(run.clone()));
    // One field changed at a time: which changes still find the run.
    let changed = |change: fn(&mut RunKey)| {
        let mut key = base.clone();
        change(&mut key);
        key
    };
    let variants: [(&str, RunKey, Option<RunId>); 7] = [
        ("params differ", changed(|k| k.params = params("8")), None),
        (
            "upstream differs",
            RunKey {
                upstream: vec![("load".to_string(), other_load.clone())],
                ..base.clone()
            },
            None,
        ),
        ("upstream missing", changed(|k| k.upstream.clear()), None),
        (
            "other data version",
            changed(|k| k.data_version = "data-2".into()),
            None,
        ),
        (
            "other commit",
            changed(|k| k.code_version = "def456".into()),
            None,
        ),
        ("no key value", changed(|k| k.key_value = None), None),
        (
            "other entry",
            changed(|k| k.entry = "evaluate".into()),
            None,
        ),
    ];
    for (what, variant, expected) in variants {
        assert_eq!(found(&store, &exact(&variant)), expected, "{what}");
    }
    let other_commit = changed(|k| k.code_version = "def456".into());
    let any_commit = ReuseQuery {
        match_code: false,
        ..exact(&other_commit)
    };
    assert_eq!(found(&store, &any_commit), Some(run.clone()), "any commit");
    let its_day = ReuseQuery {
        run_time: Some((day(3), day(4))),
        ..exact(&base)
    };
    assert_eq!(found(&store, &its_day), Some(run.clone()), "its day");
    // The window is exclusive at its end.
    let day_before = ReuseQuery {
        run_time: Some((day(2), day(3))),
        ..exact(&base)
    };
    assert_eq!(found(&store, &day_before), None, "the day before");
}

#[test]
fn find_reusable_picks_newest_finished() {
    let (_dir, store) = temp_store();
    let seven = params("7");
    let older = finished(&store, "7", &[], day(2));
    let newest = finished(&store, "7", &[], day(5));
    let _earlier_but_later_started = finished(&store, "7", &[], day(3));
    let failed = begin(&store, "train", &seven, &[], day(9));
    store.end_run(&failed, RunStatus::Failed).unwrap();
    let _running = begin(&store, "train", &seven, &[], day(9));

    let key = key(&seven, &[]);
    assert_eq!(found(&store, &exact(&key)), Some(newest));
    let early = ReuseQuery {
        run_time: Some((day(1), day(3))),
        ..exact(&key)
    };
    assert_eq!(found(&store, &early), Some(older));
}

/// The plan of each statement, with dummy arguments. PostgreSQL is told to avoid
/// sequential scans, as it would on these few rows: the question is whether an index can
/// answer the statement, not whether it is worth it on an empty table.
fn query_plan(store: &Store, sql: &str, args: Vec<Value>) -> String {
    let conn = store.connection();
    let (explain, column) = if conn.is_postgres() {
        conn.execute_batch("SET enable_seqscan = off").unwrap();
        ("EXPLAIN", 0)
    } else {
        ("EXPLAIN QUERY PLAN", 3)
    };
    let plan: Vec<String> = conn
        .prepare(&format!("{explain} {sql}"))
        .unwrap()
        .query_map(params_vec(args), |row| row.get(column))
        .unwrap()
        .collect::<DbResult<_>>()
        .unwrap();
    plan.join("; ")
}

/// Whether a plan (SQLite's or PostgreSQL's wording) reads index `name`.
fn uses_index(plan: &str, name: &str) -> bool {
    plan.contains(&format!("USING INDEX {name}")) || plan.contains(&format!("using {name}"))
}

/// Whether a plan sorts rows itself rather than reading them in order.
fn sorts(plan: &str) -> bool {
    plan.contains("TEMP B-TREE") || plan.contains("Sort")
}

#[test]
fn reuse_and_recent_queries_use_indexes() {
    let (_dir, store) = temp_store();
    let postgres = store.connection().is_postgres();
    if postgres {
        // PostgreSQL plans by statistics: give it a store's worth of runs to plan over.
        crate::store::fill_synthetic(&store, 5_000, &["load", "train"]).unwrap();
        store.connection().execute_batch("ANALYZE").unwrap();
    }
    let reuse_args = || -> Vec<Value> {
        let text = |value: &str| Value::Text(value.to_string());
        vec![
            text("train"),
            text("machine-3"),
            text("p"),
            text("i"),
            text("d"),
            // No time selector: the whole range, as find_by_key binds it.
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Null,
            text("FINISHED"),
        ]
    };
    let exact = query_plan(&store, &reuse_sql(true, true, postgres), reuse_args());
    assert!(uses_index(&exact, "runs_reuse"), "{exact}");
    // SQLite's index carries the rowid, the `id` tie-breaker; PostgreSQL's does not and
    // sorts the few runs of one exact key.
    assert!(
        postgres || !sorts(&exact),
        "newest first straight from the index: {exact}"
    );
    let mut any_data_args = reuse_args();
    any_data_args[4] = Value::Null;
    let any_data = query_plan(&store, &reuse_sql(false, true, postgres), any_data_args);
    assert!(uses_index(&any_data, "runs_reuse"), "{any_data}");

    let recent_args = vec![
        Value::Text("train".into()),
        Value::Text("machine-3".into()),
        Value::Integer(10),
        Value::Integer(i64::MIN),
    ];
    let recent = query_plan(&store, &recent_sql(true), recent_args);
    assert!(uses_index(&recent, "runs_recent"), "{recent}");
    assert!(postgres || !sorts(&recent), "{recent}");
    if postgres {
        assert!(
            recent.contains("Incremental Sort"),
            "in run_time order: {recent}"
        );
    }
}

#[test]
fn any_data_version_still_picks_newest() {
    let (_dir, store) = temp_store();
    let seven = params("7");
    let _old = finished(&store, "7", &[], day(1));
    let newest = finished(&store, "7", &[], day(4));
    let mut key = key(&seven, &[]);
    key.data_version = "data-0".into();
    let query = ReuseQuery {
        match_data: false,
        ..exact(&key)
    };
    assert_eq!(found(&store, &query), Some(newest));
}

#[test]
fn recent_runs_lists_any_status_newest_first() {
    let (_dir, store) = temp_store();
    let first = finished(&store, "1", &[], day(1));
    let third = begin(&store, "train", &params("3"), &[], day(3));
    let second = finished(&store, "2", &[], day(2));
    let recent = store.recent_runs("train", Some("SMD"), 10).unwrap();
    let ids: Vec<RunId> = recent.into_iter().map(|run| run.run_id).collect();
    assert_eq!(ids, vec![third, second.clone(), first]);
    assert_eq!(store.recent_runs("train", Some("SMD"), 2).unwrap().len(), 2);
    assert!(store.recent_runs("train", None, 10).unwrap().is_empty());
    assert_eq!(
        store
            .list_runs(&RunFilter {
                status: Some(RunStatus::Running),
                ..Default::default()
            })
            .unwrap()
            .len(),
        1
    );
    let limited = store
        .list_runs(&RunFilter {
            entry: Some("train".into()),
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        limited[0].run_id, second,
        "list_runs is newest started first"
    );
    assert!(store
        .list_runs(&RunFilter {
            experiment: Some("other".into()),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
}

#[test]
fn prefixes_resolve_or_report_ambiguity() {
    let (_dir, store) = temp_store();
    let ids: Vec<RunId> = (0..40)
        .map(|seed| finished(&store, &seed.to_string(), &[], day(1)))
        .collect();
    let id = &ids[0];
    assert_eq!(store.get_run(id).unwrap().run_id, *id);
    assert_eq!(
        store
            .get_run(&id[..12].to_ascii_uppercase())
            .unwrap()
            .run_id,
        *id
    );
    // 40 ids over 16 hex digits: by pigeonhole some first digit is shared.
    let shared = ids
        .iter()
        .map(|id| &id[..1])
        .find(|first| ids.iter().filter(|id| id.starts_with(*first)).count() >= 2)
        .unwrap();
    match store.get_run(shared) {
        Err(StoreError::Ambiguous { prefix, candidates }) => {
            assert_eq!(prefix, shared);
            assert!(candidates.len() >= 2 && candidates.len() <= MAX_CANDIDATES);
            assert!(candidates
                .iter()
                .all(|candidate| candidate.starts_with(shared)));
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert!(matches!(store.get_run("zz"), Err(StoreError::NotFound(prefix)) if prefix == "zz"));
    assert!(matches!(store.get_run(""), Err(StoreError::NotFound(_))));
    let absent = if id.starts_with('0') {
        "f".repeat(32)
    } else {
        "0".repeat(32)
    };
    assert!(matches!(
        store.get_run(&absent),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn downstream_lists_consumers() {
    let (_dir, store) = temp_store();
    let load = finished(&store, "0", &[], day(1));
    let upstream = vec![("load".to_string(), load.clone())];
    let first = finished(&store, "1", &upstream, day(1));
    let second = finished(&store, "2", &upstream, day(1));
    assert_eq!(
        store.downstream(&load).unwrap(),
        vec![first.clone(), second]
    );
    assert!(store.downstream(&first).unwrap().is_empty());
}

#[test]
fn list_runs_orders_by_a_metric_either_way() {
    let (_dir, store) = temp_store();
    let point = |run: &RunId, key: &str, value: f64, step: i64| {
        let metric = crate::store::Metric {
            key: key.into(),
            value,
            step,
            timestamp_ms: 0,
        };
        store.log_metrics(run, &[metric]).unwrap();
    };
    let low = finished(&store, "low", &[], day(1));
    let high = finished(&store, "high", &[], day(2));
    let nan = finished(&store, "nan", &[], day(3));
    let without = finished(&store, "without", &[], day(4));
    let later = finished(&store, "later", &[], day(5));
    point(&low, "loss", 0.1, 0);
    point(&high, "loss", 0.2, 0);
    point(&nan, "loss", f64::NAN, 0);
    point(&without, "f1", 0.9, 0);
    // Only the latest value counts: 0.9 at step 0, then 0.15 at step 1.
    point(&later, "loss", 0.9, 0);
    point(&later, "loss", 0.15, 1);
    let order = |ascending: bool, limit: Option<usize>| -> Vec<RunId> {
        store
            .list_runs(&RunFilter {
                metric: Some("loss".into()),
                ascending,
                limit,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|run| run.run_id)
            .collect()
    };
    assert_eq!(
        order(false, None),
        vec![high.clone(), later.clone(), low.clone(), nan.clone()]
    );
    assert_eq!(order(true, None), vec![low.clone(), later, high, nan]);
    assert_eq!(order(true, Some(1)), vec![low.clone()]);
    let oldest_first = store
        .list_runs(&RunFilter {
            ascending: true,
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(oldest_first[0].run_id, low);
}
