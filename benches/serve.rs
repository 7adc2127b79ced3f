//! Throughput and latency of `flow serve` over loopback HTTP.
//!
//! Starts the server on 127.0.0.1:0 and drives `POST /invocations` with CSV requests that
//! each score `FLOW_BENCH_ROWS` rows (default 100; the body carries `window` more rows to seed
//! the first score) from 1, 8 and 64 client threads, each on its own kept-alive connection,
//! printing requests/s and p50/p99 latency. Each level stops after `FLOW_BENCH_REQUESTS`
//! requests (default 2000) or once `FLOW_BENCH_SECONDS` (default 10 s) have passed; requests
//! already sent are still awaited, so with a slow model keep FLOW_BENCH_REQUESTS small.
//!
//! The model, so that the numbers include a realistic CPU cost per row (its cost alone is
//! printed first, so the server's overhead can be read off):
//! - default: a synthetic recurrent scorer, a tanh RNN of `FLOW_BENCH_HIDDEN` units (default
//!   64) run over a `FLOW_BENCH_WINDOW`-row window (default 20) for every scored row, 38
//!   features as in SMD;
//! - `FLOW_BENCH_MODEL=mtad-gat`: an untrained MTAD-GAT with the paper's settings (38
//!   features, window `FLOW_BENCH_WINDOW`, default 100), i.e. the real model's cost;
//! - `FLOW_BENCH_BUNDLE=<dir>`: a trained bundle.
//!
//! Run: `cargo bench -p flow --bench serve`

#[path = "../src/serve/test_client.rs"]
mod test_client;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use flow::serve::{
    serve_with, BundleScorer, DiscardSink, ModelInfo, ScoredRows, Scorer, SeriesContext,
    ServeConfig, ServeState,
};
use flow_steps::bundle::{Bundle, Thresholds};
use flow_steps::data::{FeatureStats, Preprocessor, ScalerKind};
use flow_steps::model::Config;
use test_client::HttpClient;

const CLIENT_LEVELS: [usize; 3] = [1, 8, 64];

fn main() -> anyhow::Result<()> {
    let model = std::env::var("FLOW_BENCH_MODEL").unwrap_or_default();
    let settings = Settings::from_env(&model)?;
    let scorer: Arc<dyn Scorer> = match std::env::var_os("FLOW_BENCH_BUNDLE") {
        Some(dir) => Arc::new(BundleScorer::load(Path::new(&dir), 3)?),
        None if model == "mtad-gat" => Arc::new(BundleScorer::new(
            untrained_mtad_gat(38, settings.window)?,
            3,
        )),
        None if model.is_empty() || model == "synthetic" => {
            Arc::new(SyntheticScorer::new(38, settings.window, settings.hidden))
        }
        None => anyhow::bail!("FLOW_BENCH_MODEL=`{model}`: expected `synthetic` or `mtad-gat`"),
    };
    let n_rows = scorer.window() + settings.rows.max(1);
    let body = csv_body(scorer.columns(), n_rows);
    println!(
        "serve bench: {} features, window {}, {} rows/request ({} scored), body {} bytes, {} cores",
        scorer.columns().len(),
        scorer.window(),
        n_rows,
        n_rows - scorer.window(),
        body.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    report_scorer_cost(scorer.as_ref(), n_rows)?;

    let config = ServeConfig {
        host: "127.0.0.1".to_string(),
        port: 0,
        monitor_every: Duration::from_secs(5),
        max_queue: 256,
        ..ServeConfig::default()
    };
    let info = ModelInfo {
        name: "bench".into(),
        version: None,
        run_id: "bench".into(),
        uri: "bench".into(),
    };
    let state = ServeState::new(Arc::clone(&scorer), info, config);
    let (address, stop, server) = start_server(Arc::clone(&state))?;

    // Warm up the connection path and the scorer's caches.
    let mut warm = HttpClient::connect(address)?;
    for _ in 0..5 {
        let response = warm.post("/invocations", "text/csv", &body)?;
        anyhow::ensure!(
            response.status == 200,
            "warm-up request failed: {}",
            response.text()
        );
    }
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>8}",
        "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for clients in CLIENT_LEVELS {
        let run = drive(address, clients, &body, &settings)?;
        println!(
            "{clients:>8} {:>9} {:>10.1} {:>10.2} {:>10.2} {:>8} {:>8.1}",
            run.latencies.len(),
            run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
            percentile_ms(&run.latencies, 0.50),
            percentile_ms(&run.latencies, 0.99),
            run.errors,
            run.elapsed.as_secs_f64(),
        );
    }
    if let Some(window) = state.close_window() {
        println!(
            "monitoring window: {} rows, {} sampled, score mean {:.4}",
            window.count, window.sampled, window.score.mean
        );
    }
    let _ = stop.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(())
}

