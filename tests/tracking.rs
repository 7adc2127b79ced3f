//! `flow server` driven by the real `mlflow` client: the Python suite in tests/tracking/
//! runs with the venv that scripts/setup.sh creates, against a server on a free loopback
//! port; then flow's own commands read what the client logged.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{outcome, Outcome, Server, TestProject};

/// A `flow server` on a free loopback port over `store` (a directory, or a PostgreSQL URL
/// whose objects go to `store`'s sibling `artifacts`), killed on drop.
fn start_server(store: &Path) -> Server {
    let mut command = Command::new(common::flow_binary());
    command
        .args(["server", "--port", "0", "--store"])
        .arg(store)
        .env("FLOW_ARTIFACTS", artifacts_of(store));
    common::spawn_server(command)
}

/// Where a PostgreSQL store's objects go in these tests (unused by a directory store).
fn artifacts_of(store: &Path) -> PathBuf {
    std::env::temp_dir().join(format!(
        "flow-tracking-artifacts-{}",
        blake3::hash(store.as_os_str().as_encoded_bytes()).to_hex()
    ))
}

/// The server's base URL, as `MLFLOW_TRACKING_URI` takes it.
fn url(server: &Server) -> String {
    format!("http://{}", server.address)
}

/// The python of the venv scripts/setup.sh creates (`FLOW_TEST_VENV` overrides where).
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FLOW_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("flow-test-venv"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/flow-test-venv"))
        })
        .expect("HOME is set");
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "no test venv at `{}`: run `bash scripts/setup.sh` (it installs the pinned mlflow client)",
        venv.display()
    );
    python
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracking")
}

/// Runs a script of tests/tracking with the venv python, pointed at `server`.
fn python(server: &Server, script: &str, cwd: &Path) -> Outcome {
    let output = Command::new(venv_python())
        .arg(suite_dir().join(script))
        .current_dir(cwd)
        .env("MLFLOW_TRACKING_URI", url(server))
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .output()
        .expect("python runs");
    outcome(output)
}

fn flow(store: &Path, args: &[&str]) -> Outcome {
    let output = Command::new(common::flow_binary())
        .arg("--store")
        .arg(store)
        .env("FLOW_ARTIFACTS", artifacts_of(store))
        .args(args)
        .output()
        .expect("flow runs");
    outcome(output)
}

/// Everything a training script logs through the client comes back exactly (params,
/// metrics, batches, histories, tags, artifacts, searches), bad requests get MLflow's
/// error codes, and flow's own `runs list` and `runs show` see the same runs.
#[test]
fn the_mlflow_client_suite_passes_against_flow_server() {
    let dir = tempfile::tempdir().unwrap();
    client_suite_round_trips(&dir.path().join("store"), dir.path());
}

/// The same suite with the store's tables in PostgreSQL.
#[test]
fn the_mlflow_client_suite_passes_against_flow_server_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let database = common::Database::new();
    let store = PathBuf::from(&database.url);
    client_suite_round_trips(&store, dir.path());
    let _ = std::fs::remove_dir_all(artifacts_of(&store));
}

