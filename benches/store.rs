//! Store benchmarks: metric ingestion, and the resolver's queries on a large history.
//!
//! Run: `cargo bench -p flow --bench store --profile dev` (dependencies are optimized in the
//! dev profile; this avoids a release build of the whole workspace). Optional argument:
//! the number of runs to fill (default 100000). With `FLOW_BENCH_POSTGRES=<server URL>`
//! each measurement uses a fresh database on that PostgreSQL server instead of SQLite.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use flow::store::{
    fill_synthetic, Metric, NewRun, ReuseQuery, RunFilter, RunKey, Store, SYNTHETIC_COMMIT,
};

const ENTRIES: [&str; 5] = ["load", "process", "train", "evaluate", "predict"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n_runs: usize = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    metric_ingestion()?;
    resolver_queries(n_runs)?;
    Ok(())
}

/// The store under test: embedded in `dir`, or a fresh PostgreSQL database.
fn open_store(dir: &std::path::Path) -> Result<Store, Box<dyn std::error::Error>> {
    let root = dir.join(".flow");
    let Ok(server) = std::env::var("FLOW_BENCH_POSTGRES") else {
        println!("# backend: SQLite");
        return Ok(Store::open(&root)?);
    };
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "flow_bench_store_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let url = flow::store::create_postgres_database(&server, &name)?;
    println!("# backend: PostgreSQL");
    Ok(Store::open_postgres(&url, &root)?)
}

fn metric_ingestion() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let key = RunKey {
        entry: "train".to_string(),
        data_version: "d".to_string(),
        code_version: "none".to_string(),
        ..RunKey::default()
    };
    let run = store.begin_run(&NewRun {
        key: &key,
        experiment: "bench",
        member: None,
        code_dirty: false,
        command: "bench",
        run_time: Utc::now(),
    })?;
    let keys = [
        "loss",
        "val_loss",
        "forecast_loss",
        "recon_loss",
        "lr",
        "grad_norm",
        "f1",
        "precision",
    ];
    let batch_size = 10_000;
    let n_batches = 200;
    // Batches are built before timing: the figure is the store's cost, not String allocation.
    let mut step = 0i64;
    let batches: Vec<Vec<Metric>> = (0..n_batches)
        .map(|_| {
            (0..batch_size)
                .map(|idx| {
                    if idx % keys.len() == 0 {
                        step += 1;
                    }
                    let key = keys[idx % keys.len()].to_string();
                    Metric {
                        key,
                        value: 1.0 / step as f64,
                        step,
                        timestamp_ms: 1_700_000_000_000 + step,
                    }
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    for batch in &batches {
        store.log_metrics(&run, batch)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let points = batch_size * n_batches;
    println!(
        "log_metrics: {points} points in batches of {batch_size}: {elapsed:.3} s wall = {:.0} points/s; \
         {cpu:.3} s CPU = {:.0} points/CPU-s",
        points as f64 / elapsed,
        points as f64 / cpu
    );
    let start = Instant::now();
    let read = store.metrics(&run)?.len();
    println!(
        "metrics(): read {read} points in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let latest = store.latest_metrics(&run)?;
    println!(
        "latest_metrics(): {} keys in {:.3} s",
        latest.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// User + system CPU time of this process: on a shared machine wall time mostly
/// measures the neighbours.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn resolver_queries(n_runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path())?;
    let start = Instant::now();
    fill_synthetic(&store, n_runs, &ENTRIES)?;
    println!(
        "fill_synthetic: {n_runs} runs in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    // Hits: every stored run of a sample, asked for by its own key; misses: a changed seed.
    let sample = store.list_runs(&RunFilter {
        limit: Some(1000),
        ..Default::default()
    })?;
    let mut reuse_time = Duration::ZERO;
    let mut recent_time = Duration::ZERO;
    let mut hits = 0;
    for (sample_idx, run) in sample.iter().enumerate() {
        let mut key = run.key();
        if sample_idx % 2 == 1 {
            key.params.insert("seed".to_string(), "miss".to_string());
        }
        let day_start = run
            .run_time
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| Utc.from_utc_datetime(&t));
        let window = day_start.map(|from| (from, from + chrono::Duration::days(1)));
        key.code_version = SYNTHETIC_COMMIT.to_string();
        let query = ReuseQuery {
            key: &key,
            match_data: true,
            match_code: true,
            run_time: window,
        };
        let start = Instant::now();
        let found = store.find_reusable(&query)?;
        reuse_time += start.elapsed();
        let start = Instant::now();
        let recent = store.recent_runs(&run.entry, run.key_value.as_deref(), 10)?;
        recent_time += start.elapsed();
        assert!(!recent.is_empty());
        if found.is_some() {
            hits += 1;
        }
    }
    let per_query = |total: Duration| total.as_secs_f64() * 1e3 / sample.len() as f64;
    println!(
        "with {n_runs} runs: find_reusable {:.3} ms, recent_runs(limit 10) {:.3} ms, together {:.3} ms per node ({} queries, {hits} hits)",
        per_query(reuse_time),
        per_query(recent_time),
        per_query(reuse_time + recent_time),
        sample.len()
    );

    let start = Instant::now();
    for run in &sample {
        store.get_run(&run.run_id[..12])?;
    }
    println!(
        "get_run by 12-char prefix: {:.3} ms",
        per_query(start.elapsed())
    );
    let start = Instant::now();
    let listed = store.list_runs(&RunFilter {
        entry: Some("train".into()),
        limit: Some(50),
        ..Default::default()
    })?;
    println!(
        "list_runs(entry=train, limit 50): {} runs in {:.3} ms",
        listed.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    let reaped = store.reap_dead_runs()?;
    println!(
        "reap_dead_runs: {} reaped in {:.3} ms",
        reaped.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
