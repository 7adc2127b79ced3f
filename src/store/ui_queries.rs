//! The dashboard's read-only questions: one page of runs under filters and an order of the
//! user's choosing (with the total count), the points of one metric, each metric's latest
//! step, and the few rows a live page polls.
//!
//! Every query reads; none writes. A page of runs costs one indexed scan plus one
//! `get_run` per row shown, never a read of every run.

use std::path::PathBuf;

use crate::store::db::Value;
use crate::store::db::{args, params_vec, DbResult};

use crate::store::artifacts::Artifact;
use crate::store::error::Result;
use crate::store::objects::ContentHash;
use crate::store::queries::resolve_run;
use crate::store::runs::RunRecord;
use crate::store::Store;

/// A column of the runs table that filters and orders can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunField {
    RunId,
    Entry,
    /// The value of the step's `key` parameter.
    KeyValue,
    Member,
    Status,
    Experiment,
    CodeVersion,
    /// When the run began; also the default order (newest first).
    Start,
    /// `end - start`; RUNNING runs have none.
    Duration,
    Param(String),
    /// The metric's latest value.
    Metric(String),
    Tag(String),
}

/// How a condition compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Case-insensitive substring.
    Contains,
}

/// One `field op value` filter; numbers compare numerically, everything else as text.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCondition {
    pub field: RunField,
    pub comparison: Comparison,
    pub value: ConditionValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConditionValue {
    Number(f64),
    Text(String),
}

/// One page of the runs table: conditions (all must hold), an order, and a window.
#[derive(Debug, Clone)]
pub struct RunSearch {
    pub conditions: Vec<RunCondition>,
    pub order_by: RunField,
    pub ascending: bool,
    pub offset: usize,
    pub limit: usize,
}

/// The runs of one page and how many runs match in all.
#[derive(Debug, Clone)]
pub struct RunPage {
    pub total: u64,
    pub runs: Vec<RunRecord>,
}

/// A metric's latest point, with the step it was logged at.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestPoint {
    pub key: String,
    pub step: i64,
    pub value: f64,
}

