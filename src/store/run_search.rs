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

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::store::error::Result;
use crate::store::search::{page_values, Comparison, Op, ViewType};
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
        let mut conditions = vec![
            format!("r.experiment_id IN ({})", experiments.join(", ")),
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
        let (limit, offset) = page_values(search.offset, search.limit.saturating_add(1));
        values.push(Value::Integer(limit));
        values.push(Value::Integer(offset));
        let sql = format!(
            "SELECT r.id FROM runs r WHERE {} ORDER BY {} LIMIT ?{} OFFSET ?{}",
            conditions.join(" AND "),
            order.join(", "),
            values.len() - 1,
            values.len()
        );
        let conn = self.connection();
        let mut rowids: Vec<i64> = conn
            .prepare(&sql)?
            .query_map(params_from_iter(values), |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let more = rowids.len() > search.limit;
        rowids.truncate(search.limit);
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
