//! MLflow's tracking REST API over flow's store, so that unmodified scripts using the
//! `mlflow` client (`MLFLOW_TRACKING_URI=http://host:port`) log into flow: experiments,
//! runs, params, metrics (batched), tags, metric histories, searches with MLflow's filter
//! syntax, and artifacts through the `mlflow-artifacts` proxy, stored content-addressed.
//!
//! # Routes
//!
//! `/api/2.0/mlflow/...` (and the same under `/ajax-api/2.0/mlflow/...`, where MLflow's web
//! UI calls), `/api/2.0/mlflow-artifacts/artifacts[/...]`, `/api/3.0/mlflow/server-info`
//! (what the client probes before multipart uploads), `/health`. Any other path under
//! `/api/` or `/ajax-api/` answers 404 `ENDPOINT_NOT_FOUND`.
//!
//! # Concurrency
//!
//! Handlers run the store's blocking SQLite calls on tokio's blocking pool; the store
//! serialises them on its connection, and SQLite serialises writers across processes
//! (`flow run` beside the server included).
//!
//! # Errors
//!
//! MLflow's bodies and statuses (error.rs): a bad request is a 400 naming the parameter, an
//! unknown run or experiment a 404; nothing a client sends can panic a handler.

mod artifacts;
mod error;
mod experiments;
mod filter;
mod logging;
mod names;
mod page_token;
mod request;
mod runs;
mod search_request;
mod validate;
mod wire;

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::store::Store;
pub use error::ApiError;
use request::Fields;

/// Everything the handlers share: the store.
pub struct TrackingState {
    store: Store,
}

/// Largest request body of the JSON endpoints (MLflow caps a log-batch at 1 MB);
/// artifact uploads stream and have no limit.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// The tracking API's routes; merge them with other routers (the dashboard) as needed.
pub fn router(state: Arc<TrackingState>) -> Router {
    let mut router = Router::new();
    for prefix in ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"] {
        let at = |path: &str| format!("{prefix}/{path}");
        router = router
            .route(&at("experiments/create"), post(experiments::create))
            .route(&at("experiments/get"), get(experiments::get))
            .route(
                &at("experiments/get-by-name"),
                get(experiments::get_by_name),
            )
            .route(
                &at("experiments/search"),
                post(experiments::search).get(experiments::search_get),
            )
            .route(&at("experiments/update"), post(experiments::update))
            .route(&at("experiments/delete"), post(experiments::delete))
            .route(&at("experiments/restore"), post(experiments::restore))
            .route(
                &at("experiments/set-experiment-tag"),
                post(experiments::set_tag),
            )
            .route(
                &at("experiments/delete-experiment-tag"),
                post(experiments::delete_tag),
            )
            .route(&at("runs/create"), post(runs::create))
            .route(&at("runs/get"), get(runs::get))
            .route(&at("runs/update"), post(runs::update))
            .route(&at("runs/delete"), post(runs::delete))
            .route(&at("runs/restore"), post(runs::restore))
            .route(&at("runs/search"), post(runs::search))
            .route(&at("runs/log-metric"), post(logging::log_metric))
            .route(&at("runs/log-parameter"), post(logging::log_param))
            .route(&at("runs/set-tag"), post(logging::set_tag))
            .route(&at("runs/delete-tag"), post(logging::delete_tag))
            .route(&at("runs/log-batch"), post(logging::log_batch))
            .route(&at("metrics/get-history"), get(logging::get_history))
            .route(&at("artifacts/list"), get(artifacts::list_for_run))
            .route(&at("logged-models/search"), post(no_logged_models));
    }
    for prefix in [
        "/api/2.0/mlflow-artifacts",
        "/ajax-api/2.0/mlflow-artifacts",
    ] {
        router = router
            .route(&format!("{prefix}/artifacts"), get(artifacts::list))
            .route(
                &format!("{prefix}/artifacts/{{*path}}"),
                get(artifacts::download)
                    .put(artifacts::upload)
                    .delete(artifacts::delete),
            );
    }
    router
        .route("/api/3.0/mlflow/server-info", get(server_info))
        .route("/health", get(|| async { "OK" }))
        .route("/api/{*rest}", axum::routing::any(no_endpoint))
        .route("/ajax-api/{*rest}", axum::routing::any(no_endpoint))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .with_state(state)
}

impl TrackingState {
    pub fn new(store: Store) -> Arc<TrackingState> {
        Arc::new(TrackingState { store })
    }

    /// Runs store work on the blocking pool.
    async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&state.store))
            .await
            .map_err(|error| ApiError::internal(format!("a store task failed: {error}")))?
    }
}

/// The fields of a POST body (JSON object).
struct BodyFields(Fields);

impl<S: Send + Sync> FromRequest<S> for BodyFields {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<BodyFields, ApiError> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection: BytesRejection| {
                ApiError::invalid(format!("cannot read the request body: {rejection}"))
            })?;
        Fields::from_body(&body).map(BodyFields)
    }
}

/// The fields of a GET request's query string.
struct QueryFields(Fields);

impl<S: Send + Sync> FromRequestParts<S> for QueryFields {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<QueryFields, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection: QueryRejection| {
                ApiError::invalid(format!("cannot read the query string: {rejection}"))
            })?;
        Ok(QueryFields(Fields::from_query(pairs)))
    }
}

/// An empty JSON object: what MLflow answers when a call returns nothing.
fn empty() -> Json<Value> {
    Json(json!({}))
}

/// A numeric experiment id, as MLflow requires them.
fn experiment_id(text: &str) -> Result<i64, ApiError> {
    text.trim().parse::<i64>().map_err(|_| {
        ApiError::invalid(format!(
            "Invalid experiment ID '{text}': experiment IDs are integers"
        ))
    })
}

/// Capabilities the client reads before uploading (no multipart uploads: every artifact
/// is streamed in one request) and for its telemetry.
async fn server_info() -> Json<Value> {
    Json(json!({
        "store_type": "FlowStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
    }))
}

/// MLflow 3's logged models (`mlflow.<flavor>.log_model`) are not stored by flow server
/// (creating one answers ENDPOINT_NOT_FOUND), so a search finds none; the client searches
/// them whenever it lists a run's artifacts below the root.
async fn no_logged_models() -> Json<Value> {
    Json(json!({ "models": [] }))
}

async fn no_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::no_endpoint(method.as_str(), uri.path())
}