fn client_suite_round_trips(store: &Path, work: &Path) {
    let store = store.to_path_buf();
    let server = start_server(&store);
    let suite = python(&server, "client_suite.py", work);
    assert_eq!(
        suite.code, 0,
        "client suite failed:\n{}\n{}",
        suite.stdout, suite.stderr
    );
    assert!(suite.stdout.contains("suite: all"), "{}", suite.stdout);

    let listed = flow(&store, &["runs", "list", "--json", "--limit", "100"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let runs = listed.json();
    let trained = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["key"] == "train-smd")
        .unwrap_or_else(|| panic!("no run named train-smd in {runs}"));
    assert_eq!(trained["entry"], "mlflow");
    assert_eq!(trained["status"], "FINISHED");
    assert_eq!(trained["experiment"], "suite-training");
    assert_eq!(trained["metrics"]["f1"], 0.8034);
    let run_id = trained["run_id"].as_str().unwrap();
    let shown = flow(&store, &["runs", "show", run_id]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    for line in ["lr = 0.001", "stage = candidate", "model/weights.bin"] {
        assert!(
            shown.stdout.contains(line),
            "`{line}` missing:\n{}",
            shown.stdout
        );
    }
    let other = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|run| run["key"] == "sweep-02")
        .unwrap_or_else(|| panic!("no run named sweep-02 in {runs}"));
    let compared = flow(
        &store,
        &["compare", run_id, other["run_id"].as_str().unwrap()],
    );
    assert_eq!(compared.code, 0, "{}", compared.stderr);
    let lr_line = compared
        .stdout
        .lines()
        .find(|line| line.contains("param.lr"))
        .unwrap_or_else(|| panic!("no param.lr in:\n{}", compared.stdout));
    let fields: Vec<&str> = lr_line.split_whitespace().collect();
    assert_eq!(fields, ["*", "param.lr", "0.001", "0.01"], "{lr_line}");
}

/// A step whose command uses the client logs into the step's own run: with
/// `FLOW_TRACKING_URI` set, the runner gives each step `MLFLOW_TRACKING_URI` and its own
/// `MLFLOW_RUN_ID`; the client's end_run leaves the status to the runner, which sets it
/// from the exit code.
#[test]
fn a_step_logs_into_its_own_run_and_the_runner_keeps_its_status() {
    let python = venv_python();
    let step = suite_dir().join("step.py");
    let mlproject = format!(
        "name: tracked\nentry_points:\n  train:\n    command: \"{} {} 0\"\n  broken:\n    command: \"{} {} 3\"\n",
        python.display(),
        step.display(),
        python.display(),
        step.display()
    );
    let project = TestProject::new(&[("MLproject.yaml", &mlproject), (".gitignore", ".flow/\n")]);
    let server = start_server(&project.path().join(".flow"));
    let tracking_uri = url(&server);
    let env = [
        ("FLOW_TRACKING_URI", tracking_uri.as_str()),
        ("MLFLOW_DISABLE_TELEMETRY", "true"),
        ("DO_NOT_TRACK", "true"),
    ];

    let trained = project.flow_env(&["run", "-e", "train", "--json"], &env);
    assert_eq!(trained.code, 0, "{}\n{}", trained.stdout, trained.stderr);
    assert!(
        trained.stderr.contains("status after end_run: RUNNING"),
        "{}",
        trained.stderr
    );
    let run_id = trained.run_id("train");
    let shown = project.flow(&["runs", "show", &run_id]);
    assert!(
        shown.stdout.contains("status     FINISHED"),
        "{}",
        shown.stdout
    );
    for line in [
        "val_loss = 0.3333",
        "hidden = 64",
        "logged_by = mlflow",
        "model.txt",
    ] {
        assert!(
            shown.stdout.contains(line),
            "`{line}` missing:\n{}",
            shown.stdout
        );
    }

    let broken = project.flow_env(&["run", "-e", "broken", "--json"], &env);
    assert_ne!(broken.code, 0, "{}", broken.stderr);
    let broken_id = broken.run_id("broken");
    let shown = project.flow(&["runs", "show", &broken_id]);
    assert!(
        shown.stdout.contains("status     FAILED"),
        "the client's FINISHED must not win over the exit status:\n{}",
        shown.stdout
    );
}

/// One server, one port: the tracking API and the dashboard answer side by side, as
/// `mlflow server` serves both; `--no-ui` leaves the API alone.
#[test]
fn flow_server_serves_the_api_and_the_dashboard() {
    let project = TestProject::new(&[(".gitignore", ".flow/\n")]);
    let store = project.path().join(".flow");
    let server = start_server(&store);
    let (status, body) = common::http(
        &server.address,
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = common::http(&server.address, "GET", "/api/flow/runs", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = common::http(&server.address, "GET", "/", &[], "");
    assert!(status == 200 && body.contains("<html"), "{status} {body}");
    drop(server);
    let mut command = Command::new(common::flow_binary());
    command
        .args(["server", "--port", "0", "--no-ui", "--store"])
        .arg(&store);
    let api_only = common::spawn_server(command);
    let (status, _) = common::http(&api_only.address, "GET", "/api/flow/runs", &[], "");
    assert_eq!(status, 404);
}