struct Settings {
    rows: usize,
    requests: usize,
    seconds: f64,
    window: usize,
    hidden: usize,
}

impl Settings {
    /// The window defaults to the paper's 100 for MTAD-GAT, 20 for the synthetic scorer.
    fn from_env(model: &str) -> anyhow::Result<Settings> {
        let default_window = if model == "mtad-gat" { 100 } else { 20 };
        Ok(Settings {
            rows: env_number("FLOW_BENCH_ROWS", 100)?,
            requests: env_number("FLOW_BENCH_REQUESTS", 2000)?,
            seconds: env_number("FLOW_BENCH_SECONDS", 10.0)?,
            window: env_number("FLOW_BENCH_WINDOW", default_window)?,
            hidden: env_number("FLOW_BENCH_HIDDEN", 64)?,
        })
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}=`{text}` is not a number")),
        Err(_) => Ok(default),
    }
}

type ServerThread = std::thread::JoinHandle<anyhow::Result<()>>;

fn start_server(
    state: Arc<ServeState>,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>, ServerThread)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(serve_with(
            state,
            Arc::new(DiscardSink),
            move |address| {
                let _ = ready_tx.send(address);
            },
            async {
                let _ = stopped.await;
            },
        ))
    });
    let address = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .context("the server did not start")?;
    Ok((address, stop, server))
}

