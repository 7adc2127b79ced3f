//! `flow ui` end to end: a store filled by the shipped pipeline (two datasets, tiny
//! settings), a registered model, a `flow serve`-shaped monitoring run, a run with a
//! 1,000,000-point metric and a RUNNING run; then every page in headless Chromium, clicked
//! through as a user would, with no console errors. Screenshots land in
//! `target/ui-screenshots/`.

mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use serde_json::{json, Value};

use browser::{screenshot_dir, Browser};
use common::{http, pipeline, shipped_project, Server, TestProject};
use flow::store::{Metric, NewRun, RunKey, RunStatus, Store};

fn url(dashboard: &Server, path: &str) -> String {
    format!("http://{}{path}", dashboard.address)
}

fn start_dashboard(p: &TestProject, extra: &[&str]) -> Server {
    let mut args = vec!["ui", "--port", "0"];
    args.extend_from_slice(extra);
    p.start_server(&args)
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Begins a run of `entry` with `params`, owned by this process (so it stays RUNNING).
fn begin(store: &Store, entry: &str, params: &[(&str, &str)], member: Option<&str>) -> String {
    let key = RunKey {
        entry: entry.to_string(),
        key_value: None,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        upstream: Vec::new(),
        data_version: "test".to_string(),
        code_version: "none".to_string(),
    };
    store
        .begin_run(&NewRun {
            key: &key,
            experiment: "Default",
            member,
            code_dirty: false,
            command: "seeded by the test",
            run_time: Utc::now(),
        })
        .unwrap()
}

/// A `flow serve` monitoring run's windows as `cli/serve.rs` stores them.
fn seed_serve_run(store: &Store, served: &str) -> String {
    let run = begin(store, "serve", &[("model_uri", served)], None);
    let mut points = Vec::new();
    for window in 0..6i64 {
        let drift = window as f64 * 0.08;
        let mut push = |key: String, value: f64| {
            points.push(Metric {
                key,
                value,
                step: window,
                timestamp_ms: 0,
            })
        };
        push("count".into(), 100.0 + window as f64);
        push("anomalies".into(), window as f64);
        push("anomaly_rate".into(), window as f64 / 100.0);
        for (stat, value) in [
            ("min", 0.1),
            ("q25", 0.3),
            ("median", 0.4),
            ("mean", 0.42),
            ("q75", 0.5),
            ("max", 0.9 + drift),
        ] {
            push(format!("score.{stat}"), value);
        }
        for feature in ["channel_0", "channel_1"] {
            let scale = if feature == "channel_0" { 1.0 } else { 0.2 };
            push(format!("feature.{feature}.psi"), drift * scale);
            push(format!("feature.{feature}.ks"), drift * scale / 2.0);
        }
        push("f1".into(), 0.5 + drift / 2.0);
    }
    store.log_metrics(&run, &points).unwrap();
    store.end_run(&run, RunStatus::Finished).unwrap();
    run
}

/// A run with one metric of 1,000,000 points (a long training's per-step loss).
fn seed_long_metric_run(store: &Store) -> String {
    let run = begin(store, "train", &[("note", "long")], None);
    let points: Vec<Metric> = (0..1_000_000i64)
        .map(|step| Metric {
            key: "step_loss".into(),
            value: 1.0 / (1.0 + step as f64 / 1e4) + 0.02 * ((step as f64) * 0.01).sin(),
            step,
            timestamp_ms: 0,
        })
        .collect();
    store.log_metrics(&run, &points).unwrap();
    store.end_run(&run, RunStatus::Finished).unwrap();
    run
}

/// A screenshot of the whole page: the viewport grows to the page's height first, so
/// charts drawn when scrolled into view are drawn too.
fn shot(browser: &mut Browser, name: &str) {
    let height = browser
        .eval("document.documentElement.scrollHeight")
        .as_u64()
        .unwrap_or(900);
    browser.resize(1400, height.clamp(900, 6000) as u32);
    browser.wait_for(
        "[...document.querySelectorAll('.chart[data-series]')].every(c => ['drawn', 'error'].includes(c.dataset.state))",
        &format!("every chart of the `{name}` page"),
    );
    browser.screenshot(&screenshot_dir().join(format!("{name}.png")));
    browser.resize(1400, 900);
}

fn assert_no_console_errors(browser: &Browser, page: &str) {
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors on {page}: {errors:#?}");
}

/// Every page of the dashboard, from a store a real pipeline filled, in headless Chromium.
#[test]
fn dashboard_pages_work_in_chromium() {
    let p = shipped_project();
    let tiny = ["-P", "window=10", "-P", "epochs=2", "-P", "max_windows=256"];
    let msl = p.run_ok(&tiny);
    let m3 = p.run_ok(&[&tiny[..], &["-P", "dataset=M-3"]].concat());
    let (evaluate_msl, evaluate_m3) = (msl.run_id("evaluate"), m3.run_id("evaluate"));
    // Asked again: every MSL run is reused once, which the run page says.
    p.run_ok(&tiny);
    assert_eq!(
        p.flow(&["models", "register", "detector", &evaluate_msl])
            .code,
        0
    );
    assert_eq!(
        p.flow(&["models", "register", "detector", &evaluate_m3])
            .code,
        0
    );

    let store = Store::open(&p.path().join(".flow")).unwrap();
    let serve = seed_serve_run(&store, &evaluate_msl);
    let long = seed_long_metric_run(&store);
    let running = begin(&store, "train", &[("note", "live")], Some("seed=0"));
    store
        .set_tag(
            &running,
            "flow.progress",
            r#"{"label": "epoch 3/10", "done": 120, "total": 400, "unit": "batches"}"#,
        )
        .unwrap();

    let dashboard = start_dashboard(&p, &[]);
    let mut browser = Browser::launch(1400, 900);

    // Runs: the table, sorting by a metric column, filtering, a bad filter, live status.
    browser.goto(&url(&dashboard, "/"));
    let rows = browser.eval("document.querySelectorAll('#runs-table tbody tr').length");
    assert_eq!(rows, json!(13), "5 + 5 pipeline runs, serve, long, running");
    assert_eq!(
        browser.eval(&format!(
            "document.querySelector('.status[data-run=\"{running}\"]').dataset.status"
        )),
        json!("RUNNING")
    );
    assert!(browser
        .eval("document.querySelector('.progress span').textContent")
        .as_str()
        .unwrap()
        .contains("epoch 3/10"));
    shot(&mut browser, "runs");
    browser.click_and_wait("a.sort[data-field='metric.f1_pa_best']");
    let sorted = browser.eval(
        "[...document.querySelectorAll('#runs-table tbody tr')].slice(0, 2).map(r => r.children[2].textContent)",
    );
    assert_eq!(
        sorted,
        json!(["evaluate", "evaluate"]),
        "runs with the metric come first"
    );
    browser.eval(
        "document.getElementById('filter').value = 'entry = evaluate and metric.f1_pa_best >= 0'",
    );
    browser.click_and_wait("#filter-form button[type=submit]");
    let entries = browser.eval("[...document.querySelectorAll('#runs-table tbody tr')].map(r => r.children[2].textContent)");
    assert_eq!(entries, json!(["evaluate", "evaluate"]));
    browser.eval("document.getElementById('filter').value = 'metric.f1 >'");
    browser.click_and_wait("#filter-form button[type=submit]");
    let error = browser.eval("document.getElementById('filter-error').textContent");
    assert!(
        error.as_str().unwrap().contains("expected a value"),
        "{error}"
    );
    browser.goto(&url(&dashboard, "/"));
    store.end_run(&running, RunStatus::Finished).unwrap();
    browser.wait_for(
        &format!("document.querySelector('.status[data-run=\"{running}\"]').dataset.status === 'FINISHED'"),
        "the RUNNING badge to follow its run",
    );
    assert_no_console_errors(&browser, "runs");

    // A run: params, curves, artifacts, lineage; a lineage node opens its run.
    let train = msl.run_id("train");
    browser.goto(&url(&dashboard, &format!("/runs/{train}")));
    assert_eq!(
        browser.eval("document.querySelector('#params').textContent.includes('epochs')"),
        json!(true)
    );
    browser.wait_for(
        "document.querySelector('#curve-train_loss .chart').dataset.state === 'drawn'",
        "the train_loss curve",
    );
    assert_eq!(
        browser.eval("document.querySelector('#curve-train_loss .chart').dataset.points"),
        json!("2")
    );
    assert_eq!(
        browser.eval(
            "document.getElementById('reused').textContent.startsWith('reused by 1 later request (last ')"
        ),
        json!(true)
    );
    assert!(
        browser
            .eval("document.querySelectorAll('#lineage a.node').length")
            .as_u64()
            .unwrap()
            >= 5
    );
    shot(&mut browser, "run");
    let process = msl.run_id("process");
    browser.click_and_wait(&format!("#lineage a.node[data-run='{process}']"));
    assert!(browser
        .eval("document.getElementById('run-title').textContent")
        .as_str()
        .unwrap()
        .starts_with("process"));
    assert_no_console_errors(&browser, "run");

    // Artifacts: a CSV previewed as a table, a PNG inline.
    browser.goto(&url(&dashboard, &format!("/runs/{evaluate_msl}")));
    browser.click_and_wait("#artifacts a.artifact[href$='segments.csv']");
    assert_eq!(
        browser.eval("document.querySelector('#preview-table thead th').textContent"),
        json!("start")
    );
    browser.goto(&url(
        &dashboard,
        &format!("/runs/{evaluate_msl}/artifacts/view?path=plots/scores.png"),
    ));
    browser.wait_for(
        "document.getElementById('preview-image').complete",
        "the PNG",
    );
    assert!(
        browser
            .eval("document.getElementById('preview-image').naturalWidth")
            .as_u64()
            .unwrap()
            > 100
    );
    shot(&mut browser, "artifact");
    assert_no_console_errors(&browser, "artifacts");

    // Compare two evaluate runs from the runs table: the dataset difference shows.
    browser.goto(&url(&dashboard, "/?filter=entry%20%3D%20evaluate"));
    browser.eval("document.querySelectorAll('#runs-table input[name=run]').forEach(box => box.checked = true)");
    browser.click_and_wait("#compare-button");
    let differing = browser.eval(
        "[...document.querySelectorAll('#compare-table tr.differs th')].map(th => th.textContent)",
    );
    assert!(
        differing
            .as_array()
            .unwrap()
            .iter()
            .any(|name| name == "param load.dataset"),
        "{differing}"
    );
    shot(&mut browser, "compare");
    assert_no_console_errors(&browser, "compare");

    // Anomaly debugging: thresholds over the score, segments, zoom, the segment picker.
    browser.goto(&url(&dashboard, &format!("/runs/{evaluate_msl}/anomaly")));
    browser.wait_for(
        "document.getElementById('score-chart').dataset.state === 'drawn'",
        "the score chart",
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#score-chart .level').length"),
        json!(3)
    );
    assert!(
        browser
            .eval("document.querySelectorAll('#score-chart .shaded').length")
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        browser
            .eval("document.querySelectorAll('#methods tbody tr').length")
            .as_u64()
            .unwrap()
            >= 3
    );
    browser.wait_for(
        "document.getElementById('loss-chart').dataset.state === 'drawn'",
        "the loss chart",
    );
    shot(&mut browser, "anomaly");
    let rect = browser.eval("(() => { const r = document.querySelector('#score-chart svg').getBoundingClientRect(); return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; })()");
    let rect: Vec<f64> = rect
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    browser.eval(&format!("window.scrollTo(0, {})", rect[1] - 100.0));
    let y = 100.0 + rect[3] / 2.0;
    browser.drag(rect[0] + rect[2] * 0.3, rect[0] + rect[2] * 0.5, y);
    browser.wait_for(
        "document.getElementById('score-chart').dataset.zoomed === '1'",
        "the zoom",
    );
    browser.eval("(() => { const s = document.getElementById('segment-picker'); s.value = '0'; s.dispatchEvent(new Event('change')); })()");
    browser.wait_for(
        "document.getElementById('segment-view').dataset.state === 'drawn'",
        "the segment's features",
    );
    assert!(
        browser.eval("document.querySelectorAll('#segment-view .chart[data-state=drawn]').length + document.querySelectorAll('#no-features').length").as_u64().unwrap() >= 1
    );
    shot(&mut browser, "anomaly-segment");
    assert_no_console_errors(&browser, "anomaly");

    // Models: promote version 2 to Production from the page, then give it an alias.
    browser.goto(&url(&dashboard, "/models"));
    browser.eval(
        "document.querySelector('tr[data-version=\"2\"] .stage-select').value = 'Production'",
    );
    browser.click_and_wait("tr[data-version='2'] button.set-stage");
    assert_eq!(
        browser.eval("document.querySelector('tr[data-version=\"2\"] .stage').textContent"),
        json!("Production")
    );
    browser
        .eval("document.querySelector('tr[data-version=\"2\"] .alias-input').value = 'champion'");
    browser.click_and_wait("tr[data-version='2'] button.set-alias");
    assert!(browser
        .eval("document.querySelector('tr[data-version=\"2\"]').textContent")
        .as_str()
        .unwrap()
        .contains("@champion"));
    let resolved = p.flow(&["models", "resolve", "models:/detector@champion"]);
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    shot(&mut browser, "models");
    assert_no_console_errors(&browser, "models");

    // Monitoring windows of the serve run.
    browser.goto(&url(&dashboard, &format!("/runs/{serve}/monitoring")));
    browser.wait_for(
        "document.getElementById('psi-chart').dataset.state === 'drawn'",
        "the PSI chart",
    );
    assert_eq!(
        browser.eval("document.getElementById('window-count').textContent.startsWith('6 windows')"),
        json!(true)
    );
    assert_eq!(
        browser.eval("document.querySelector('#drift tbody tr th').textContent"),
        json!("channel_0")
    );
    shot(&mut browser, "monitoring");
    assert_no_console_errors(&browser, "monitoring");

    // Plan: the whole pipeline is reused; a changed parameter executes train and below.
    browser.goto(&url(&dashboard, "/plan"));
    browser.eval("document.getElementById('plan-entry').value = 'main'; document.getElementById('plan-params').value = 'window=10\\nepochs=3\\nmax_windows=256'");
    browser.click_and_wait("#plan-form button[type=submit]");
    let decisions = browser.eval("[...document.querySelectorAll('#plan tbody tr')].map(r => r.dataset.step + ':' + r.querySelector('.decision').textContent.split(' ')[0])");
    let decisions: Vec<String> = decisions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        decisions.contains(&"load:reuse".to_string()),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&"train:execute".to_string()),
        "{decisions:?}"
    );
    shot(&mut browser, "plan");
    assert_no_console_errors(&browser, "plan");

    // A 1,000,000-point metric: drawn from a reduced series, extremes kept.
    browser.goto(&url(&dashboard, &format!("/runs/{long}")));
    browser.wait_for(
        "document.querySelector('#curve-step_loss .chart').dataset.state === 'drawn'",
        "the long curve",
    );
    let drawn: u64 = browser
        .eval("Number(document.querySelector('#curve-step_loss .chart').dataset.points)")
        .as_u64()
        .unwrap();
    let total =
        browser.eval("document.querySelector('#curve-step_loss .chart').dataset.totalPoints");
    let render_ms =
        browser.eval("document.querySelector('#curve-step_loss .chart').dataset.renderMs");
    eprintln!("1,000,000-point curve: {drawn} points drawn in {render_ms} ms (request to drawn)");
    assert_eq!(total, json!("1000000"));
    assert!(drawn <= 8000, "{drawn} points drawn");
    shot(&mut browser, "long-metric");
    assert_no_console_errors(&browser, "long metric");

    // Unknown runs answer a page that says so.
    browser.goto(&url(&dashboard, "/runs/0123456789abcdef"));
    assert!(browser
        .eval("document.getElementById('error').textContent")
        .as_str()
        .unwrap()
        .contains("no run matches"));
    shot(&mut browser, "not-found");
}

