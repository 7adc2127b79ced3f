//! `flow ui`: the web dashboard over the store — runs, a run's metrics, artifacts, log and
//! lineage, comparisons, anomaly debugging of evaluate runs, the model registry, serving
//! windows and plans — and the JSON API its pages use.
//!
//! # Routes
//!
//! Pages are rendered on the server (`/`, `/runs/{id}`, `/compare`, `/models`, `/plan`,
//! ...), so a table is usable as soon as its HTML arrives; curves, live status and the
//! log's tail are filled in by the embedded scripts from `/api/flow/...` (documented in
//! README.md; a script may call it too). Assets are compiled into the binary and served
//! under `/static/`: no CDN, no network, no JS build step. [`router`] returns all of it as
//! one `axum::Router`, so `flow server` can merge it with the tracking API.
//!
//! # Performance
//!
//! No page reads all runs or all points: the runs table is one indexed page of a store
//! query (`store::ui_queries`) plus a count; a curve is reduced on the server to a few
//! thousand points (`downsample`, M4 buckets that keep every extreme) and zooming asks
//! for the visible range again. Store calls run on the blocking pool.
//!
//! # Security
//!
//! Loopback by default. Every state-changing request (`POST`/`DELETE`, only the model
//! registry's stage and alias changes) must carry the per-process token that pages
//! embed (`X-Flow-CSRF`), and an `Origin`, when sent, must be this server; `--read-only`
//! refuses them all. Artifact paths are looked up in the run's manifest, never joined to
//! a directory, and `..` is refused with a 400.

mod anomaly_page;
mod artifacts;
mod assets;
mod compare_page;
mod downsample;
mod error;
mod evaluation_files;
mod filter;
mod html;
mod lineage_graph;
mod models_page;
mod monitoring_page;
mod plan_page;
mod run_page;
mod run_row;
mod runs_page;
mod security;
mod series_cache;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;

use crate::resolve::Plan;
use crate::spec::Project;
use crate::store::Store;

pub use compare_page::lineage_params;
pub use error::UiError;
pub use html::{bytes as format_bytes, number as format_number};
pub use plan_page::plan_json;

/// What the Plan page needs from the layer that knows how to resolve (the CLI owns the
/// project directory and the registry's model URIs).
pub trait Planner: Send + Sync {
    /// The project as it is on disk now.
    fn project(&self) -> anyhow::Result<Project>;
    /// What `flow plan -e ENTRY -P ...` would decide now.
    fn plan(&self, entry: &str, params: &[String]) -> anyhow::Result<Plan>;
}

/// How the dashboard behaves.
#[derive(Clone, Default)]
pub struct UiConfig {
    /// Refuse every change (stage transitions, aliases).
    pub read_only: bool,
    /// Answers the Plan page; `None` when no project is at hand.
    pub planner: Option<Arc<dyn Planner>>,
}

/// Everything the handlers share.
pub struct UiState {
    store: Store,
    config: UiConfig,
    /// The token pages embed and writes must send back.
    csrf_token: String,
    /// Points of ended runs' curves, for zooming without reading them again.
    series: series_cache::SeriesCache,
}

impl UiState {
    pub fn new(store: Store, config: UiConfig) -> Arc<UiState> {
        Arc::new(UiState {
            store,
            config,
            csrf_token: security::new_token(),
            series: series_cache::SeriesCache::default(),
        })
    }

    /// The token to embed in a page, or nothing in read-only mode.
    fn page_token(&self) -> &str {
        if self.config.read_only {
            ""
        } else {
            &self.csrf_token
        }
    }
}

/// The dashboard's pages, its JSON API under `/api/flow/` and its assets under `/static/`.
pub fn router(state: Arc<UiState>) -> Router {
    let api = Router::new()
        .route("/runs", get(runs_page::api_runs))
        .route("/runs/status", get(runs_page::api_status))
        .route("/fields", get(runs_page::api_fields))
        .route("/runs/{id}", get(run_page::api_run))
        .route("/runs/{id}/metrics/{key}", get(run_page::api_metric))
        .route("/runs/{id}/log", get(run_page::api_log))
        .route("/runs/{id}/artifacts", get(artifacts::api_list))
        .route("/runs/{id}/artifact", get(artifacts::api_raw))
        .route("/runs/{id}/lineage", get(lineage_graph::api_lineage))
        .route("/runs/{id}/anomaly", get(anomaly_page::api_anomaly))
        .route(
            "/runs/{id}/anomaly/segments/{index}",
            get(anomaly_page::api_segment),
        )
        .route(
            "/runs/{id}/monitoring",
            get(monitoring_page::api_monitoring),
        )
        .route("/compare", get(compare_page::api_compare))
        .route("/models", get(models_page::api_models))
        .route(
            "/models/{name}/versions/{version}/stage",
            post(models_page::api_set_stage),
        )
        .route("/models/{name}/aliases", post(models_page::api_set_alias))
        .route(
            "/models/{name}/aliases/{alias}",
            axum::routing::delete(models_page::api_remove_alias),
        )
        .route("/plan", get(plan_page::api_plan))
        .fallback(api_not_found);
    Router::new()
        .route("/", get(runs_page::page))
        .route("/runs/{id}", get(run_page::page))
        .route("/runs/{id}/artifacts/view", get(artifacts::page))
        .route("/runs/{id}/anomaly", get(anomaly_page::page))
        .route("/runs/{id}/monitoring", get(monitoring_page::page))
        .route("/compare", get(compare_page::page))
        .route("/models", get(models_page::page))
        .route("/plan", get(plan_page::page))
        .route("/static/{file}", get(assets::asset))
        .nest("/api/flow", api)
        .fallback(page_not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            security::guard_writes,
        ))
        .with_state(state)
}

/// Serves [`router`] on `host:port` until Ctrl-C; `ready` hears the bound address first.
pub fn serve_blocking(
    state: Arc<UiState>,
    host: &str,
    port: u16,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let (listener, address) = crate::listen::bind(host, port)?;
    ready(address);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flow-ui")
        .build()
        .context("cannot start the dashboard's async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot register the listening socket")?;
        axum::serve(listener, router(state))
            .with_graceful_shutdown(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
            .context("the dashboard's server failed")
    })
}

/// Runs `work` on the blocking pool (store calls and file reads), so a slow query never
/// stalls the async workers.
async fn blocking<T: Send + 'static>(
    state: &Arc<UiState>,
    work: impl FnOnce(&UiState) -> Result<T, UiError> + Send + 'static,
) -> Result<T, UiError> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|error| UiError::internal(format!("a dashboard task failed: {error}")))?
}

async fn api_not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError(UiError::not_found(format!(
        "no endpoint `{}`; see the JSON API in README.md",
        uri.path()
    )))
}

async fn page_not_found(uri: axum::http::Uri) -> error::PageError {
    error::PageError(UiError::not_found(format!(
        "there is no page `{}`",
        uri.path()
    )))
}
