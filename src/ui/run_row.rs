//! A run as lists show it: its JSON in the API (with metrics JSON can carry, NaN too) and
//! the progress of a RUNNING run, which the runner records in the `flow.progress` tag.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::exec::rfc3339;
use crate::store::{RunRecord, RunStatus};
use crate::ui::html::escape;

/// The tag a running step's progress is recorded in (JSON: label, done, total, unit, updated).
pub const PROGRESS_TAG: &str = "flow.progress";

/// A run as the API shows it in lists.
pub fn run_json(
    run: &RunRecord,
    metrics: &BTreeMap<String, f64>,
    tags: &BTreeMap<String, String>,
) -> Value {
    json!({
        "run_id": run.run_id,
        "entry": run.entry,
        "key": run.key_value,
        "member": run.member,
        "status": run.status.as_str(),
        "experiment": run.experiment,
        "run_time": rfc3339(run.run_time),
        "start_time": rfc3339(run.start_time),
        "end_time": run.end_time.map(rfc3339),
        "duration_s": run.end_time.map(|end| (end - run.start_time).num_milliseconds() as f64 / 1000.0),
        "code_version": run.code_version,
        "code_dirty": run.code_dirty,
        "params": run.params,
        "metrics": metrics_json(metrics),
        "tags": tags,
        "progress": progress(tags),
        "upstream": run.upstream.iter().map(|(entry, id)| json!({"entry": entry, "run_id": id})).collect::<Vec<_>>(),
    })
}

/// Metrics as JSON numbers, with NaN and infinities as strings (JSON has no such numbers).
pub fn metrics_json(metrics: &BTreeMap<String, f64>) -> serde_json::Map<String, Value> {
    metrics
        .iter()
        .map(|(key, value)| {
            let value = if value.is_finite() {
                json!(value)
            } else {
                json!(value.to_string())
            };
            (key.clone(), value)
        })
        .collect()
}

/// The parsed `flow.progress` tag, if the run has a well-formed one.
pub fn progress(tags: &BTreeMap<String, String>) -> Option<Value> {
    let value: Value = serde_json::from_str(tags.get(PROGRESS_TAG)?).ok()?;
    value.is_object().then_some(value)
}

/// A thin bar under a RUNNING run's badge, filled by the page script from `flow.progress`.
pub fn progress_bar(run: &RunRecord, tags: &BTreeMap<String, String>) -> String {
    if run.status != RunStatus::Running {
        return String::new();
    }
    let (fraction, label) = progress(tags)
        .map(|value| {
            let done = value["done"].as_f64().unwrap_or(0.0);
            let total = value["total"].as_f64().unwrap_or(0.0);
            let fraction = if total > 0.0 {
                (done / total).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let label = value["label"].as_str().unwrap_or("").to_string();
            (fraction, label)
        })
        .unwrap_or((0.0, String::new()));
    format!(
        "<div class=\"progress\" data-progress=\"{id}\"><div style=\"width:{pct:.1}%\"></div><span>{label}</span></div>",
        id = escape(&run.run_id),
        pct = fraction * 100.0,
        label = escape(&label),
    )
}
