//! End-to-end runner timings through the real (release) binary:
//! - `flow run -e main` on a 5-step project when every step is reused (goal: < 20 ms),
//! - `flow plan -e main` with 100,000 runs in the store (goal: < 50 ms), alone and fanned
//!   out over 28 members (`-P dataset=m1,...,m28`, goal: <= 50 ms),
//! - `flow plan` of a 10,000-step chain (goal: <= 1 s).
//!
//! `cargo bench --bench runner` prints `bench <name> <value> <unit>` lines. With
//! `FLOW_BENCH_POSTGRES=<server URL>` the store is a fresh database on that PostgreSQL
//! server (objects in the project's `.flow`) and every name ends in `_postgres`.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `FLOW_STORE` for every flow the bench starts, when it measures PostgreSQL.
static STORE_URL: OnceLock<Option<String>> = OnceLock::new();

/// A fresh database on the server at `FLOW_BENCH_POSTGRES`, if set.
fn postgres_store() -> Option<String> {
    let server = std::env::var("FLOW_BENCH_POSTGRES").ok()?;
    let name = format!("flow_bench_{}", std::process::id());
    Some(flow::store::create_postgres_database(&server, &name).expect("PostgreSQL"))
}

fn suffix() -> &'static str {
    if store_url().is_some() {
        "_postgres"
    } else {
        ""
    }
}

fn store_url() -> Option<&'static str> {
    STORE_URL.get().and_then(Option::as_deref)
}

const PROJECT: &str = r#"name: bench
entry_points:
  load:
    key: dataset
    parameters:
      dataset: {type: string, default: machine-1-1}
      retrieval_time: {type: string, default: latest}
    inputs: ["data"]
    command: "cp data/rows.txt $FLOW_OUTPUT_DIR/"
  process:
    key: logic
    depends_on: [load]
    parameters: {logic: {type: string, default: minmax}, window: {type: int, default: 100}}
    command: "cp $FLOW_INPUT_LOAD/rows.txt $FLOW_OUTPUT_DIR/"
  train:
    key: algorithm
    depends_on: [process]
    parameters: {algorithm: {type: string, default: mtad_gat}, epochs: {type: int, default: 10}}
    command: "wc -l < $FLOW_INPUT_PROCESS/rows.txt > $FLOW_OUTPUT_DIR/model.txt"
  evaluate:
    depends_on: [train]
    command: "cp $FLOW_INPUT_TRAIN/model.txt $FLOW_OUTPUT_DIR/"
  predict:
    depends_on: [evaluate]
    command: "cp $FLOW_INPUT_EVALUATE/model.txt $FLOW_OUTPUT_DIR/"
  main:
    depends_on: [predict]
"#;

fn main() {
    STORE_URL.get_or_init(postgres_store);
    let flow = env!("CARGO_BIN_EXE_flow");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("MLproject.yaml"), PROJECT).unwrap();
    std::fs::create_dir(root.join("data")).unwrap();
    std::fs::write(root.join("data/rows.txt"), "1\n2\n3\n").unwrap();
    std::fs::write(root.join(".gitignore"), ".flow/\n").unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qm",
            "bench",
        ],
    ] {
        assert!(Command::new("git")
            .args(args)
            .current_dir(root)
            .status()
            .unwrap()
            .success());
    }
    let first = run(flow, root, &["run", "-e", "main"]);
    println!("# first run (executes 5 steps): {:.1} ms", ms(first));

    let noop = sample(flow, root, &["run", "-e", "main"], 30);
    println!("bench noop_run_median_ms{} {:.2} ms", suffix(), ms(noop.0));
    println!("bench noop_run_min_ms{} {:.2} ms", suffix(), ms(noop.1));

    let plan = sample(flow, root, &["plan", "-e", "main"], 30);
    println!(
        "bench plan_small_store_median_ms{} {:.2} ms",
        suffix(),
        ms(plan.0)
    );

    let store = match store_url() {
        Some(url) => flow::store::Store::open_postgres(url, &root.join(".flow")).unwrap(),
        None => flow::store::Store::open(&root.join(".flow")).unwrap(),
    };
    let t = Instant::now();
    flow::store::fill_synthetic(
        &store,
        100_000,
        &["load", "process", "train", "evaluate", "predict"],
    )
    .unwrap();
    println!(
        "# filled 100,000 synthetic runs in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(store);
    let plan = sample(flow, root, &["plan", "-e", "main"], 30);
    println!(
        "bench plan_100k_runs_median_ms{} {:.2} ms",
        suffix(),
        ms(plan.0)
    );
    let noop = sample(flow, root, &["run", "-e", "main"], 30);
    println!(
        "bench noop_run_100k_runs_median_ms{} {:.2} ms",
        suffix(),
        ms(noop.0)
    );
    let machines: Vec<String> = (1..=28).map(|i| format!("machine-{i}")).collect();
    let fan_out = format!("dataset={}", machines.join(","));
    let plan = sample(flow, root, &["plan", "-e", "main", "-P", &fan_out], 30);
    println!(
        "bench plan_28_members_100k_runs_median_ms{} {:.2} ms",
        suffix(),
        ms(plan.0)
    );

    let chain = tempfile::tempdir().expect("temp dir");
    std::fs::write(chain.path().join("MLproject.yaml"), chain_project(10_000)).unwrap();
    let plan = sample(flow, chain.path(), &["plan", "-e", "s9999"], 5);
    println!(
        "bench plan_10000_step_chain_median_ms{} {:.1} ms",
        suffix(),
        ms(plan.0)
    );
}

/// A project whose step `s{i}` depends on `s{i-1}`: planning must stay near-linear.
fn chain_project(steps: usize) -> String {
    let mut text = String::from("name: chain\nentry_points:\n");
    for i in 0..steps {
        text.push_str(&format!(
            "  s{i}:\n    parameters: {{x: {{type: int, default: 1}}}}\n    command: \"true\"\n"
        ));
        if i > 0 {
            text.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    text
}

fn run(flow: &str, dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let mut command = Command::new(flow);
    command.args(args).current_dir(dir);
    if let Some(url) = store_url() {
        command
            .env("FLOW_STORE", url)
            .env("FLOW_ARTIFACTS", dir.join(".flow"));
    }
    let out = command.output().expect("flow runs");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "flow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// (median, min) wall time of `n` invocations after one warm-up.
fn sample(flow: &str, dir: &Path, args: &[&str], n: usize) -> (Duration, Duration) {
    run(flow, dir, args);
    let mut times: Vec<Duration> = (0..n).map(|_| run(flow, dir, args)).collect();
    times.sort();
    (times[n / 2], times[0])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
