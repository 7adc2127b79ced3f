//! The HTTP application: routes, the bounded scoring pool, and the serve loop that closes a
//! monitoring window every `monitor_every` and flushes the last one on shutdown.
//!
//! Scoring is CPU-bound, so it never runs on the async workers: a request first takes an
//! admission permit (`workers + max_queue` of them; none left -> 503 at once, before the body
//! is read), then waits for one of `workers` scoring permits and runs parsing, scoring and
//! response encoding in `spawn_blocking`. Memory is thus bounded by admissions x body limit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::serve::api_error::ApiError;
use crate::serve::content_encoding::decode_body;
use crate::serve::feedback::{parse_feedback, LabelOutcome, PredictionLedger, LEDGER_CAPACITY};
use crate::serve::invocation::InvocationQuery;
use crate::serve::monitor::WindowStats;
use crate::serve::prometheus::{self, Metrics, ServerGauges};
use crate::serve::request::check_threshold;
use crate::serve::series::SeriesTable;
use crate::serve::watcher::Watcher;
use crate::serve::{ModelInfo, MonitorSink, Scorer, ServeConfig};

/// Endpoints as they appear in metrics; any other path counts as `other`.
const ENDPOINTS: [&str; 6] = [
    "/invocations",
    "/feedback",
    "/ping",
    "/health",
    "/version",
    "/metrics",
];

/// Everything the handlers share.
pub struct ServeState {
    pub(super) scorer: Arc<dyn Scorer>,
    info: ModelInfo,
    pub(super) config: ServeConfig,
    pub(super) metrics: Metrics,
    pub(super) watcher: Watcher,
    pub(super) ledger: Mutex<PredictionLedger>,
    /// Streaming series: each one's last rows and what the model carries between requests.
    pub(super) series: SeriesTable,
    workers: Arc<Semaphore>,
    admission: Arc<Semaphore>,
    admission_capacity: usize,
}

/// Runs the server until Ctrl-C, SIGTERM or SIGHUP, then flushes the last monitoring window to
/// `sink`. `ready` is called with the bound address (useful with port 0) before serving starts.
pub async fn serve(
    scorer: Arc<dyn Scorer>,
    info: ModelInfo,
    sink: Arc<dyn MonitorSink>,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let state = ServeState::new(scorer, info, config);
    let stop = stop_signal()?;
    serve_with(state, sink, ready, stop).await
}

/// Completes on the first SIGINT (Ctrl-C), SIGTERM (`kill`, systemd, container runtimes) or
/// SIGHUP (the terminal went away): all three mean "stop serving and save what you have".
/// The handlers are installed before serving starts, so no signal can slip past them. A
/// hangup ignored when flow started (`nohup flow serve ...`) stays ignored.
fn stop_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT (Ctrl-C)")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hangup = match is_ignored(libc::SIGHUP) {
        true => None,
        false => Some(signal(SignalKind::hangup()).context("cannot handle SIGHUP")?),
    };
    Ok(async move {
        let hangup = async {
            match &mut hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup => {}
        }
    })
}

