//! The shipped project end to end on its bundled sample (tiny settings), then the model
//! registry and `flow serve` over real HTTP on an ephemeral loopback port.

mod common;

use std::time::{Duration, Instant};

use common::{shipped_project, Server, TestProject};

/// 150 raw rows of 55 features with a header, deterministic.
fn raw_csv() -> String {
    let mut text = (0..55)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in 0..150 {
        let values: Vec<String> = (0..55)
            .map(|col| {
                if col == 0 {
                    format!("{:.6}", ((row as f64) * 0.21).sin() * 0.8)
                } else {
                    if (row + col) % 7 == 0 {
                        "1".to_string()
                    } else {
                        "0".to_string()
                    }
                }
            })
            .collect();
        text.push_str(&values.join(","));
        text.push('\n');
    }
    text
}

fn start_server(p: &TestProject, uri: &str) -> Server {
    p.start_server(&["serve", uri, "--port", "0", "--monitor-every", "1h"])
}

/// One HTTP/1.1 request; returns (status, body).
fn http(address: &str, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    common::http(
        address,
        method,
        path,
        &[("Content-Type", content_type)],
        body,
    )
}

fn scores(body: &str) -> Vec<(u64, f64)> {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    value["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["row"].as_u64().unwrap(), p["score"].as_f64().unwrap()))
        .collect()
}

/// Train a tiny model on the sample, register it, serve it: every request shape scores like
/// the predict step, bad input is a 400 with a reason, and the served rows are monitored.
#[test]
fn pipeline_registry_and_serving() {
    let p = shipped_project();
    let tiny = ["-P", "window=10", "-P", "epochs=1", "-P", "max_windows=256"];
    let run = p.run_ok(&tiny);
    assert_eq!(run.actions().len(), 5);
    let evaluate = run.run_id("evaluate");
    let metrics = p.flow(&["runs", "show", &evaluate, "--json"]).json()["metrics"].clone();
    for key in ["f1_pa_pot", "f1_pa_epsilon", "f1_pa_best", "f1_best"] {
        let value = metrics[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {metrics}"));
        assert!((0.0..=1.0).contains(&value), "{key} = {value}");
    }

    // Registry: versions, stages, aliases, URIs.
    assert_eq!(
        p.flow(&["models", "register", "det", &evaluate])
            .stdout
            .trim(),
        "models:/det/1"
    );
    assert_eq!(
        p.flow(&["models", "register", "det", &run.run_id("train")])
            .stdout
            .trim(),
        "models:/det/2"
    );
    assert_eq!(
        p.flow(&["models", "stage", "det", "1", "Production"]).code,
        0
    );
    assert_eq!(
        p.flow(&["models", "stage", "det", "2", "production"]).code,
        0
    );
    assert_eq!(p.flow(&["models", "alias", "det", "champion", "1"]).code, 0);
    let list = p.flow(&["models", "list", "det", "--json"]).json();
    let stages: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["Archived", "Production"]);
    let resolve = |uri: &str| {
        p.flow(&["models", "resolve", uri])
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(resolve("models:/det@champion"), resolve("models:/det/1"));
    assert_eq!(
        resolve("models:/det/1"),
        resolve(&format!("runs:/{evaluate}/model"))
    );
    assert_eq!(resolve("models:/det/Production"), resolve("models:/det/2"));
    assert!(p.flow(&["models", "resolve", "models:/det/Staging"]).code != 0);

    // The predict step on a CSV of raw rows, for comparison with the server. Before
    // anything is registered it uses its chain's bundle; with a Production version of
    // `anomaly-MSL` (MLproject's default model URI, `anomaly-{dataset}`: one model per
    // dataset) it uses that and records it; another dataset's model is never taken.
    p.write("rows.csv", &raw_csv());
    let unregistered = p.run_ok(&[&tiny[..], &["-e", "predict", "-P", "data=rows.csv"]].concat());
    let show = p
        .flow(&["runs", "show", &unregistered.run_id("predict"), "--json"])
        .json();
    assert!(
        show["upstream"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["entry"] != "model"),
        "{show}"
    );
    for name in ["anomaly-MSL", "anomaly-machine-1-1"] {
        assert_eq!(p.flow(&["models", "register", name, &evaluate]).code, 0);
        assert_eq!(
            p.flow(&["models", "stage", name, "1", "Production"]).code,
            0
        );
    }
    let plan = p.flow(
        &[
            &["plan"][..],
            &tiny[..],
            &["-e", "predict", "-P", "data=rows.csv"],
        ]
        .concat(),
    );
    assert!(plan.stdout.contains("anomaly-MSL"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("machine-1-1"), "{}", plan.stdout);
    let predicted = p.run_ok(&[&tiny[..], &["-e", "predict", "-P", "data=rows.csv"]].concat());
    assert_ne!(
        predicted.run_id("predict"),
        unregistered.run_id("predict"),
        "a new Production model re-executes predict"
    );
    let show = p
        .flow(&["runs", "show", &predicted.run_id("predict"), "--json"])
        .json();
    let model_edge = show["upstream"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["entry"] == "model")
        .cloned();
    assert_eq!(
        model_edge.map(|u| u["run_id"].clone()),
        Some(serde_json::json!(evaluate)),
        "{show}"
    );
    let dir = p
        .path()
        .join(".flow/runs")
        .join(predicted.run_id("predict"));
    let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    let expected: Vec<f64> = predictions
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(expected.len(), 140);

    let server = start_server(&p, "models:/det@champion");
    let address = server.address.as_str();
    assert_eq!(http(address, "GET", "/ping", "text/plain", "").0, 200);
    let health: serde_json::Value =
        serde_json::from_str(&http(address, "GET", "/health", "text/plain", "").1).unwrap();
    assert_eq!(health["n_features"], 55);
    assert_eq!(health["run_id"], evaluate.as_str());

    let csv = raw_csv();
    let (status, body) = http(address, "POST", "/invocations", "text/csv", &csv);
    assert_eq!(status, 200, "{body}");
    let served = scores(&body);
    assert_eq!(served.len(), expected.len());
    for ((row, score), want) in served.iter().zip(&expected) {
        assert!(
            (score - want).abs() <= 1e-6 * want.abs().max(1.0),
            "row {row}: server {score} vs predict {want}"
        );
    }
    assert_eq!(served[0].0, 10);

    // Every JSON shape gives the same scores as CSV.
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let columns: Vec<String> = (0..55).map(|i| format!("f{i}")).collect();
    let records: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::Value::Object(
                columns
                    .iter()
                    .cloned()
                    .zip(r.iter().map(|v| serde_json::json!(v)))
                    .collect(),
            )
        })
        .collect();
    let bodies = [
        serde_json::json!({"dataframe_split": {"columns": columns, "data": rows}}),
        serde_json::json!({"dataframe_records": records}),
        serde_json::json!({"instances": rows}),
        serde_json::json!({"inputs": rows}),
    ];
    for body in &bodies {
        let (status, text) = http(
            address,
            "POST",
            "/invocations",
            "application/json",
            &body.to_string(),
        );
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            scores(&text),
            served,
            "shape {}",
            body.as_object().unwrap().keys().next().unwrap()
        );
    }

    // Bad input: each a 400 with a reason.
    let few_rows: String = csv.lines().take(6).map(|l| format!("{l}\n")).collect();
    let ragged = csv.replacen("\n0.", "\n1,0.", 1);
    let text_value = csv.replacen(",0\n", ",abc\n", 1);
    let cases: [(&str, &str, &str); 6] = [
        ("application/json", "{not json", "JSON"),
        ("application/json", "{\"instances\": [[1, 2, 3]]}", "55"),
        ("text/csv", &few_rows, "window"),
        ("text/csv", &ragged, "row"),
        ("text/csv", &text_value, "abc"),
        ("application/json", "", "empty"),
    ];
    for (content_type, body, needle) in cases {
        let (status, text) = http(address, "POST", "/invocations", content_type, body);
        assert_eq!(status, 400, "{needle}: {text}");
        let reason: serde_json::Value = serde_json::from_str(&text).unwrap();
        let message = reason["message"].as_str().unwrap();
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "expected `{needle}` in {message}"
        );
    }
    let (_, metrics) = http(address, "GET", "/metrics", "text/plain", "");
    assert!(metrics.contains("# TYPE"), "{metrics}");

    // Stop with Ctrl-C: the open window is flushed into the monitoring run.
    // SAFETY: kill(2) on our own child process; no memory is touched.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let monitoring = loop {
        let list = p
            .flow(&[
                "runs", "list", "--entry", "serve", "--status", "finished", "--json",
            ])
            .json();
        if let Some(run) = list.as_array().unwrap().first() {
            break run["run_id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the serve run never finished");
        std::thread::sleep(Duration::from_millis(100));
    };
    let show = p.flow(&["runs", "show", &monitoring, "--json"]).json();
    assert_eq!(
        show["metrics"]["count"],
        (served.len() * 5) as f64,
        "{show}"
    );
    let lineage = p.flow(&["lineage", &monitoring, "--format", "json"]).json();
    assert_eq!(lineage["upstream"][0]["run"]["run_id"], evaluate.as_str());
    let monitor = p.flow(&["monitor", &monitoring]);
    assert!(monitor.stdout.contains("WINDOW"), "{}", monitor.stdout);
}

