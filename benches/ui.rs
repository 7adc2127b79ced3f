//! The dashboard on a large store: 100,000 runs (25,000 evaluate runs with an F1) and one
//! run holding a 1,000,000-point metric. Server time of each response, measured by a
//! loopback client that reads the whole response:
//! - the runs page's first response (goal: <= 100 ms), sorted by a metric, filtered;
//! - the 1M-point curve reduced for drawing (goal: the chart drawn within 1 s), zoomed.
//!
//! `cargo bench --bench ui` prints `bench <name> <value> <unit>` lines: the first
//! response (cold), the median of the repetitions, and the slowest.

#[path = "../src/serve/test_client.rs"]
mod test_client;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use flow::store::{fill_synthetic, Metric, RunFilter, RunStatus, Store};
use flow::ui::{serve_blocking, UiConfig, UiState};
use test_client::HttpClient;

const N_RUNS: usize = 100_000;
const LONG_POINTS: i64 = 1_000_000;
const REPETITIONS: usize = 15;

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join(".flow"))?;
    let started = Instant::now();
    fill_synthetic(&store, N_RUNS, &["load", "process", "train", "evaluate"])?;
    let evaluates = store.list_runs(&RunFilter {
        entry: Some("evaluate".into()),
        ..RunFilter::default()
    })?;
    for (index, run) in evaluates.iter().enumerate() {
        let f1 = (index as f64 * 0.618).fract();
        store.log_metrics(&run.run_id, &[metric("f1_pa_best", f1, 0)])?;
    }
    let long = evaluates[0].run_id.clone();
    let points: Vec<Metric> = (0..LONG_POINTS)
        .map(|step| metric("step_loss", 1.0 / (1.0 + step as f64 / 1e4), step))
        .collect();
    store.log_metrics(&long, &points)?;
    store.end_run(&long, RunStatus::Finished).ok();
    eprintln!(
        "filled {N_RUNS} runs and a {LONG_POINTS}-point metric in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let state = UiState::new(store, UiConfig::default());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = serve_blocking(state, "127.0.0.1", 0, |address| {
            let _ = sender.send(address);
        });
    });
    let address = receiver.recv_timeout(Duration::from_secs(30))?;
    let mut client = HttpClient::connect(address)?;

    let cases = [
        ("runs_page_first_response", "/".to_string()),
        ("runs_api_first_page", "/api/flow/runs".to_string()),
        (
            "runs_page_sorted_by_metric",
            "/?sort=metric.f1_pa_best".to_string(),
        ),
        (
            "runs_page_filtered_by_metric",
            "/?filter=metric.f1_pa_best%20%3E%200.9%20and%20param.seed%20%3D%203".to_string(),
        ),
        ("runs_page_last_page", format!("/?page={}", N_RUNS / 50)),
        ("run_page_of_long_metric_run", format!("/runs/{long}")),
        (
            "curve_1m_points_reduced",
            format!("/api/flow/runs/{long}/metrics/step_loss?points=1000"),
        ),
        (
            "curve_1m_points_zoomed",
            format!("/api/flow/runs/{long}/metrics/step_loss?points=1000&from=400000&to=410000"),
        ),
    ];
    for (name, path) in cases {
        let mut times = Vec::with_capacity(REPETITIONS);
        let mut size = 0;
        for _ in 0..REPETITIONS {
            let start = Instant::now();
            let response = client.get(&path)?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                response.status == 200,
                "{path}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            size = response.body.len();
        }
        // The first request reads the store cold (a curve is then cached in memory).
        println!("bench ui_{name}_first {:.1} ms", times[0]);
        times.sort_by(f64::total_cmp);
        println!("bench ui_{name}_median {:.1} ms", times[times.len() / 2]);
        println!("bench ui_{name}_max {:.1} ms", times[times.len() - 1]);
        println!("bench ui_{name}_bytes {size} B");
    }
    Ok(())
}

fn metric(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.to_string(),
        value,
        step,
        timestamp_ms: 0,
    }
}