/// Caps glibc's malloc arenas at `arenas` (the scoring workers and the async side). glibc
/// gives up to 8 per core, one per thread that allocates while the others are busy, and the
/// tensor tuning (`flow_steps::model::alloc`) keeps each arena at its peak: every blocking
/// thread that ever ran a forward pass would hold a model's worth of buffers (1.1 GB resident
/// after the 8-client benchmark). Must run before the server's threads first allocate.
fn limit_allocator_arenas(arenas: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas.clamp(1, 64) as libc::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Whether `signal`'s disposition is "ignore", as `nohup` leaves SIGHUP.
fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: sigaction(2) with a null new action only reads the current disposition into
    // `current`, a zeroed plain C struct owned here.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

/// [`serve`] on its own multi-threaded tokio runtime, for synchronous callers such as the CLI.
pub fn serve_blocking(
    scorer: Arc<dyn Scorer>,
    info: ModelInfo,
    sink: Arc<dyn MonitorSink>,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flow-serve")
        .build()
        .context("cannot start the server's async runtime")?;
    runtime.block_on(serve(scorer, info, sink, config, ready))
}

/// Serves `state` until `shutdown` completes, closing windows into `sink` as it goes.
pub async fn serve_with(
    state: Arc<ServeState>,
    sink: Arc<dyn MonitorSink>,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = &state.config;
    // Bind synchronously so `ready` runs before the first await (it need not be Send).
    let (listener, address) = crate::listen::bind(&config.host, config.port)?;
    ready(address);
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("cannot register the listening socket")?;

    let (stop, stopped) = watch::channel(false);
    let closer = tokio::spawn(close_windows_periodically(
        Arc::clone(&state),
        Arc::clone(&sink),
        config.monitor_every,
        stopped,
    ));
    let served = axum::serve(listener, app(Arc::clone(&state)))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop.send(true);
    let _ = closer.await;
    let _ = tokio::task::spawn_blocking(move || record_window(&state, sink.as_ref())).await;
    served.with_context(|| format!("the HTTP server on {address} failed"))
}

/// The routes, with request metrics around all of them and admission control on scoring.
pub fn app(state: Arc<ServeState>) -> Router {
    let admitted = middleware::from_fn_with_state(Arc::clone(&state), admit);
    Router::new()
        .route("/invocations", post(invocations).layer(admitted))
        .route("/feedback", post(feedback))
        .route("/ping", get(ping))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

impl ServeState {
    pub fn new(scorer: Arc<dyn Scorer>, info: ModelInfo, config: ServeConfig) -> Arc<ServeState> {
        let workers = config.effective_workers();
        limit_allocator_arenas(workers + 1);
        let series = SeriesTable::new(config.max_series);
        let admission_capacity = workers + config.max_queue;
        let watcher = Watcher::new(
            scorer.columns().to_vec(),
            scorer.train_stats().to_vec(),
            config.max_buffer,
            chrono::Utc::now(),
        );
        Arc::new(ServeState {
            scorer,
            info,
            config,
            metrics: Metrics::default(),
            watcher,
            ledger: Mutex::new(PredictionLedger::new(LEDGER_CAPACITY)),
            series,
            workers: Arc::new(Semaphore::new(workers)),
            admission: Arc::new(Semaphore::new(admission_capacity)),
            admission_capacity,
        })
    }

    /// Closes the open monitoring window now (None if nothing happened in it).
    pub fn close_window(&self) -> Option<Arc<WindowStats>> {
        self.watcher.close(chrono::Utc::now())
    }

    /// The latest closed window, as `/metrics` shows it.
    pub fn latest_window(&self) -> Option<Arc<WindowStats>> {
        self.watcher.latest()
    }

    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    fn in_flight(&self) -> usize {
        self.admission_capacity
            .saturating_sub(self.admission.available_permits())
    }
}

async fn invocations(
    State(state): State<Arc<ServeState>>,
    query: Result<Query<InvocationQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query
        .map_err(|r| ApiError::bad_request(format!("invalid query string: {}", r.body_text())))?;
    if let Some(threshold) = query.threshold {
        check_threshold(threshold)?;
    }
    let body = read_body(&state, body)?;
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let content_encoding = header_text(&headers, header::CONTENT_ENCODING);
    let _worker = Arc::clone(&state.workers)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("the scoring pool is shut down"))?;
    let scoring = Arc::clone(&state);
    let encoded = tokio::task::spawn_blocking(move || {
        let limit = scoring.config.max_body_bytes;
        let body = decode_body(content_encoding.as_deref(), body, limit)?;
        scoring.score_request(content_type.as_deref(), &body, &query)
    })
    .await
    .map_err(|e| ApiError::internal(format!("scoring crashed: {e}")))??;
    Ok(([(header::CONTENT_TYPE, "application/json")], encoded).into_response())
}

#[derive(Serialize)]
struct FeedbackResponse {
    accepted: usize,
    already_labelled: Vec<u64>,
    unknown: Vec<u64>,
}

async fn feedback(
    State(state): State<Arc<ServeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    let body = decode_body(
        header_text(&headers, header::CONTENT_ENCODING).as_deref(),
        read_body(&state, body)?,
        state.config.max_body_bytes,
    )?;
    let labels = parse_feedback(&body)?;
    let mut response = FeedbackResponse {
        accepted: 0,
        already_labelled: Vec::new(),
        unknown: Vec::new(),
    };
    let mut pairs = Vec::with_capacity(labels.len());
    {
        let mut ledger = state
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for label in &labels {
            match ledger.label(label.row_id) {
                LabelOutcome::Accepted { predicted_anomaly } => {
                    pairs.push((predicted_anomaly, label.anomaly))
                }
                LabelOutcome::AlreadyLabelled => response.already_labelled.push(label.row_id),
                LabelOutcome::Unknown => response.unknown.push(label.row_id),
            }
        }
    }
    state.watcher.record_labels(&pairs);
    state.metrics.add_labels(pairs.len() as u64);
    response.accepted = pairs.len();
    Ok(Json(response))
}

async fn ping() -> StatusCode {
    StatusCode::OK
}

async fn health(State(state): State<Arc<ServeState>>) -> Json<serde_json::Value> {
    let columns = state.scorer.columns();
    Json(serde_json::json!({
        "status": "ok",
        "name": state.info.name,
        "version": state.info.version,
        "run_id": state.info.run_id,
        "uri": state.info.uri,
        "columns": columns,
        "n_features": columns.len(),
        "window": state.scorer.window(),
        "threshold": state.scorer.threshold(),
        "flow_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn metrics(State(state): State<Arc<ServeState>>) -> Response {
    let text = state.metrics.render(ServerGauges {
        model: state.info.clone(),
        threshold: state.scorer.threshold(),
        in_flight: state.in_flight(),
        series: state.series.len(),
        series_evicted: state.series.evicted(),
        window: state.watcher.latest(),
    });
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], text).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

/// A known path asked with the wrong method (axum adds the `Allow` header).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let allowed = match uri.path() {
        "/invocations" | "/feedback" => "POST",
        _ => "GET",
    };
    ApiError::method_not_allowed(method.as_str(), uri.path(), allowed)
}

/// A header's value as text (lossy: a non-UTF-8 value is still named in errors).
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The buffered body, or the client's error (413 over the size limit).
fn read_body(state: &ServeState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.config.max_body_bytes)
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Admission control: a request either gets a place (a worker or the queue) or a 503 at once.
async fn admit(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    match Arc::clone(&state.admission).try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::busy(state.admission_capacity).into_response(),
    }
}

/// Counts every request by endpoint and status, and its latency.
async fn track(State(state): State<Arc<ServeState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let endpoint = ENDPOINTS
        .iter()
        .copied()
        .find(|&e| e == path)
        .unwrap_or("other");
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(
        endpoint,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Closes a window every `every` until told to stop; `every` = 0 closes only at shutdown.
async fn close_windows_periodically(
    state: Arc<ServeState>,
    sink: Arc<dyn MonitorSink>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if every.is_zero() {
        let _ = stop.changed().await;
        return;
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let (state, sink) = (Arc::clone(&state), Arc::clone(&sink));
                let _ = tokio::task::spawn_blocking(move || record_window(&state, sink.as_ref())).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Closes the open window and hands it to the sink. A failing sink must not stop serving, and
/// the server has no caller to return the error to, so it is reported on stderr.
fn record_window(state: &ServeState, sink: &dyn MonitorSink) {
    if let Some(window) = state.close_window() {
        if let Err(error) = sink.record_window(&window) {
            eprintln!(
                "flow serve: monitoring window {} was not recorded: {error:#}",
                window.index
            );
        }
    }
}
