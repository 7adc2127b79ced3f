//! `runs/*`: create, get, update, delete, restore, search.
//!
//! A status update only applies to runs a client created; the runner's runs keep the
//! status the runner gives them (see `store::client_runs`), and the answer shows it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::store::{
    Lifecycle, NewClientRun, RunSearch, RunStatus, RunUpdate, DEFAULT_EXPERIMENT_ID, RUN_NAME_TAG,
    USER_TAG,
};
use crate::tracking::error::ApiError;
use crate::tracking::experiments::view_type;
use crate::tracking::names::random_run_name;
use crate::tracking::request::Fields;
use crate::tracking::search_request::{next_page_token, SearchRequest};
use crate::tracking::{
    empty, experiment_id, filter, validate, wire, BodyFields, QueryFields, TrackingState,
};

pub async fn create(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let experiment = match fields.string("experiment_id")?.filter(|id| !id.is_empty()) {
        Some(id) => experiment_id(&id)?,
        None => DEFAULT_EXPERIMENT_ID,
    };
    let mut tags = run_tags(&fields, "tags")?;
    let requested_name = fields.string("run_name")?.filter(|name| !name.is_empty());
    let name = match (requested_name, tags.get(RUN_NAME_TAG)) {
        (Some(name), Some(tagged)) if &name != tagged => {
            return Err(ApiError::invalid(format!(
                "Both 'run_name' (`{name}`) and the '{RUN_NAME_TAG}' tag (`{tagged}`) are \
                 given, with different values"
            )))
        }
        (Some(name), _) => name,
        (None, Some(tagged)) => tagged.clone(),
        (None, None) => random_run_name(),
    };
    validate::length("run_name", &name, validate::MAX_TAG_VALUE_LENGTH)?;
    tags.insert(RUN_NAME_TAG.to_string(), name.clone());
    if let Some(user) = fields.string("user_id")?.filter(|user| !user.is_empty()) {
        tags.entry(USER_TAG.to_string()).or_insert(user);
    }
    let start_time = match fields.int("start_time")? {
        Some(millis) => millis_time("start_time", millis)?,
        None => Utc::now(),
    };
    let run = state
        .with_store(move |store| {
            let run_id = store.create_client_run(&NewClientRun {
                experiment_id: experiment,
                name: &name,
                start_time,
                tags: &tags,
            })?;
            Ok(store.tracked_run(&run_id)?)
        })
        .await?;
    Ok(Json(json!({ "run": wire::run(&run) })))
}

pub async fn get(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let run = state
        .with_store(move |store| Ok(store.tracked_run(&run_id)?))
        .await?;
    Ok(Json(json!({ "run": wire::run(&run) })))
}

pub async fn update(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let status = match fields.string("status")? {
        Some(text) => Some(status(&text)?),
        None => None,
    };
    let end_time = match fields.int("end_time")? {
        Some(millis) => Some(millis_time("end_time", millis)?),
        None => None,
    };
    let name = fields.string("run_name")?.filter(|name| !name.is_empty());
    if let Some(name) = &name {
        validate::length("run_name", name, validate::MAX_TAG_VALUE_LENGTH)?;
    }
    let run = state
        .with_store(move |store| {
            store.update_client_run(
                &run_id,
                &RunUpdate {
                    status,
                    end_time,
                    name: name.as_deref(),
                },
            )?;
            Ok(store.tracked_run(&run_id)?)
        })
        .await?;
    Ok(Json(json!({ "run_info": wire::run_info(&run) })))
}

pub async fn delete(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    set_lifecycle(state, fields, Lifecycle::Deleted).await
}

pub async fn restore(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    set_lifecycle(state, fields, Lifecycle::Active).await
}

pub async fn search(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Response, ApiError> {
    let experiment_ids = fields
        .strings("experiment_ids")?
        .iter()
        .map(|id| experiment_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let request = SearchRequest::parse(&fields, filter::run_filters, filter::run_order)?;
    let (offset, limit) = (request.offset, request.limit);
    let search = RunSearch {
        experiment_ids,
        view: view_type(&fields, "run_view_type")?,
        filters: request.filters,
        order: request.order,
        offset,
        limit,
    };
    let body = state
        .with_store(move |store| {
            let (runs, more) = store.search_tracked_runs(&search)?;
            wire::to_body(&wire::RunsPage {
                runs: runs.iter().map(wire::run).collect(),
                next_page_token: next_page_token(offset, limit, more),
            })
        })
        .await?;
    Ok(wire::json_response(body))
}

async fn set_lifecycle(
    state: Arc<TrackingState>,
    fields: Fields,
    lifecycle: Lifecycle,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    state
        .with_store(move |store| Ok(store.set_run_lifecycle(&run_id, lifecycle)?))
        .await?;
    Ok(empty())
}

/// The tags of a request (`tags` in runs/create), validated as MLflow does.
pub fn run_tags(fields: &Fields, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut tags = BTreeMap::new();
    for (index, tag) in fields.objects(name)?.into_iter().enumerate() {
        let (key, value) = tag_pair(&tag, &format!("{name}[{index}]"))?;
        tags.insert(key, value);
    }
    Ok(tags)
}

/// One `{key, value}` tag object.
pub fn tag_pair(tag: &Fields, path: &str) -> Result<(String, String), ApiError> {
    let key = tag.required_string("key")?;
    let value = tag.string("value")?.unwrap_or_default();
    validate::key("tag", &format!("{path}.key"), &key)?;
    validate::length(
        &format!("{path}.value"),
        &value,
        validate::MAX_TAG_VALUE_LENGTH,
    )?;
    Ok((key, value))
}

/// MLflow's RunStatus by name (SCHEDULED has no flow counterpart).
fn status(text: &str) -> Result<RunStatus, ApiError> {
    match text {
        "RUNNING" => Ok(RunStatus::Running),
        "FINISHED" => Ok(RunStatus::Finished),
        "FAILED" => Ok(RunStatus::Failed),
        "KILLED" => Ok(RunStatus::Killed),
        other => Err(ApiError::invalid(format!(
            "Invalid value \"{other}\" for parameter 'status' supplied: expected RUNNING, \
             FINISHED, FAILED or KILLED"
        ))),
    }
}

fn millis_time(name: &str, millis: i64) -> Result<DateTime<Utc>, ApiError> {
    DateTime::from_timestamp_millis(millis).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid value {millis} for parameter '{name}' supplied: not a time in milliseconds"
        ))
    })
}