impl Store {
    /// One page of runs matching every condition, in the search's order (ties: newest
    /// first), and the number of matches.
    pub fn search_runs(&self, search: &RunSearch) -> Result<RunPage> {
        let mut values: Vec<Value> = Vec::new();
        let mut conditions = Vec::new();
        for condition in &search.conditions {
            conditions.push(condition_sql(condition, &mut values));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!(
            "SELECT count(*) FROM runs r JOIN experiments e ON e.id = r.experiment_id {where_clause}"
        );
        let n_condition_values = values.len();
        let (join, order) = order_sql(&search.order_by, search.ascending, &mut values);
        let mut page_values = values.clone();
        page_values.push(Value::Integer(clamp_i64(search.limit)));
        page_values.push(Value::Integer(clamp_i64(search.offset)));
        let page_sql = format!(
            "SELECT r.run_id FROM runs r JOIN experiments e ON e.id = r.experiment_id {join}
             {where_clause} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
            page_values.len() - 1,
            page_values.len()
        );
        let (total, ids) = {
            let conn = self.connection();
            // The count binds only the condition values, not the order's join key.
            let total: i64 = conn
                .prepare_cached(&count_sql)?
                .query_row(params_vec(values[..n_condition_values].iter()), |row| {
                    row.get(0)
                })?;
            let ids: Vec<String> = conn
                .prepare_cached(&page_sql)?
                .query_map(params_vec(page_values), |row| row.get(0))?
                .collect::<DbResult<_>>()?;
            (total, ids)
        };
        let runs = ids
            .iter()
            .map(|id| self.get_run(id))
            .collect::<Result<Vec<_>>>()?;
        Ok(RunPage {
            total: u64::try_from(total).unwrap_or(0),
            runs,
        })
    }

    /// Every point of one metric of a run as `(step, value)`, by step, ties in logging
    /// order. NaN stands for a stored NaN.
    pub fn metric_points(&self, run: &str, key: &str) -> Result<Vec<(i64, f64)>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        // Read in insertion order through the `metrics_by_run` index and sort here: steps
        // almost always arrive in order, and a stable sort of sorted input is one pass,
        // where SQLite would build a temporary b-tree over every point.
        let mut points: Vec<(i64, f64)> = conn
            .prepare_cached("SELECT step, value FROM metrics WHERE run = ?1 AND key = ?2")?
            .query_map(args![rowid, key], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                ))
            })?
            .collect::<DbResult<_>>()?;
        points.sort_by_key(|&(step, _)| step);
        Ok(points)
    }

    /// Each metric's latest point, with its step, by key: a key whose latest step is above
    /// zero has a curve worth drawing.
    pub fn latest_points(&self, run: &str) -> Result<Vec<LatestPoint>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let points = conn
            .prepare_cached(
                "SELECT key, step, value FROM latest_metrics WHERE run = ?1 ORDER BY key",
            )?
            .query_map([rowid], |row| {
                Ok(LatestPoint {
                    key: row.get(0)?,
                    step: row.get(1)?,
                    value: row.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
                })
            })?
            .collect::<DbResult<_>>()?;
        Ok(points)
    }

    /// Keys of params, metrics and tags that the newest `sample` runs use, for column
    /// pickers and "did you mean" hints; bounded so it stays cheap on a large store.
    pub fn recent_field_names(&self, sample: usize) -> Result<FieldNames> {
        let conn = self.connection();
        let read = |sql: &str| -> Result<Vec<String>> {
            let names = conn
                .prepare_cached(sql)?
                .query_map([clamp_i64(sample)], |row| row.get(0))?
                .collect::<DbResult<_>>()?;
            Ok(names)
        };
        Ok(FieldNames {
            params: read(
                "SELECT DISTINCT key FROM params WHERE run IN
                 (SELECT id FROM runs ORDER BY id DESC LIMIT ?1) ORDER BY key",
            )?,
            metrics: read(
                "SELECT DISTINCT key FROM latest_metrics WHERE run IN
                 (SELECT id FROM runs ORDER BY id DESC LIMIT ?1) ORDER BY key",
            )?,
            tags: read(
                "SELECT DISTINCT key FROM tags WHERE run IN
                 (SELECT id FROM runs ORDER BY id DESC LIMIT ?1) ORDER BY key",
            )?,
        })
    }

    /// Where the object holding a published artifact's bytes lives (it may have been
    /// removed by hand since; the caller says so when it is missing).
    pub fn object_of(&self, artifact: &Artifact) -> Result<PathBuf> {
        let hash = ContentHash::parse(&artifact.hash)?;
        Ok(self.objects().path(&hash))
    }

    /// Entry points with at least one run, sorted.
    pub fn entries_with_runs(&self) -> Result<Vec<String>> {
        let conn = self.connection();
        let entries = conn
            .prepare_cached("SELECT DISTINCT entry FROM runs ORDER BY entry")?
            .query_map((), |row| row.get(0))?
            .collect::<DbResult<_>>()?;
        Ok(entries)
    }
}

/// Param, metric and tag names in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldNames {
    pub params: Vec<String>,
    pub metrics: Vec<String>,
    pub tags: Vec<String>,
}

