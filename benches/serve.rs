//! Latency and throughput of `flow serve` over loopback HTTP, beside the model's own cost.
//!
//! The model is MTAD-GAT with the paper's settings on MSL's shapes (55 features, window 100,
//! seeded untrained weights: the real model's cost), or `FLOW_BENCH_BUNDLE=<dir>` (a trained
//! bundle), or `FLOW_BENCH_MODEL=synthetic` (a small recurrent scorer, to see the server alone).
//!
//! First the scorer alone on one thread, no HTTP: one streamed row (one window forward), 100
//! streamed rows, and a stateless batch request of window + 100 rows. Then the server on
//! 127.0.0.1, each client thread on its own kept-alive connection (and, streaming, its own
//! series, started before timing):
//! - `stream-1`: the streaming form, one new row per request (1 and 8 clients);
//! - `stream-100`: the streaming form, 100 new rows per request;
//! - `batch-100`: a stateless request of window + 100 rows, 100 of them scored.
//!
//! Each scenario stops after `FLOW_BENCH_REQUESTS` requests (default 3000) or
//! `FLOW_BENCH_SECONDS` (default 10 s). `FLOW_BENCH_RSS_REQUESTS=100000` then sends that many
//! streaming requests of `FLOW_BENCH_RSS_ROWS` rows (default 1; `FLOW_BENCH_RSS_FORM=batch`:
//! stateless requests of window + that many rows) from 2 clients and prints the process's
//! resident memory every tenth of them, to show that serving holds its memory flat.
//!
//! Run: `cargo bench --bench serve` (release build), or without a release build of the
//! workspace `cargo bench --bench serve --profile dev --config 'profile.dev.package.flow.opt-level=3'`
//! (dependencies are optimized in the dev profile). Lines starting with `bench ` are the
//! figures: `bench <name> <value> <unit>`.

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

/// MSL: 55 telemetry channels, MTAD-GAT's window of 100.
const MSL_FEATURES: usize = 55;
const MSL_WINDOW: usize = 100;
/// Rows per request of the `-100` scenarios.
const BLOCK: usize = 100;

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let scorer: Arc<dyn Scorer> = match (std::env::var_os("FLOW_BENCH_BUNDLE"), &*settings.model) {
        (Some(dir), _) => Arc::new(BundleScorer::load(Path::new(&dir), 3)?),
        (None, "" | "mtad-gat") => Arc::new(BundleScorer::new(
            untrained_mtad_gat(MSL_FEATURES, MSL_WINDOW)?,
            3,
        )),
        (None, "synthetic") => Arc::new(SyntheticScorer::new(MSL_FEATURES, 20, 64)),
        (None, other) => {
            anyhow::bail!("FLOW_BENCH_MODEL=`{other}`: expected `mtad-gat` or `synthetic`")
        }
    };
    let (width, window) = (scorer.columns().len(), scorer.window());
    println!(
        "serve bench: {width} features, window {window}, {} cores, load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    scorer_alone(scorer.as_ref())?;

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
    let columns = scorer.columns().to_vec();
    println!(
        "{:<11} {:>7} {:>8} {:>9} {:>10} {:>9} {:>9} {:>6}",
        "scenario", "clients", "requests", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"
    );
    let scenarios = [
        ("stream-1", 1, Form::Stream(1)),
        ("stream-100", 1, Form::Stream(BLOCK)),
        ("batch-100", 1, Form::Batch(BLOCK)),
        ("stream-1", 8, Form::Stream(1)),
        ("stream-100", 8, Form::Stream(BLOCK)),
    ];
    // FLOW_BENCH_REQUESTS=0 skips the scenarios (to measure memory from a fresh server).
    let scenarios = if settings.requests == 0 {
        &scenarios[..0]
    } else {
        &scenarios[..]
    };
    for (index, &(name, clients, form)) in scenarios.iter().enumerate() {
        let workload = Workload::new(&columns, window, clients, form, &format!("s{index}"));
        workload.start_series(address)?;
        let run = drive(
            address,
            &workload,
            settings.requests,
            settings.seconds,
            None,
        )?;
        let rows = run.latencies.len() * form.scored_rows();
        let (p50, p99) = (
            percentile_ms(&run.latencies, 0.50),
            percentile_ms(&run.latencies, 0.99),
        );
        println!(
            "{name:<11} {clients:>7} {:>8} {:>9.1} {:>10.0} {p50:>9.2} {p99:>9.2} {:>6}",
            run.latencies.len(),
            run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
            rows as f64 / run.elapsed.as_secs_f64(),
            run.errors,
        );
        let key = format!("http_{}_{clients}c", name.replace('-', "_"));
        println!("bench {key}_p50_ms {p50:.2} ms");
        println!("bench {key}_p99_ms {p99:.2} ms");
        println!(
            "bench {key}_rows_per_s {:.0} rows/s",
            rows as f64 / run.elapsed.as_secs_f64()
        );
        anyhow::ensure!(run.errors == 0, "{name}: {} requests failed", run.errors);
    }
    if settings.rss_requests > 0 {
        let rows = env_number("FLOW_BENCH_RSS_ROWS", 1)?;
        let form = match std::env::var("FLOW_BENCH_RSS_FORM").as_deref() {
            Ok("batch") => Form::Batch(rows),
            _ => Form::Stream(rows),
        };
        resident_memory(address, &columns, window, settings.rss_requests, form)?;
    }
    println!("resident memory after the scenarios: {} KiB", rss_kib());
    println!("bench rss_after_scenarios_kib {} KiB", rss_kib());
    if let Some(window) = state.close_window() {
        println!(
            "monitoring window: {} rows, {} sampled, score mean {:.4}",
            window.count, window.sampled, window.score.mean
        );
    }
    println!("load average after: {}", load_average());
    let _ = stop.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(())
}