/// A bundle directory holding an untrained 3-column MTAD-GAT with window 4, for tests that
/// need a real `flow serve` process but not a trained model.
fn tiny_bundle_dir(p: &TestProject) -> String {
    use flow_steps::bundle::Bundle;
    use flow_steps::data::{Preprocessor, ScalerKind};
    use flow_steps::model::Config;
    let columns = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let train: Vec<f64> = (0..40 * 3).map(|i| (i % 7) as f64).collect();
    let preprocessor = Preprocessor::fit(&train, columns, ScalerKind::Minmax, 0.0, vec![], 4);
    let config = Config {
        gru_hidden: 4,
        forecast_hidden: 4,
        recon_hidden: 4,
        kernel_size: 3,
        dropout: 0.0,
        ..Config::paper(3, 4, 3)
    };
    let bundle = Bundle::untrained(preprocessor, config, 3).unwrap();
    bundle.save(&p.path().join("bundle")).unwrap();
    "bundle".to_string()
}

/// `kill PID` (SIGTERM, what systemd and container runtimes send) and SIGHUP stop `flow serve`
/// as Ctrl-C does: the open monitoring window is saved and the serve run ends FINISHED.
#[test]
fn term_and_hup_save_the_window_and_finish_the_run() {
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let p = TestProject::new(&[(".gitignore", ".flow/\n")]);
        let bundle = tiny_bundle_dir(&p);
        let mut server = start_server(&p, &bundle);
        let rows: String = (0..10).map(|t| format!("{t},{},1\n", t % 3)).collect();
        let (status, body) = http(&server.address, "POST", "/invocations", "text/csv", &rows);
        assert_eq!(status, 200, "{body}");
        assert_eq!(scores(&body).len(), 6);
        // SAFETY: kill(2) on our own child process; no memory is touched.
        unsafe { libc::kill(server.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = server.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "signal {signal}: still serving");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "signal {signal}: {exit:?}");
        let list = p
            .flow(&["runs", "list", "--entry", "serve", "--json"])
            .json();
        let run = &list.as_array().unwrap()[0];
        assert_eq!(run["status"], "FINISHED", "signal {signal}: {run}");
        let show = p
            .flow(&["runs", "show", run["run_id"].as_str().unwrap(), "--json"])
            .json();
        assert_eq!(show["metrics"]["count"], 6.0, "signal {signal}: {show}");
    }
}

/// Under `nohup` (SIGHUP ignored when flow starts) a hangup does not stop the server: only the
/// signals it was left able to receive do.
#[test]
fn an_ignored_hangup_stays_ignored() {
    use std::os::unix::process::CommandExt;
    let p = TestProject::new(&[(".gitignore", ".flow/\n")]);
    let bundle = tiny_bundle_dir(&p);
    let mut command = p.command(&["serve", &bundle, "--port", "0", "--monitor-every", "1h"]);
    // SAFETY: signal(2) is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut server = common::spawn_server(command);
    // SAFETY: kill(2) on our own child process; no memory is touched.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped a nohup'd server"
    );
    assert_eq!(
        http(&server.address, "GET", "/ping", "text/plain", "").0,
        200
    );
    // SAFETY: as above.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        std::thread::sleep(Duration::from_millis(50));
    }
}