/// SQL for one condition, its values appended to `values`. Field names are never spliced
/// into the SQL; only fixed column names are.
fn condition_sql(condition: &RunCondition, values: &mut Vec<Value>) -> String {
    let operator = match condition.comparison {
        Comparison::Eq => "=",
        Comparison::Ne => "!=",
        Comparison::Lt => "<",
        Comparison::Le => "<=",
        Comparison::Gt => ">",
        Comparison::Ge => ">=",
        Comparison::Contains => "LIKE",
    };
    let mut bind = |value: Value| {
        values.push(value);
        format!("?{}", values.len())
    };
    let operand = |column: &str, bind: &mut dyn FnMut(Value) -> String| -> String {
        match (&condition.value, condition.comparison) {
            (value, Comparison::Contains) => {
                let text = match value {
                    ConditionValue::Text(text) => text.clone(),
                    ConditionValue::Number(number) => number.to_string(),
                };
                let escaped = text
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!(
                    "lower({column}) LIKE lower({}) ESCAPE '\\'",
                    bind(Value::Text(format!("%{escaped}%")))
                )
            }
            (ConditionValue::Number(number), _) => {
                format!(
                    "CAST({column} AS REAL) {operator} {}",
                    bind(Value::Real(*number))
                )
            }
            (ConditionValue::Text(text), _) => {
                format!("{column} {operator} {}", bind(Value::Text(text.clone())))
            }
        }
    };
    match &condition.field {
        RunField::RunId => operand("r.run_id", &mut bind),
        RunField::Entry => operand("r.entry", &mut bind),
        RunField::KeyValue => operand("r.key_value", &mut bind),
        RunField::Member => operand("r.member", &mut bind),
        RunField::Status => operand("r.status", &mut bind),
        RunField::Experiment => operand("e.name", &mut bind),
        RunField::CodeVersion => operand("r.code_version", &mut bind),
        RunField::Start => operand("r.start_time", &mut bind),
        RunField::Duration => operand("((r.end_time - r.start_time) / 1e6)", &mut bind),
        RunField::Param(key) => {
            let key = bind(Value::Text(key.clone()));
            format!(
                "EXISTS (SELECT 1 FROM params p WHERE p.run = r.id AND p.key = {key} AND {})",
                operand("p.value", &mut bind)
            )
        }
        RunField::Metric(key) => {
            let key = bind(Value::Text(key.clone()));
            format!(
                "EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run = r.id AND m.key = {key} AND {})",
                operand("m.value", &mut bind)
            )
        }
        RunField::Tag(key) => {
            let key = bind(Value::Text(key.clone()));
            format!(
                "EXISTS (SELECT 1 FROM tags t WHERE t.run = r.id AND t.key = {key} AND {})",
                operand("t.value", &mut bind)
            )
        }
    }
}

/// The join (if the order needs one) and the ORDER BY terms; runs without the value
/// come last in either direction, ties newest first.
fn order_sql(field: &RunField, ascending: bool, values: &mut Vec<Value>) -> (String, String) {
    let direction = if ascending { "ASC" } else { "DESC" };
    let mut join_on = |table: &str, key: &str| {
        values.push(Value::Text(key.to_string()));
        format!(
            "LEFT JOIN {table} o ON o.run = r.id AND o.key = ?{}",
            values.len()
        )
    };
    // (join, the expression that is NULL when a run has no value, the sort expressions)
    let (join, value, terms): (String, &str, Vec<&str>) = match field {
        RunField::Start => return (String::new(), format!("r.id {direction}")),
        RunField::RunId => (String::new(), "r.run_id", vec!["r.run_id"]),
        RunField::Entry => (String::new(), "r.entry", vec!["r.entry"]),
        RunField::KeyValue => (String::new(), "r.key_value", vec!["r.key_value"]),
        RunField::Member => (String::new(), "r.member", vec!["r.member"]),
        RunField::Status => (String::new(), "r.status", vec!["r.status"]),
        RunField::Experiment => (String::new(), "e.name", vec!["e.name"]),
        RunField::CodeVersion => (String::new(), "r.code_version", vec!["r.code_version"]),
        RunField::Duration => (
            String::new(),
            "r.end_time",
            vec!["(r.end_time - r.start_time)"],
        ),
        // Numeric params sort as numbers; text ones (CAST gives 0) by their text.
        RunField::Param(key) => (
            join_on("params", key),
            "o.value",
            vec!["CAST(o.value AS REAL)", "o.value"],
        ),
        RunField::Metric(key) => (join_on("latest_metrics", key), "o.value", vec!["o.value"]),
        RunField::Tag(key) => (join_on("tags", key), "o.value", vec!["o.value"]),
    };
    let terms: Vec<String> = terms
        .iter()
        .map(|term| format!("{term} {direction}"))
        .collect();
    (
        join,
        format!("{value} IS NULL, {}, r.id DESC", terms.join(", ")),
    )
}

