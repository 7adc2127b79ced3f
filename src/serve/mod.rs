//! `flow serve`: REST scoring of raw rows with a model bundle, and monitoring of what is served.
//!
//! The server knows a model only through [`Scorer`], so it does not depend on the model code;
//! [`BundleScorer`] adapts a loaded bundle to it. Every scored row also feeds a monitoring window
//! (MLWatcher-style statistics and drift against the training data); closed windows go to a
//! [`MonitorSink`] (the CLI stores them as metrics of a monitoring run) and to `GET /metrics`.
//!
//! Module map:
//! - [`request`]: the MLflow JSON shapes and CSV bodies of `POST /invocations` -> a row-major matrix
//! - [`json_body`], [`csv_body`]: the two body formats; [`strict_json`]: JSON without duplicate keys
//! - [`content_encoding`]: gzip and deflate bodies, decoded within the body limit
//! - [`feedback`]: row ids handed out with predictions, and the labels clients send back for them
//! - [`stats`]: summaries, PSI and KS (pure functions)
//! - [`reservoir`]: bounded uniform sampling of a window's rows (Algorithm R) and its seeded RNG
//! - [`monitor`]: the current window's accumulator and the closed window's statistics
//! - [`series`]: streaming, the rolling context of each series (bounded, least recently used out)
//! - [`prometheus`]: request counters, latency histograms and the text exposition format
//! - [`bundle_scorer`]: a trained model bundle as a [`Scorer`]
//! - [`api_error`]: the JSON error body every failure is reported with
//! - [`watcher`]: the open window shared by request handlers and the window-closing task
//! - [`invocation`]: one `/invocations` request: parse, score (batch or streaming), monitor, encode
//! - [`server`]: the axum application, the scoring worker pool and the serve loop

pub mod api_error;
pub mod bundle_scorer;
pub mod content_encoding;
pub mod csv_body;
pub mod feedback;
pub mod invocation;
pub mod json_body;
pub mod monitor;
pub mod prometheus;
pub mod request;
pub mod reservoir;
pub mod series;
pub mod server;
pub mod stats;
pub mod strict_json;
pub mod watcher;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod test_client;

use std::time::Duration;

pub use bundle_scorer::BundleScorer;
pub use monitor::{FeatureSummary, WindowStats};
pub use series::SeriesContext;
pub use server::{app, serve, serve_blocking, serve_with, ServeState};
pub use stats::Summary;

/// A model as the server sees it: the input it expects and a scoring function over raw rows.
pub trait Scorer: Send + Sync + 'static {
    /// Input column names, in order; requests are checked and reordered against them.
    fn columns(&self) -> &[String];
    /// Rows needed before the first score: a request needs more than `window` rows.
    fn window(&self) -> usize;
    /// The bundle's chosen threshold; a request may override it.
    fn threshold(&self) -> Option<f64>;
    /// Per input column, statistics of the scaled training data (the drift reference).
    fn train_stats(&self) -> &[flow_steps::data::FeatureStats];
    /// The preprocessor: row-major raw values -> scaled values, as `train_stats` were computed.
    fn scale(&self, raw: &[f64]) -> Vec<f32>;
    /// Scores row-major raw values (`n_rows` x `columns().len()`).
    fn score(&self, raw: &[f64], n_rows: usize) -> anyhow::Result<ScoredRows>;
    /// Streaming: scores `n_rows` new rows of a series, already passed through [`Scorer::scale`],
    /// that follow the rows in `context`. Scores the new rows that have `window()` rows before
    /// them in the series (`first_row` counts within the new rows), then advances `context` to
    /// end with them; on an error `context` is left as it was.
    fn score_next(
        &self,
        context: &mut SeriesContext,
        scaled: &[f32],
        n_rows: usize,
    ) -> anyhow::Result<ScoredRows>;
}

/// What [`Scorer::score`] returns: one score per row from `first_row` on.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRows {
    /// Index of the first scored input row (= the window).
    pub first_row: usize,
    /// One anomaly score per scored row.
    pub scores: Vec<f64>,
    /// Per scored row, the features that contribute most to its score, highest first.
    pub top_features: Vec<Vec<(String, f64)>>,
}

/// Where the served model comes from; shown by `GET /health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: String,
    pub version: Option<String>,
    pub run_id: String,
    pub uri: String,
}

/// Receives every closed monitoring window (the CLI stores them as metrics of a monitoring run).
pub trait MonitorSink: Send + Sync + 'static {
    fn record_window(&self, window: &WindowStats) -> anyhow::Result<()>;
}

/// A sink that drops windows, for serving without a store (and for tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl MonitorSink for DiscardSink {
    fn record_window(&self, _window: &WindowStats) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Listening address and the limits that keep one server's memory and CPU bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Interface to bind; loopback by default so serving is never exposed by accident.
    pub host: String,
    /// TCP port; 0 picks a free one (reported through `ready`).
    pub port: u16,
    /// Largest accepted request body; larger ones get HTTP 413.
    pub max_body_bytes: usize,
    /// How often a monitoring window is closed and recorded.
    pub monitor_every: Duration,
    /// Most rows kept per window for statistics (reservoir sample); the row count stays exact.
    pub max_buffer: usize,
    /// How many top features each prediction lists.
    pub top_k: usize,
    /// Requests scored at the same time; 0 = one per available core.
    pub workers: usize,
    /// Requests allowed to wait for a worker; beyond that the server answers 503.
    pub max_queue: usize,
    /// Streaming series kept at once; starting one more evicts the least recently used.
    pub max_series: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".to_string(),
            port: 5000,
            max_body_bytes: 16 * 1024 * 1024,
            monitor_every: Duration::from_secs(60),
            max_buffer: 10_000,
            top_k: 3,
            workers: 0,
            max_queue: 64,
            max_series: 1000,
        }
    }
}

impl ServeConfig {
    /// The number of scoring workers, resolving 0 to the available parallelism.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}
