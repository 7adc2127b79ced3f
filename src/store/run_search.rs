//! MLflow's `search_runs` as SQL: runs of some experiments, filtered on metrics (latest
//! values), params, tags and attributes, ordered, one page at a time.
//!
//! # Performance
//!
//! Each filter on a metric, param or tag is an `r.id IN (SELECT run ... WHERE key = ? AND
//! value <op> ?)`, which the `(key, value)` indexes answer from the matching rows alone, so
//! a selective filter over 10,000 runs reads a handful of rows. The page's runs are then
//! loaded in bulk (tracked_runs.rs). Offsets page through a stable order: the requested
//! keys, then start time (newest first) and run id, as MLflow breaks ties.

use crate::store::db::Value;

use crate::store::error::Result;
use crate::store::search::{page_of_ids, Comparison, Op, ViewType};
use crate::store::tracked_runs::{load_tracked, TrackedRun, RUN_NAME_SQL, USER_SQL};
use crate::store::Store;

/// One page of a run search.
#[derive(Debug, Clone, Default)]
pub struct RunSearch {
    /// Runs of these experiments only (none: no runs).
    pub experiment_ids: Vec<i64>,
    pub view: ViewType,
    /// Every filter must hold.
    pub filters: Vec<RunSearchFilter>,
    /// `(subject, ascending)`, earlier keys first; missing and NaN values sort last.
    pub order: Vec<(RunSubject, bool)>,
    pub offset: usize,
    pub limit: usize,
}

/// `subject <op> operand`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSearchFilter {
    pub subject: RunSubject,
    pub comparison: Comparison,
}

/// What a filter or an order key looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSubject {
    /// The latest value of a metric.
    Metric(String),
    /// A key param or a logged param.
    Param(String),
    Tag(String),
    Field(RunField),
}

/// Run attributes a search can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunField {
    RunId,
    RunName,
    UserId,
    Status,
    /// Milliseconds since the epoch, as MLflow compares them.
    StartTime,
    EndTime,
    ExperimentId,
}

impl Store {
    /// A page of runs, and whether more follow it.
    pub fn search_tracked_runs(&self, search: &RunSearch) -> Result<(Vec<TrackedRun>, bool)> {
        if search.experiment_ids.is_empty() || search.limit == 0 {
            return Ok((Vec::new(), false));
        }
        let mut values: Vec<Value> = Vec::new();
        let experiments: Vec<String> = search
            .experiment_ids
            .iter()
            .map(|id| {
                values.push(Value::Integer(*id));
                format!("?{}", values.len())
            })
            .collect();
        // A filter on a metric, param or tag names few rows through its (key, value) index;
        // SQLite, without statistics, would rather walk the experiment's runs and test each.
        // A unary `+` takes the experiment column out of index choice, so the filter drives.
        let filter_drives = search.filters.iter().any(|filter| {
            !matches!(filter.subject, RunSubject::Field(_)) && filter.comparison.op != Op::IsNull
        });
        let experiment_column = if filter_drives {
            "+r.experiment_id"
        } else {
            "r.experiment_id"
        };
        let mut conditions = vec![
            format!("{experiment_column} IN ({})", experiments.join(", ")),
            search.view.condition("r.lifecycle_stage"),
        ];
        for filter in &search.filters {
            conditions.push(filter_sql(filter, &mut values));
        }
        let mut order = Vec::new();
        for (subject, ascending) in &search.order {
            let expr = subject_value_sql(subject, &mut values);
            let direction = if *ascending { "ASC" } else { "DESC" };
            order.push(format!("({expr}) IS NULL, {expr} {direction}"));
        }
        order.push("r.start_time DESC, r.run_id ASC".to_string());
        let conn = self.connection();
        let (rowids, more) = page_of_ids(
            &conn,
            "SELECT r.id FROM runs r",
            &conditions,
            &order,
            values,
            search.offset,
            search.limit,
        )?;
        Ok((load_tracked(&conn, &rowids)?, more))
    }
}

fn field_sql(field: RunField) -> &'static str {
    match field {
        RunField::RunId => "r.run_id",
        RunField::RunName => RUN_NAME_SQL,
        RunField::UserId => USER_SQL,
        RunField::Status => "r.status",
        RunField::StartTime => "(r.start_time / 1000)",
        RunField::EndTime => "(r.end_time / 1000)",
        RunField::ExperimentId => "r.experiment_id",
    }
}