fn clamp_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::{begin, day, temp_store};
    use crate::store::{Metric, RunStatus};

    fn search(conditions: Vec<RunCondition>, order_by: RunField, ascending: bool) -> RunSearch {
        RunSearch {
            conditions,
            order_by,
            ascending,
            offset: 0,
            limit: 50,
        }
    }

    fn metric(key: &str, value: f64, step: i64) -> Metric {
        Metric {
            key: key.to_string(),
            value,
            step,
            timestamp_ms: 0,
        }
    }

    /// Three train runs with epochs 2, 10, 3 and f1 0.5, 0.9, (none).
    fn three_runs() -> (crate::store::test_support::TestDir, Store, Vec<String>) {
        let (dir, store) = temp_store();
        let mut ids = Vec::new();
        for (epochs, f1) in [("2", Some(0.5)), ("10", Some(0.9)), ("3", None)] {
            let params = BTreeMap::from([("epochs".to_string(), epochs.to_string())]);
            let run = begin(&store, "train", &params, &[], day(1));
            if let Some(f1) = f1 {
                store.log_metrics(&run, &[metric("f1", f1, 0)]).unwrap();
            }
            store.end_run(&run, RunStatus::Finished).unwrap();
            ids.push(run);
        }
        (dir, store, ids)
    }

    #[test]
    fn filters_on_metrics_and_params_compare_numbers_as_numbers() {
        let (_dir, store, ids) = three_runs();
        let page = store
            .search_runs(&search(
                vec![RunCondition {
                    field: RunField::Metric("f1".into()),
                    comparison: Comparison::Gt,
                    value: ConditionValue::Number(0.6),
                }],
                RunField::Start,
                false,
            ))
            .unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.runs[0].run_id, ids[1]);
        // "10" > "3" only as numbers.
        let page = store
            .search_runs(&search(
                vec![RunCondition {
                    field: RunField::Param("epochs".into()),
                    comparison: Comparison::Ge,
                    value: ConditionValue::Number(3.0),
                }],
                RunField::Start,
                true,
            ))
            .unwrap();
        let found: Vec<&str> = page.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(found, [ids[1].as_str(), ids[2].as_str()]);
    }

    #[test]
    fn orders_by_param_numerically_and_by_metric_with_missing_last() {
        let (_dir, store, ids) = three_runs();
        let order = |field: RunField, ascending: bool| -> Vec<String> {
            store
                .search_runs(&search(Vec::new(), field, ascending))
                .unwrap()
                .runs
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        };
        assert_eq!(
            order(RunField::Param("epochs".into()), true),
            [ids[0].clone(), ids[2].clone(), ids[1].clone()]
        );
        assert_eq!(
            order(RunField::Metric("f1".into()), false),
            [ids[1].clone(), ids[0].clone(), ids[2].clone()]
        );
        assert_eq!(
            order(RunField::Metric("f1".into()), true),
            [ids[0].clone(), ids[1].clone(), ids[2].clone()]
        );
    }

    #[test]
    fn pages_count_every_match_but_return_one_window() {
        let (_dir, store, ids) = three_runs();
        let mut request = search(Vec::new(), RunField::Start, false);
        request.limit = 2;
        request.offset = 2;
        let page = store.search_runs(&request).unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(page.runs.len(), 1);
        assert_eq!(page.runs[0].run_id, ids[0]);
    }

    #[test]
    fn contains_is_a_literal_substring() {
        let (_dir, store, _) = three_runs();
        let like = |text: &str| {
            store
                .search_runs(&search(
                    vec![RunCondition {
                        field: RunField::Entry,
                        comparison: Comparison::Contains,
                        value: ConditionValue::Text(text.into()),
                    }],
                    RunField::Start,
                    false,
                ))
                .unwrap()
                .total
        };
        assert_eq!(like("rai"), 3);
        assert_eq!(like("%"), 0);
        assert_eq!(like("r_in"), 0);
    }

    #[test]
    fn metric_points_come_back_by_step() {
        let (_dir, store, ids) = three_runs();
        store
            .log_metrics(
                &ids[2],
                &[
                    metric("loss", 0.3, 2),
                    metric("loss", 0.9, 0),
                    metric("loss", f64::NAN, 1),
                ],
            )
            .unwrap();
        let points = store.metric_points(&ids[2], "loss").unwrap();
        let steps: Vec<i64> = points.iter().map(|p| p.0).collect();
        assert_eq!(steps, [0, 1, 2]);
        assert!(points[1].1.is_nan());
        let latest = store.latest_points(&ids[2]).unwrap();
        assert_eq!(latest[0].key, "loss");
        assert_eq!(latest[0].step, 2);
    }
}