struct Settings {
    model: String,
    requests: usize,
    seconds: f64,
    rss_requests: usize,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        Ok(Settings {
            model: std::env::var("FLOW_BENCH_MODEL").unwrap_or_default(),
            requests: env_number("FLOW_BENCH_REQUESTS", 3000)?,
            seconds: env_number("FLOW_BENCH_SECONDS", 10.0)?,
            rss_requests: env_number("FLOW_BENCH_RSS_REQUESTS", 0)?,
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

/// The scorer's own cost, one thread, no HTTP: what the server adds is the rest.
fn scorer_alone(scorer: &dyn Scorer) -> anyhow::Result<()> {
    let (width, window) = (scorer.columns().len(), scorer.window());
    let raw: Vec<f64> = (0..(window + BLOCK + 2000) * width)
        .map(|i| signal(i / width, i % width))
        .collect();
    let scaled = scorer.scale(&raw);
    let mut context = SeriesContext::default();
    scorer.score_next(&mut context, &scaled[..window * width], window)?;
    let mut single = Vec::new();
    let started = Instant::now();
    let cpu_started = process_cpu();
    let mut t = window;
    while single.len() < 2000 && started.elapsed() < Duration::from_secs(10) {
        let row = &scaled[t * width..(t + 1) * width];
        let sent = Instant::now();
        scorer.score_next(&mut context, row, 1)?;
        single.push(sent.elapsed());
        t += 1;
    }
    // CPU time per row (all threads): what a row costs on a machine nobody else uses.
    let cpu_per_row = (process_cpu() - cpu_started).as_secs_f64() * 1e3 / single.len() as f64;
    single.sort();
    let block = mean_ms(5, || {
        let mut warm = context.clone();
        scorer
            .score_next(&mut warm, &scaled[..BLOCK * width], BLOCK)
            .map(|_| ())
    })?;
    let n_batch = window + BLOCK;
    let batch = mean_ms(5, || {
        scorer.score(&raw[..n_batch * width], n_batch).map(|_| ())
    })?;
    let (p50, p99) = (percentile_ms(&single, 0.5), percentile_ms(&single, 0.99));
    println!(
        "scorer alone: 1 streamed row p50 {p50:.2} ms p99 {p99:.2} ms ({} calls, {cpu_per_row:.2} CPU-ms each); {BLOCK} streamed rows {block:.1} ms; batch of {n_batch} rows {batch:.1} ms",
        single.len()
    );
    println!("bench scorer_stream_1_cpu_ms {cpu_per_row:.2} ms");
    println!("bench scorer_stream_1_p50_ms {p50:.2} ms");
    println!("bench scorer_stream_1_p99_ms {p99:.2} ms");
    println!("bench scorer_stream_100_ms {block:.1} ms");
    println!("bench scorer_batch_100_ms {batch:.1} ms");
    Ok(())
}

fn mean_ms(repeats: usize, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    call()?;
    let started = Instant::now();
    for _ in 0..repeats {
        call()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / repeats as f64)
}

/// What a request carries.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// The streaming form: this many new rows of the client's series.
    Stream(usize),
    /// A stateless request: window + this many rows.
    Batch(usize),
}

impl Form {
    fn scored_rows(self) -> usize {
        match self {
            Form::Stream(rows) | Form::Batch(rows) => rows,
        }
    }
}

/// Per client: the request that starts its series (streaming only) and a cycle of bodies.
struct Workload {
    starts: Vec<Option<Vec<u8>>>,
    bodies: Vec<Vec<Vec<u8>>>,
}

impl Workload {
    fn new(columns: &[String], window: usize, clients: usize, form: Form, tag: &str) -> Workload {
        const CYCLE: usize = 16;
        let (mut starts, mut bodies) = (Vec::new(), Vec::new());
        for client in 0..clients {
            let series = format!("{tag}-client-{client}");
            match form {
                Form::Stream(rows) => {
                    starts.push(Some(json_body(columns, 0, window, Some(&series), true)));
                    bodies.push(
                        (0..CYCLE)
                            .map(|i| {
                                json_body(columns, window + i * rows, rows, Some(&series), false)
                            })
                            .collect(),
                    );
                }
                Form::Batch(rows) => {
                    starts.push(None);
                    bodies.push(
                        (0..CYCLE)
                            .map(|i| json_body(columns, i, window + rows, None, false))
                            .collect(),
                    );
                }
            }
        }
        Workload { starts, bodies }
    }

    fn start_series(&self, address: SocketAddr) -> anyhow::Result<()> {
        let mut client = HttpClient::connect(address)?;
        for start in self.starts.iter().flatten() {
            let response = client.post("/invocations", "application/json", start)?;
            anyhow::ensure!(
                response.status == 200,
                "starting a series failed: {}",
                response.text()
            );
        }
        Ok(())
    }
}

/// `{"series": ..., "start": ..., "instances": [rows first..first + n]}`.
fn json_body(
    columns: &[String],
    first: usize,
    n: usize,
    series: Option<&str>,
    start: bool,
) -> Vec<u8> {
    let rows: Vec<Vec<f64>> = (first..first + n)
        .map(|t| {
            (0..columns.len())
                .map(|j| (signal(t, j) * 1e5).round() / 1e5)
                .collect()
        })
        .collect();
    let mut body = serde_json::json!({ "instances": rows });
    if let Some(series) = series {
        body["series"] = series.into();
        body["start"] = start.into();
    }
    body.to_string().into_bytes()
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

/// One thread per client, one kept-alive connection each, sharing a request budget and a
/// deadline. `progress` is called by client 0 every so many requests (for the memory run).
fn drive(
    address: SocketAddr,
    workload: &Workload,
    budget: usize,
    seconds: f64,
    progress: Option<(usize, fn(usize))>,
) -> anyhow::Result<LoadRun> {
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let keep_latencies = progress.is_none();
    let threads: Vec<_> = workload
        .bodies
        .iter()
        .enumerate()
        .map(|(client_index, bodies)| {
            let (issued, bodies) = (Arc::clone(&issued), bodies.clone());
            std::thread::spawn(move || -> anyhow::Result<(Vec<Duration>, usize)> {
                let mut client = HttpClient::connect(address)?;
                client.set_timeout(Duration::from_secs(600))?;
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut sent_here = 0;
                loop {
                    let number = issued.fetch_add(1, Ordering::Relaxed);
                    if number >= budget || Instant::now() >= deadline {
                        break;
                    }
                    let body = &bodies[sent_here % bodies.len()];
                    sent_here += 1;
                    let sent = Instant::now();
                    match client.post("/invocations", "application/json", body) {
                        Ok(response) if response.status == 200 => {
                            if keep_latencies {
                                latencies.push(sent.elapsed());
                            }
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            // A broken connection counts as an error; carry on with a new one.
                            errors += 1;
                            client = HttpClient::connect(address)?;
                        }
                    }
                    if let (0, Some((every, report))) = (client_index, progress) {
                        if number % every == 0 {
                            report(number);
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

/// `requests` requests of `form` from 2 clients, with the resident set size of this process
/// (server and clients) every tenth of them.
fn resident_memory(
    address: SocketAddr,
    columns: &[String],
    window: usize,
    requests: usize,
    form: Form,
) -> anyhow::Result<()> {
    let workload = Workload::new(columns, window, 2, form, "rss");
    workload.start_series(address)?;
    let before = rss_kib();
    println!("resident memory over {requests} {form:?} requests (2 clients):");
    fn report(number: usize) {
        println!("  after {number:>7} requests: {:>8} KiB", rss_kib());
    }
    let run = drive(
        address,
        &workload,
        requests,
        // No deadline: the point is the request count.
        1e9,
        Some(((requests / 10).max(1), report)),
    )?;
    let after = rss_kib();
    println!(
        "  {} requests in {:.0} s, {} errors; RSS {before} -> {after} KiB",
        requests,
        run.elapsed.as_secs_f64(),
        run.errors
    );
    println!("bench rss_before_kib {before} KiB");
    println!("bench rss_after_{requests}_requests_kib {after} KiB");
    Ok(())
}

/// CPU time this process has used, all threads together.
fn process_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, owned here.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_string())
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1e3
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