fn filter_sql(filter: &RunSearchFilter, values: &mut Vec<Value>) -> String {
    let comparison = &filter.comparison;
    let (key, tables): (&str, &[&str]) = match &filter.subject {
        RunSubject::Field(field) => return comparison.sql(field_sql(*field), values),
        RunSubject::Metric(key) => (key, &["latest_metrics"]),
        RunSubject::Tag(key) => (key, &["tags"]),
        // Key params and logged params, each through its (key, value) index.
        RunSubject::Param(key) => (key, &["params", "logged_params"]),
    };
    values.push(Value::Text(key.to_string()));
    let key_param = values.len();
    let tests_value = !matches!(comparison.op, Op::IsNull | Op::IsNotNull);
    let rows: Vec<String> = tables
        .iter()
        .map(|table| {
            let keyed = format!("SELECT v.run FROM {table} v WHERE v.key = ?{key_param}");
            if tests_value {
                format!("{keyed} AND {}", comparison.sql("v.value", values))
            } else {
                keyed
            }
        })
        .collect();
    let rows = rows.join(" UNION ALL ");
    if comparison.op == Op::IsNull {
        format!("r.id NOT IN ({rows})")
    } else {
        format!("r.id IN ({rows})")
    }
}

/// The value a subject orders by, NULL where the run has none (or a NaN metric).
fn subject_value_sql(subject: &RunSubject, values: &mut Vec<Value>) -> String {
    let mut bind = |key: &str| {
        values.push(Value::Text(key.to_string()));
        values.len()
    };
    match subject {
        RunSubject::Field(field) => field_sql(*field).to_string(),
        RunSubject::Metric(key) => format!(
            "(SELECT v.value FROM latest_metrics v WHERE v.run = r.id AND v.key = ?{})",
            bind(key)
        ),
        RunSubject::Tag(key) => format!(
            "(SELECT v.value FROM tags v WHERE v.run = r.id AND v.key = ?{})",
            bind(key)
        ),
        RunSubject::Param(key) => {
            let key = bind(key);
            format!(
                "COALESCE((SELECT v.value FROM logged_params v WHERE v.run = r.id AND v.key = ?{key}),
                          (SELECT v.value FROM params v WHERE v.run = r.id AND v.key = ?{key}))"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::client_runs::{ClientBatch, NewClientRun};
    use crate::store::experiments::DEFAULT_EXPERIMENT_ID;
    use crate::store::metrics::Metric;
    use crate::store::search::Operand;
    use crate::store::test_support::{begin, day, temp_store};
    use crate::store::tracked_runs::RUN_NAME_TAG;

    /// Four client runs `r0..r3` (f1 = i/10, lr = 0.1 or 0.01, family tag on even ones,
    /// started a day apart) and one runner step `train/SMD` with key param `lr = 0.1`.
    fn fixture() -> (crate::store::test_support::TestDir, Store, Vec<String>) {
        let (dir, store) = temp_store();
        let mut ids = Vec::new();
        for index in 0..4u32 {
            let name = format!("r{index}");
            let mut tags = BTreeMap::from([(RUN_NAME_TAG.to_string(), name.clone())]);
            if index % 2 == 0 {
                tags.insert("family".to_string(), "gat".to_string());
            }
            let run_id = store
                .create_client_run(&NewClientRun {
                    experiment_id: DEFAULT_EXPERIMENT_ID,
                    name: &name,
                    start_time: day(1 + index),
                    tags: &tags,
                })
                .unwrap();
            let lr = if index < 2 { "0.1" } else { "0.01" };
            store
                .log_client_batch(
                    &run_id,
                    &ClientBatch {
                        metrics: vec![Metric {
                            key: "f1".into(),
                            value: f64::from(index) / 10.0,
                            step: 0,
                            timestamp_ms: 0,
                        }],
                        params: vec![("lr".into(), lr.into())],
                        tags: Vec::new(),
                    },
                )
                .unwrap();
            ids.push(run_id);
        }
        let key_params = BTreeMap::from([("lr".to_string(), "0.1".to_string())]);
        ids.push(begin(&store, "train", &key_params, &[], day(20)));
        (dir, store, ids)
    }

    fn search(
        store: &Store,
        filters: Vec<RunSearchFilter>,
        order: Vec<(RunSubject, bool)>,
    ) -> Vec<String> {
        let (runs, more) = store
            .search_tracked_runs(&RunSearch {
                experiment_ids: vec![DEFAULT_EXPERIMENT_ID],
                filters,
                order,
                limit: 100,
                ..RunSearch::default()
            })
            .unwrap();
        assert!(!more);
        runs.into_iter().map(|run| run.name).collect()
    }

    fn filter(subject: RunSubject, op: Op, operand: Operand) -> RunSearchFilter {
        RunSearchFilter {
            subject,
            comparison: Comparison { op, operand },
        }
    }

    #[test]
    fn filters_on_metrics_params_tags_and_fields() {
        let (_dir, store, _) = fixture();
        let metric =
            |op, value| filter(RunSubject::Metric("f1".into()), op, Operand::Number(value));
        assert_eq!(
            search(&store, vec![metric(Op::Ge, 0.2)], vec![]),
            vec!["r3", "r2"]
        );
        assert_eq!(
            search(
                &store,
                vec![metric(Op::Gt, 0.0), metric(Op::Lt, 0.3)],
                vec![]
            ),
            vec!["r2", "r1"]
        );
        let lr = filter(
            RunSubject::Param("lr".into()),
            Op::Eq,
            Operand::Text("0.1".into()),
        );
        assert_eq!(
            search(&store, vec![lr], vec![]),
            vec!["train/SMD", "r1", "r0"],
            "key params and logged params both count"
        );
        let untagged = filter(RunSubject::Tag("family".into()), Op::IsNull, Operand::None);
        assert_eq!(
            search(&store, vec![untagged], vec![]),
            vec!["train/SMD", "r3", "r1"]
        );
        let named = filter(
            RunSubject::Field(RunField::RunName),
            Op::Like,
            Operand::Text("r%".into()),
        );
        let finished = filter(
            RunSubject::Field(RunField::Status),
            Op::Eq,
            Operand::Text("RUNNING".into()),
        );
        assert_eq!(search(&store, vec![named, finished], vec![]).len(), 4);
    }

    #[test]
    fn order_puts_missing_values_last_and_pages_cover_every_run_once() {
        let (_dir, store, _) = fixture();
        let by_f1 = |ascending| vec![(RunSubject::Metric("f1".into()), ascending)];
        assert_eq!(
            search(&store, vec![], by_f1(false)),
            vec!["r3", "r2", "r1", "r0", "train/SMD"]
        );
        assert_eq!(
            search(&store, vec![], by_f1(true)),
            vec!["r0", "r1", "r2", "r3", "train/SMD"]
        );
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (page, more) = store
                .search_tracked_runs(&RunSearch {
                    experiment_ids: vec![DEFAULT_EXPERIMENT_ID],
                    order: by_f1(true),
                    offset,
                    limit: 2,
                    ..RunSearch::default()
                })
                .unwrap();
            seen.extend(page.into_iter().map(|run| run.name));
            offset += 2;
            if !more {
                break;
            }
        }
        assert_eq!(seen, vec!["r0", "r1", "r2", "r3", "train/SMD"]);
    }

    #[test]
    fn a_search_returns_each_runs_full_record() {
        let (_dir, store, ids) = fixture();
        let by_id = filter(
            RunSubject::Field(RunField::RunId),
            Op::In,
            Operand::List(vec![ids[2].clone()]),
        );
        let (runs, _) = store
            .search_tracked_runs(&RunSearch {
                experiment_ids: vec![DEFAULT_EXPERIMENT_ID],
                filters: vec![by_id],
                limit: 10,
                ..RunSearch::default()
            })
            .unwrap();
        assert_eq!(runs, vec![store.tracked_run(&ids[2]).unwrap()]);
        assert_eq!(runs[0].params["lr"], "0.01");
        assert_eq!(runs[0].tags["family"], "gat");
        assert_eq!(runs[0].metrics[0].value, 0.2);
    }
}
