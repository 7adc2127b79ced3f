//! Responses in MLflow's protobuf JSON: snake_case fields, int64 as numbers (as MLflow's
//! server writes them), doubles that are not finite as `"NaN"`, `"Infinity"`,
//! `"-Infinity"`, experiment ids as strings, times in milliseconds.
//!
//! Runs and metric points, which come by the thousand in a page, are serialised straight
//! from the store's records (borrowing them), without building a JSON tree first.

use std::collections::BTreeMap;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::store::{Experiment, LatestMetric, Metric, TrackedRun};
use crate::tracking::error::ApiError;

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

/// MLflow's `Run`.
#[derive(Debug, Serialize)]
pub struct Run<'a> {
    info: RunInfo<'a>,
    data: RunData<'a>,
    inputs: Empty,
    outputs: Empty,
}

/// MLflow's `RunInfo`.
#[derive(Debug, Serialize)]
pub struct RunInfo<'a> {
    run_id: &'a str,
    run_uuid: &'a str,
    run_name: &'a str,
    experiment_id: String,
    user_id: &'a str,
    status: &'static str,
    start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    artifact_uri: String,
    lifecycle_stage: &'static str,
}

#[derive(Debug, Serialize)]
struct RunData<'a> {
    metrics: Vec<LatestPoint<'a>>,
    params: Vec<Pair<'a>>,
    tags: Vec<Pair<'a>>,
}

#[derive(Debug, Serialize)]
struct LatestPoint<'a> {
    key: &'a str,
    value: Double,
    timestamp: i64,
    step: i64,
}

/// A point of a metric's history.
#[derive(Debug, Serialize)]
pub struct HistoryPoint<'a> {
    key: &'a str,
    value: Double,
    timestamp: i64,
    step: i64,
    run_id: &'a str,
}

#[derive(Debug, Serialize)]
struct Pair<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Debug, Serialize)]
struct Empty {}

/// A double as protobuf JSON writes it.
#[derive(Debug, Clone, Copy)]
pub struct Double(pub f64);

/// A page of `runs/search`.
#[derive(Debug, Serialize)]
pub struct RunsPage<'a> {
    pub runs: Vec<Run<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of `metrics/get-history`.
#[derive(Debug, Serialize)]
pub struct HistoryPage<'a> {
    pub metrics: Vec<HistoryPoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

pub fn run(run: &TrackedRun) -> Run<'_> {
    Run {
        info: run_info(run),
        data: RunData {
            metrics: run.metrics.iter().map(latest_point).collect(),
            params: borrowed_pairs(&run.params),
            tags: borrowed_pairs(&run.tags),
        },
        inputs: Empty {},
        outputs: Empty {},
    }
}

pub fn run_info(run: &TrackedRun) -> RunInfo<'_> {
    RunInfo {
        run_id: &run.run_id,
        run_uuid: &run.run_id,
        run_name: &run.name,
        experiment_id: run.experiment_id.to_string(),
        user_id: &run.user,
        status: run.status.as_str(),
        start_time: run.start_time.timestamp_millis(),
        end_time: run.end_time.map(|end| end.timestamp_millis()),
        artifact_uri: artifact_uri(run.experiment_id, &run.run_id),
        lifecycle_stage: run.lifecycle.as_str(),
    }
}

pub fn history_point<'a>(run_id: &'a str, point: &'a Metric) -> HistoryPoint<'a> {
    HistoryPoint {
        key: &point.key,
        value: Double(point.value),
        timestamp: point.timestamp_ms,
        step: point.step,
        run_id,
    }
}

/// A JSON body serialised now (on the blocking pool, where callers build big pages).
pub fn to_body(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|error| ApiError::internal(format!("cannot encode the response: {error}")))
}

/// The HTTP answer of a body made by [`to_body`].
pub fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn latest_point(point: &LatestMetric) -> LatestPoint<'_> {
    LatestPoint {
        key: &point.key,
        value: Double(point.value),
        timestamp: point.timestamp_ms,
        step: point.step,
    }
}

fn borrowed_pairs(map: &BTreeMap<String, String>) -> Vec<Pair<'_>> {
    map.iter().map(|(key, value)| Pair { key, value }).collect()
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<Value> {
    map.iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect()
}

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if value == f64::INFINITY {
            serializer.serialize_str("Infinity")
        } else if value == f64::NEG_INFINITY {
            serializer.serialize_str("-Infinity")
        } else {
            serializer.serialize_f64(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_that_json_cannot_hold_are_spelled_out() {
        let text = |value| serde_json::to_string(&Double(value)).unwrap();
        assert_eq!(text(f64::NAN), "\"NaN\"");
        assert_eq!(text(f64::INFINITY), "\"Infinity\"");
        assert_eq!(text(f64::NEG_INFINITY), "\"-Infinity\"");
        assert_eq!(text(0.1), "0.1");
        assert_eq!(text(1e-300), "1e-300");
    }
}
