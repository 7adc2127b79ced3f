//! `flow serve` (REST scoring of a bundle, monitored) and `flow monitor` (its windows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;

use crate::registry;
use crate::serve::{self, BundleScorer, ModelInfo, MonitorSink, ServeConfig, WindowStats};
use crate::store::{Metric, NewRun, RunKey, RunStatus, Store};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// `runs:/<run>/model`, `models:/NAME/<version|stage>`, `models:/NAME@alias`, or a bundle directory.
    pub model_uri: String,
    /// Interface to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// Length of a monitoring window, e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub monitor_every: Duration,
    /// Rows kept per window for statistics (reservoir sample).
    #[arg(long, default_value_t = 10_000)]
    pub max_buffer: usize,
    /// Top contributing features listed per scored row.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Requests scored at once [default: number of cores].
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Streaming series kept at once (each holds its last window of rows); starting one more
    /// evicts the least recently used.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_series: u64,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The monitoring run `flow serve` created (id or prefix).
    pub run: String,
    /// How many of the latest windows to show.
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// PSI above which a feature is flagged as drifting.
    #[arg(long, default_value_t = 0.2)]
    pub psi: f64,
}

/// Stores each closed window as metrics (step = window index) of the monitoring run.
struct StoreSink {
    store: Store,
    run_id: String,
}

impl MonitorSink for StoreSink {
    fn record_window(&self, window: &WindowStats) -> Result<()> {
        let timestamp_ms = window.end.timestamp_millis();
        let metrics: Vec<Metric> = window
            .metrics()
            .into_iter()
            .map(|(key, value)| Metric {
                key,
                value,
                step: window.index as i64,
                timestamp_ms,
            })
            .collect();
        self.store.log_metrics(&self.run_id, &metrics)?;
        Ok(())
    }
}

pub fn serve(store: Store, args: ServeArgs) -> Result<i32> {
    let resolved = registry::resolve_uri(&store, &args.model_uri)?;
    let scorer = BundleScorer::load(&resolved.dir, args.top_k)?;
    let served_run = resolved
        .run_id
        .clone()
        .unwrap_or_else(|| "none".to_string());
    let name = resolved.name.clone().unwrap_or_else(|| "model".to_string());
    // The monitoring run: its metrics are the windows, its upstream edge the served run.
    let upstream: Vec<(String, String)> = match &resolved.run_id {
        Some(run) => vec![(store.get_run(run)?.entry, run.clone())],
        None => Vec::new(),
    };
    let key = RunKey {
        entry: "serve".to_string(),
        key_value: Some(name.clone()),
        params: BTreeMap::from([("model_uri".to_string(), resolved.uri.clone())]),
        upstream,
        data_version: "none".to_string(),
        code_version: "none".to_string(),
    };
    let run_id = store.begin_run(&NewRun {
        key: &key,
        experiment: "serving",
        member: None,
        code_dirty: false,
        command: &format!("flow serve {}", args.model_uri),
        run_time: Utc::now(),
    })?;
    let info = ModelInfo {
        name,
        version: resolved.version.map(|v| v.to_string()),
        run_id: served_run,
        uri: resolved.uri.clone(),
    };
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        max_body_bytes: args.max_body_bytes,
        monitor_every: args.monitor_every,
        max_buffer: args.max_buffer,
        top_k: args.top_k,
        workers: args.workers,
        max_series: usize::try_from(args.max_series).unwrap_or(usize::MAX),
        ..ServeConfig::default()
    };
    let sink_store = store.reopen()?;
    let sink = Arc::new(StoreSink {
        store: sink_store,
        run_id: run_id.clone(),
    });
    let monitor_id = run_id.clone();
    let result = serve::serve_blocking(Arc::new(scorer), info, sink, config, move |address| {
        eprintln!(
            "flow: serving `{}` on http://{address} (monitoring run {})",
            resolved.uri,
            &monitor_id[..12]
        );
        eprintln!("flow: POST /invocations, GET /health /metrics /ping /version, POST /feedback; Ctrl-C, SIGTERM or SIGHUP stops and saves the open window");
    });
    store.end_run(
        &run_id,
        if result.is_ok() {
            RunStatus::Finished
        } else {
            RunStatus::Failed
        },
    )?;
    result?;
    Ok(0)
}

pub fn monitor(store: &Store, args: MonitorArgs) -> Result<i32> {
    let run = store.get_run(&args.run)?;
    if run.entry != "serve" {
        bail!("run {} is a `{}` run, not a monitoring run of `flow serve`\nhint: list them with `flow runs list --entry serve`", &run.run_id[..12], run.entry);
    }
    let mut windows: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for metric in store.metrics(&run.run_id)? {
        windows
            .entry(metric.step)
            .or_default()
            .insert(metric.key, metric.value);
    }
    if windows.is_empty() {
        println!(
            "no monitoring window recorded yet for run {}",
            &run.run_id[..12]
        );
        return Ok(0);
    }
    println!(
        "{:<7} {:>8} {:>10} {:>12} {:>12}  drifting features (psi > {})",
        "WINDOW", "ROWS", "ANOMALY%", "SCORE.MEAN", "SCORE.P75", args.psi
    );
    let skip = windows.len().saturating_sub(args.windows);
    for (index, metrics) in windows.iter().skip(skip) {
        let get = |key: &str| metrics.get(key).copied().unwrap_or(f64::NAN);
        let mut drifting: Vec<(String, f64)> = metrics
            .iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix("feature.")?.strip_suffix(".psi")?;
                (*value > args.psi).then(|| (name.to_string(), *value))
            })
            .collect();
        drifting.sort_by(|a, b| b.1.total_cmp(&a.1));
        let shown: Vec<String> = drifting
            .iter()
            .take(5)
            .map(|(n, v)| format!("{n} ({v:.2})"))
            .collect();
        println!(
            "{:<7} {:>8} {:>9.2}% {:>12.5} {:>12.5}  {}{}",
            index,
            get("count"),
            get("anomaly_rate") * 100.0,
            get("score.mean"),
            get("score.q75"),
            if shown.is_empty() {
                "-".to_string()
            } else {
                shown.join(", ")
            },
            if drifting.len() > 5 {
                format!(" and {} more", drifting.len() - 5)
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

/// `90`, `90s`, `5m`, `1h`, `250ms`.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration like `60s` or `5m`"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("`{text}`: unknown unit `{unit}`; use ms, s, m or h"),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("`{text}` must be a positive duration");
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