/// The JSON API refuses bad input with a status and a sentence, never a 500, and writes
/// need the page's token.
#[test]
fn api_answers_bad_input_with_clear_errors() {
    let p = pipeline();
    let run = p.run_ok(&[]);
    let train = run.run_id("train");
    let dashboard = start_dashboard(&p, &[]);
    let address = dashboard.address.clone();
    let get = |path: &str| http(&address, "GET", path, &[], "");

    let (status, body) = get("/api/flow/runs/ffffffffffff");
    assert_eq!(status, 404);
    assert_eq!(json_body(&body)["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let (status, body) = get("/api/flow/runs?filter=metric.loss%20%3E%20high");
    assert_eq!(status, 400);
    assert!(
        json_body(&body)["message"]
            .as_str()
            .unwrap()
            .contains("compares with a number"),
        "{body}"
    );
    let (status, body) = get(&format!("/api/flow/runs/{train}/artifact?path=../flow.db"));
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(&format!(
        "/api/flow/runs/{train}/artifact?path=%2Fetc%2Fpasswd"
    ));
    assert_eq!(status, 400);
    let (status, body) = get(&format!("/api/flow/runs/{train}/artifact?path=model.txt"));
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&format!("/api/flow/runs/{train}/metrics/loss?points=0"));
    assert_eq!(status, 400, "{body}");
    let (status, body) = get(&format!("/api/flow/runs/{train}/metrics/nonexistent"));
    assert_eq!(status, 404, "{body}");
    let (status, body) = get("/api/flow/nothing-here");
    assert_eq!(status, 404);
    assert!(json_body(&body)["message"]
        .as_str()
        .unwrap()
        .contains("no endpoint"));
    let (status, _) = get("/compare?runs=abc");
    assert_eq!(status, 400);

    // A deleted object: the artifact is gone, and the answer says so.
    let listing = json_body(&get(&format!("/api/flow/runs/{train}/artifacts")).1);
    let hash = listing["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "note.txt")
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let object = p
        .path()
        .join(".flow/objects")
        .join(&hash[..2])
        .join(&hash[2..]);
    std::fs::remove_file(&object).unwrap();
    let (status, body) = get(&format!("/api/flow/runs/{train}/artifact?path=note.txt"));
    assert_eq!(status, 410, "{body}");
    assert!(json_body(&body)["message"]
        .as_str()
        .unwrap()
        .contains("gone"));

    // Writes: refused without the page's token, from another origin, or when read-only.
    let (status, body) = http(
        &address,
        "POST",
        "/api/flow/models/m/aliases",
        &[("Content-Type", "application/json")],
        r#"{"alias":"a","version":1}"#,
    );
    assert_eq!(status, 403, "{body}");
    let page = get("/models").1;
    let token = page
        .split("name=\"flow-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 32);
    let (status, body) = http(
        &address,
        "POST",
        "/api/flow/models/m/aliases",
        &[("X-Flow-CSRF", &token), ("Origin", "http://evil.example")],
        r#"{"alias":"a","version":1}"#,
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(
        &address,
        "POST",
        "/api/flow/models/m/aliases",
        &[("X-Flow-CSRF", &token)],
        r#"{"alias":"a","version":1}"#,
    );
    assert_eq!(status, 404, "an unknown model, past the guard: {body}");
    let (status, body) = http(
        &address,
        "POST",
        "/api/flow/models/m/aliases",
        &[("X-Flow-CSRF", &token)],
        "not json",
    );
    assert_eq!(status, 400, "{body}");
    drop(dashboard);
    let read_only = start_dashboard(&p, &["--read-only"]);
    let (status, body) = http(
        &read_only.address,
        "POST",
        "/api/flow/models/m/aliases",
        &[("X-Flow-CSRF", &token)],
        "{}",
    );
    assert_eq!(status, 403);
    assert!(body.contains("read-only"), "{body}");
    assert!(!Path::new(&object).exists());
}
