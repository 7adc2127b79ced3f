//! Logging into a run: `runs/log-metric`, `log-parameter`, `set-tag`, `delete-tag`,
//! `log-batch` (the fast path: one transaction of params and tags, then the metrics through
//! the store's batched ingestion), and `metrics/get-history`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde_json::Value;

use crate::store::{ClientBatch, Metric};
use crate::tracking::error::ApiError;
use crate::tracking::request::Fields;
use crate::tracking::runs::tag_pair;
use crate::tracking::search_request::next_page_token;
use crate::tracking::{empty, page_token, validate, wire, BodyFields, QueryFields, TrackingState};

pub async fn log_metric(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let metric = metric(&fields, "")?;
    log(
        state,
        run_id,
        ClientBatch {
            metrics: vec![metric],
            ..ClientBatch::default()
        },
    )
    .await
}

pub async fn log_param(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let param = param(&fields, "")?;
    log(
        state,
        run_id,
        ClientBatch {
            params: vec![param],
            ..ClientBatch::default()
        },
    )
    .await
}

pub async fn set_tag(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let tag = tag_pair(&fields, "")?;
    log(
        state,
        run_id,
        ClientBatch {
            tags: vec![tag],
            ..ClientBatch::default()
        },
    )
    .await
}

pub async fn delete_tag(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let key = fields.required_string("key")?;
    state
        .with_store(move |store| {
            if store.delete_client_tag(&run_id, &key)? {
                Ok(())
            } else {
                Err(ApiError::not_found(format!(
                    "No tag with name: {key} in run with id {run_id}"
                )))
            }
        })
        .await?;
    Ok(empty())
}

pub async fn log_batch(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let metrics = fields.objects("metrics")?;
    let params = fields.objects("params")?;
    let tags = fields.objects("tags")?;
    for (what, count, limit) in [
        ("metrics", metrics.len(), validate::MAX_METRICS_PER_BATCH),
        ("params", params.len(), validate::MAX_PARAMS_TAGS_PER_BATCH),
        ("tags", tags.len(), validate::MAX_PARAMS_TAGS_PER_BATCH),
        (
            "metrics, params, and tags",
            metrics.len() + params.len() + tags.len(),
            validate::MAX_ENTITIES_PER_BATCH,
        ),
    ] {
        if count > limit {
            return Err(ApiError::invalid(format!(
                "A batch logging request can contain at most {limit} {what}. Got {count} \
                 {what}. Please split up {what} across multiple requests and try again."
            )));
        }
    }
    let batch = ClientBatch {
        metrics: metrics
            .iter()
            .enumerate()
            .map(|(index, fields)| metric(fields, &format!("metrics[{index}].")))
            .collect::<Result<_, _>>()?,
        params: params
            .iter()
            .enumerate()
            .map(|(index, fields)| param(fields, &format!("params[{index}].")))
            .collect::<Result<_, _>>()?,
        tags: tags
            .iter()
            .enumerate()
            .map(|(index, fields)| tag_pair(fields, &format!("tags[{index}]")))
            .collect::<Result<_, _>>()?,
    };
    log(state, run_id, batch).await
}

pub async fn get_history(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Response, ApiError> {
    let run_id = fields.run_id()?;
    let key = fields.required_string("metric_key")?;
    let offset = page_token::decode(fields.string("page_token")?.as_deref())?;
    // Without max_results, every point (MLflow's non-paginated form).
    let limit = match fields.int("max_results")? {
        None => usize::MAX,
        Some(count) if count > 0 => usize::try_from(count).unwrap_or(usize::MAX),
        Some(count) => {
            return Err(ApiError::invalid(format!(
                "Invalid value {count} for parameter 'max_results' supplied. It must be a \
                 positive integer."
            )))
        }
    };
    let body = state
        .with_store(move |store| {
            let (points, more) = store.metric_history(&run_id, &key, offset, limit)?;
            wire::to_body(&wire::HistoryPage {
                metrics: points
                    .iter()
                    .map(|point| wire::history_point(&run_id, point))
                    .collect(),
                next_page_token: next_page_token(offset, limit, more),
            })
        })
        .await?;
    Ok(wire::json_response(body))
}

async fn log(
    state: Arc<TrackingState>,
    run_id: String,
    batch: ClientBatch,
) -> Result<Json<Value>, ApiError> {
    state
        .with_store(move |store| Ok(store.log_client_batch(&run_id, &batch)?))
        .await?;
    Ok(empty())
}

/// One metric object (or the top-level fields of log-metric); `path` prefixes errors.
fn metric(fields: &Fields, path: &str) -> Result<Metric, ApiError> {
    let key = fields.required_string("key")?;
    validate::key("metric", &format!("{path}key"), &key)?;
    let value = fields
        .float("value")?
        .ok_or_else(|| fields.missing("value"))?;
    let timestamp_ms = fields
        .int("timestamp")?
        .ok_or_else(|| fields.missing("timestamp"))?;
    let step = fields.int("step")?.unwrap_or(0);
    Ok(Metric {
        key,
        value,
        step,
        timestamp_ms,
    })
}

fn param(fields: &Fields, path: &str) -> Result<(String, String), ApiError> {
    let key = fields.required_string("key")?;
    validate::key("param", &format!("{path}key"), &key)?;
    let value = fields.string("value")?.unwrap_or_default();
    validate::length(
        &format!("{path}value"),
        &value,
        validate::MAX_PARAM_VALUE_LENGTH,
    )?;
    Ok((key, value))
}
