//! `experiments/*`: create, get, get-by-name, search, update (rename), delete, restore,
//! set-experiment-tag, delete-experiment-tag.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::store::{ExperimentSearch, Lifecycle, ViewType, DEFAULT_EXPERIMENT_ID};
use crate::tracking::error::ApiError;
use crate::tracking::request::Fields;
use crate::tracking::search_request::{next_page_token, SearchRequest};
use crate::tracking::{
    empty, experiment_id, filter, validate, wire, BodyFields, QueryFields, TrackingState,
};

pub async fn create(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let name = fields.required_string("name")?;
    validate::length("name", &name, validate::MAX_EXPERIMENT_NAME_LENGTH)?;
    if fields
        .string("artifact_location")?
        .is_some_and(|location| !location.is_empty())
    {
        return Err(ApiError::invalid(
            "'artifact_location' is not supported: flow server stores every run's artifacts \
             itself, content-addressed, behind the mlflow-artifacts proxy",
        ));
    }
    let tags = experiment_tags(&fields)?;
    let id = state
        .with_store(move |store| Ok(store.create_experiment(&name, &tags)?))
        .await?;
    Ok(Json(json!({ "experiment_id": id.to_string() })))
}

pub async fn get(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    let experiment = state
        .with_store(move |store| Ok(store.experiment(id)?))
        .await?;
    Ok(Json(json!({ "experiment": wire::experiment(&experiment) })))
}

pub async fn get_by_name(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    let name = fields.required_string("experiment_name")?;
    let experiment = state
        .with_store(move |store| {
            store.experiment_by_name(&name)?.ok_or_else(|| {
                ApiError::not_found(format!("Could not find experiment with name '{name}'"))
            })
        })
        .await?;
    Ok(Json(json!({ "experiment": wire::experiment(&experiment) })))
}

pub async fn search(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    search_with(state, fields).await
}

/// The same search with its fields in the query string (older clients, the web UI).
pub async fn search_get(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    search_with(state, fields).await
}

async fn search_with(state: Arc<TrackingState>, fields: Fields) -> Result<Json<Value>, ApiError> {
    let request = SearchRequest::parse(
        &fields,
        filter::experiment_filters,
        filter::experiment_order,
    )?;
    let (offset, limit) = (request.offset, request.limit);
    let search = ExperimentSearch {
        view: view_type(&fields, "view_type")?,
        filters: request.filters,
        order: request.order,
        offset,
        limit,
    };
    let (experiments, more) = state
        .with_store(move |store| Ok(store.search_experiments(&search)?))
        .await?;
    let mut response = json!({
        "experiments": experiments.iter().map(wire::experiment).collect::<Vec<_>>(),
    });
    if let Some(token) = next_page_token(offset, limit, more) {
        response["next_page_token"] = json!(token);
    }
    Ok(Json(response))
}

pub async fn update(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    let new_name = fields.required_string("new_name")?;
    validate::length("new_name", &new_name, validate::MAX_EXPERIMENT_NAME_LENGTH)?;
    state
        .with_store(move |store| Ok(store.rename_experiment(id, &new_name)?))
        .await?;
    Ok(empty())
}

pub async fn delete(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    if id == DEFAULT_EXPERIMENT_ID {
        return Err(ApiError::invalid(format!(
            "Cannot delete the default experiment '{DEFAULT_EXPERIMENT_ID}'"
        )));
    }
    state
        .with_store(move |store| Ok(store.set_experiment_lifecycle(id, Lifecycle::Deleted)?))
        .await?;
    Ok(empty())
}

pub async fn restore(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    state
        .with_store(move |store| Ok(store.set_experiment_lifecycle(id, Lifecycle::Active)?))
        .await?;
    Ok(empty())
}

pub async fn set_tag(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    let key = fields.required_string("key")?;
    let value = fields.string("value")?.unwrap_or_default();
    validate::length("key", &key, validate::MAX_KEY_LENGTH)?;
    validate::length("value", &value, validate::MAX_EXPERIMENT_TAG_VALUE_LENGTH)?;
    state
        .with_store(move |store| Ok(store.set_experiment_tag(id, &key, &value)?))
        .await?;
    Ok(empty())
}

pub async fn delete_tag(
    State(state): State<Arc<TrackingState>>,
    BodyFields(fields): BodyFields,
) -> Result<Json<Value>, ApiError> {
    let id = experiment_id(&fields.required_string("experiment_id")?)?;
    let key = fields.required_string("key")?;
    state
        .with_store(move |store| Ok(store.delete_experiment_tag(id, &key)?))
        .await?;
    Ok(empty())
}

/// `view_type` / `run_view_type`: MLflow's enum by name or by number.
pub fn view_type(fields: &Fields, name: &str) -> Result<ViewType, ApiError> {
    let text = match fields.string(name) {
        Ok(text) => text,
        Err(_) => fields.int(name)?.map(|number| number.to_string()),
    };
    match text.as_deref() {
        None | Some("") | Some("ACTIVE_ONLY") | Some("1") => Ok(ViewType::ActiveOnly),
        Some("DELETED_ONLY") | Some("2") => Ok(ViewType::DeletedOnly),
        Some("ALL") | Some("3") => Ok(ViewType::All),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid value \"{other}\" for parameter '{name}' supplied: expected ACTIVE_ONLY, \
             DELETED_ONLY or ALL"
        ))),
    }
}

fn experiment_tags(fields: &Fields) -> Result<BTreeMap<String, String>, ApiError> {
    let mut tags = BTreeMap::new();
    for tag in fields.objects("tags")? {
        let key = tag.required_string("key")?;
        let value = tag.string("value")?.unwrap_or_default();
        validate::length("tags.key", &key, validate::MAX_KEY_LENGTH)?;
        validate::length(
            "tags.value",
            &value,
            validate::MAX_EXPERIMENT_TAG_VALUE_LENGTH,
        )?;
        tags.insert(key, value);
    }
    Ok(tags)
}