struct LoadRun {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

/// `clients` threads, one kept-alive connection each, sharing a request budget and a deadline.
fn drive(
    address: SocketAddr,
    clients: usize,
    body: &[u8],
    settings: &Settings,
) -> anyhow::Result<LoadRun> {
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(settings.seconds);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (issued, body, budget) = (Arc::clone(&issued), body.to_vec(), settings.requests);
            std::thread::spawn(move || -> anyhow::Result<(Vec<Duration>, usize)> {
                let connect = || -> anyhow::Result<HttpClient> {
                    let mut client = HttpClient::connect(address)?;
                    client.set_timeout(Duration::from_secs(600))?;
                    Ok(client)
                };
                let mut client = connect()?;
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while issued.fetch_add(1, Ordering::Relaxed) < budget && Instant::now() < deadline {
                    let sent = Instant::now();
                    match client.post("/invocations", "text/csv", &body) {
                        Ok(response) if response.status == 200 => latencies.push(sent.elapsed()),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            // A broken connection counts as an error; carry on with a new one.
                            errors += 1;
                            client = connect()?;
                        }
                    }
                }
                Ok((latencies, errors))
            })
        })
        .collect();
    let mut run = LoadRun {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for thread in threads {
        let (latencies, errors) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run.latencies.sort();
    Ok(run)
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn report_scorer_cost(scorer: &dyn Scorer, n_rows: usize) -> anyhow::Result<()> {
    let k = scorer.columns().len();
    let raw: Vec<f64> = (0..n_rows * k).map(|i| signal(i / k, i % k)).collect();
    let repeats = 20;
    let started = Instant::now();
    for _ in 0..repeats {
        scorer.score(&raw, n_rows)?;
    }
    let per_request = started.elapsed().as_secs_f64() * 1e3 / repeats as f64;
    println!("scorer alone: {per_request:.2} ms per request on one thread");
    Ok(())
}

/// MTAD-GAT with the paper's settings and seeded random weights: the real model's cost.
fn untrained_mtad_gat(n_features: usize, window: usize) -> anyhow::Result<Bundle> {
    let columns: Vec<String> = (0..n_features).map(|j| format!("f{j}")).collect();
    let train: Vec<f64> = (0..2000 * n_features)
        .map(|i| signal(i / n_features, i % n_features))
        .collect();
    let preprocessor =
        Preprocessor::fit(&train, columns, ScalerKind::Minmax, 0.0, Vec::new(), window);
    let config = Config::paper(n_features, window, n_features);
    let mut bundle = Bundle::untrained(preprocessor, config, 7)?;
    bundle.manifest.thresholds = Thresholds {
        epsilon: Some(1.0),
        chosen: Some("epsilon".into()),
        ..Thresholds::default()
    };
    Ok(bundle)
}

/// A smooth multichannel signal in [0.1, 0.9].
fn signal(t: usize, feature: usize) -> f64 {
    0.5 + 0.4 * ((t as f64) * 0.07 + feature as f64).sin()
}

fn csv_body(columns: &[String], n_rows: usize) -> Vec<u8> {
    let mut text = columns.join(",");
    text.push('\n');
    for t in 0..n_rows {
        let row: Vec<String> = (0..columns.len())
            .map(|j| format!("{:.6}", signal(t, j)))
            .collect();
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text.into_bytes()
}

/// A recurrent forecaster with fixed pseudo-random weights: for each scored row, a tanh RNN
/// runs over the preceding window and a linear head forecasts the row; the score is the mean
/// absolute forecast error. Costs window x (hidden^2 + hidden x features) multiply-adds per row.
struct SyntheticScorer {
    columns: Vec<String>,
    window: usize,
    hidden: usize,
    recurrent: Vec<f64>,
    input: Vec<f64>,
    head: Vec<f64>,
    train_stats: Vec<FeatureStats>,
}

impl SyntheticScorer {
    fn new(n_features: usize, window: usize, hidden: usize) -> SyntheticScorer {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut weight = |scale: f64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale
        };
        let recurrent = (0..hidden * hidden)
            .map(|_| weight(1.0 / (hidden as f64).sqrt()))
            .collect();
        let input = (0..hidden * n_features)
            .map(|_| weight(1.0 / (n_features as f64).sqrt()))
            .collect();
        let head = (0..n_features * hidden)
            .map(|_| weight(1.0 / (hidden as f64).sqrt()))
            .collect();
        let train_stats = (0..n_features)
            .map(|j| FeatureStats::of(&(0..5000).map(|t| signal(t, j)).collect::<Vec<_>>()))
            .collect();
        SyntheticScorer {
            columns: (0..n_features).map(|j| format!("f{j}")).collect(),
            window,
            hidden,
            recurrent,
            input,
            head,
            train_stats,
        }
    }
}

impl Scorer for SyntheticScorer {
    fn columns(&self) -> &[String] {
        &self.columns
    }
    fn window(&self) -> usize {
        self.window
    }
    fn threshold(&self) -> Option<f64> {
        Some(0.5)
    }
    fn train_stats(&self) -> &[FeatureStats] {
        &self.train_stats
    }
    fn scale(&self, raw: &[f64]) -> Vec<f32> {
        raw.iter().map(|&v| v as f32).collect()
    }
    fn score(&self, raw: &[f64], n_rows: usize) -> anyhow::Result<ScoredRows> {
        anyhow::ensure!(
            raw.len() == n_rows * self.columns.len() && n_rows > self.window,
            "bad shape"
        );
        Ok(self.score_from(raw, self.window))
    }
    fn score_next(
        &self,
        context: &mut SeriesContext,
        scaled: &[f32],
        n_rows: usize,
    ) -> anyhow::Result<ScoredRows> {
        let k = self.columns.len();
        anyhow::ensure!(scaled.len() == n_rows * k, "bad shape");
        let held = context.n_rows(k);
        let series: Vec<f64> = context
            .rows
            .iter()
            .chain(scaled)
            .map(|&v| v as f64)
            .collect();
        let mut scored = self.score_from(&series, held.max(self.window));
        scored.first_row -= held;
        context.push_rows(scaled, self.window, k);
        Ok(scored)
    }
}

impl SyntheticScorer {
    /// Scores rows `first..` of `raw`, each from the `window` rows before it.
    fn score_from(&self, raw: &[f64], first: usize) -> ScoredRows {
        let (k, h) = (self.columns.len(), self.hidden);
        let n_rows = raw.len() / k;
        let mut scores = Vec::with_capacity(n_rows.saturating_sub(first));
        let mut top_features = Vec::with_capacity(n_rows.saturating_sub(first));
        let (mut state, mut next) = (vec![0.0; h], vec![0.0; h]);
        for t in first..n_rows {
            state.iter_mut().for_each(|s| *s = 0.0);
            for step in t - self.window..t {
                let x = &raw[step * k..(step + 1) * k];
                for (i, out) in next.iter_mut().enumerate() {
                    let recurrent: f64 = self.recurrent[i * h..(i + 1) * h]
                        .iter()
                        .zip(&state)
                        .map(|(w, s)| w * s)
                        .sum();
                    let input: f64 = self.input[i * k..(i + 1) * k]
                        .iter()
                        .zip(x)
                        .map(|(w, v)| w * v)
                        .sum();
                    *out = (recurrent + input).tanh();
                }
                std::mem::swap(&mut state, &mut next);
            }
            let actual = &raw[t * k..(t + 1) * k];
            let errors: Vec<f64> = (0..k)
                .map(|j| {
                    let forecast: f64 = self.head[j * h..(j + 1) * h]
                        .iter()
                        .zip(&state)
                        .map(|(w, s)| w * s)
                        .sum();
                    (forecast - actual[j]).abs()
                })
                .collect();
            scores.push(errors.iter().sum::<f64>() / k as f64);
            let mut ranked: Vec<usize> = (0..k).collect();
            ranked.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]));
            top_features.push(
                ranked
                    .iter()
                    .take(3)
                    .map(|&j| (self.columns[j].clone(), errors[j]))
                    .collect(),
            );
        }
        ScoredRows {
            first_row: first.min(n_rows),
            scores,
            top_features,
        }
    }
}
