//! Responses in MLflow's protobuf JSON: snake_case fields, int64 as numbers (as MLflow's
//! server writes them), doubles that are not finite as `"NaN"`, `"Infinity"`,
//! `"-Infinity"`, experiment ids as strings, times in milliseconds.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::store::{Experiment, LatestMetric, Metric, TrackedRun};

/// Where a run's artifacts live, in the artifacts proxy's namespace.
pub fn artifact_uri(experiment_id: i64, run_id: &str) -> String {
    format!("mlflow-artifacts:/{experiment_id}/{run_id}/artifacts")
}

pub fn experiment(experiment: &Experiment) -> Value {
    json!({
        "experiment_id": experiment.id.to_string(),
        "name": experiment.name,
        "artifact_location": format!("mlflow-artifacts:/{}", experiment.id),
        "lifecycle_stage": experiment.lifecycle.as_str(),
        "creation_time": experiment.created_at.timestamp_millis(),
        "last_update_time": experiment.last_update_time.timestamp_millis(),
        "tags": pairs(&experiment.tags),
    })
}

pub fn run(run: &TrackedRun) -> Value {
    json!({
        "info": run_info(run),
        "data": {
            "metrics": run.metrics.iter().map(latest_metric).collect::<Vec<_>>(),
            "params": pairs(&run.params),
            "tags": pairs(&run.tags),
        },
        "inputs": {},
        "outputs": {},
    })
}

pub fn run_info(run: &TrackedRun) -> Value {
    let mut info = json!({
        "run_id": run.run_id,
        "run_uuid": run.run_id,
        "run_name": run.name,
        "experiment_id": run.experiment_id.to_string(),
        "user_id": run.user,
        "status": run.status.as_str(),
        "start_time": run.start_time.timestamp_millis(),
        "artifact_uri": artifact_uri(run.experiment_id, &run.run_id),
        "lifecycle_stage": run.lifecycle.as_str(),
    });
    if let Some(end_time) = run.end_time {
        info["end_time"] = json!(end_time.timestamp_millis());
    }
    info
}

/// A point of a metric's history.
pub fn metric(run_id: &str, point: &Metric) -> Value {
    json!({
        "key": point.key,
        "value": double(point.value),
        "timestamp": point.timestamp_ms,
        "step": point.step,
        "run_id": run_id,
    })
}

fn latest_metric(point: &LatestMetric) -> Value {
    json!({
        "key": point.key,
        "value": double(point.value),
        "timestamp": point.timestamp_ms,
        "step": point.step,
    })
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<Value> {
    map.iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect()
}

/// A double as protobuf JSON writes it.
pub fn double(value: f64) -> Value {
    if value.is_nan() {
        json!("NaN")
    } else if value == f64::INFINITY {
        json!("Infinity")
    } else if value == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_that_json_cannot_hold_are_spelled_out() {
        assert_eq!(double(f64::NAN), json!("NaN"));
        assert_eq!(double(f64::INFINITY), json!("Infinity"));
        assert_eq!(double(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(double(0.1), json!(0.1));
    }
}
