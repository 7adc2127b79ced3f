//! The server over real HTTP on an ephemeral loopback port, with a fake model whose score is
//! the mean of the row, driven by the std-only client in `test_client.rs`.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flow_steps::data::FeatureStats;
use serde_json::Value;

mod streaming;

use crate::serve::test_client::{HttpClient, HttpResponse};
use crate::serve::{
    serve_with, ModelInfo, MonitorSink, ScoredRows, Scorer, SeriesContext, ServeConfig, ServeState,
    WindowStats,
};

/// Score of a row = mean of its raw values; top features = columns by value, highest first.
struct MeanScorer {
    columns: Vec<String>,
    train_stats: Vec<FeatureStats>,
    /// When set, `score` announces itself and waits for a release (to fill the pool).
    gate: Option<Gate>,
}

struct Gate {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

const WINDOW: usize = 2;

impl MeanScorer {
    fn new() -> MeanScorer {
        let uniform: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        MeanScorer {
            columns: vec!["a".into(), "b".into(), "c".into()],
            train_stats: vec![FeatureStats::of(&uniform); 3],
            gate: None,
        }
    }
}

impl Scorer for MeanScorer {
    fn columns(&self) -> &[String] {
        &self.columns
    }
    fn window(&self) -> usize {
        WINDOW
    }
    fn threshold(&self) -> Option<f64> {
        Some(5.0)
    }
    fn train_stats(&self) -> &[FeatureStats] {
        &self.train_stats
    }
    fn scale(&self, raw: &[f64]) -> Vec<f32> {
        raw.iter().map(|&v| (v / 10.0) as f32).collect()
    }
    fn score(&self, raw: &[f64], n_rows: usize) -> anyhow::Result<ScoredRows> {
        self.wait_at_gate();
        let k = self.columns.len();
        let rows: Vec<Vec<f64>> = raw
            .chunks_exact(k)
            .skip(WINDOW)
            .map(<[f64]>::to_vec)
            .collect();
        anyhow::ensure!(rows.len() == n_rows - WINDOW, "shape");
        Ok(self.score_rows(WINDOW, &rows))
    }
    fn score_next(
        &self,
        context: &mut SeriesContext,
        scaled: &[f32],
        n_rows: usize,
    ) -> anyhow::Result<ScoredRows> {
        self.wait_at_gate();
        let k = self.columns.len();
        anyhow::ensure!(scaled.len() == n_rows * k, "shape");
        let first_row = context.first_scored(WINDOW, k).min(n_rows);
        // Undo `scale` so streamed scores are the batch ones.
        let rows: Vec<Vec<f64>> = scaled
            .chunks_exact(k)
            .skip(first_row)
            .map(|row| row.iter().map(|&v| v as f64 * 10.0).collect())
            .collect();
        context.push_rows(scaled, WINDOW, k);
        Ok(self.score_rows(first_row, &rows))
    }
}

impl MeanScorer {
    fn wait_at_gate(&self) {
        if let Some(gate) = &self.gate {
            gate.entered.lock().unwrap().send(()).ok();
            gate.release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10))
                .ok();
        }
    }

    fn score_rows(&self, first_row: usize, rows: &[Vec<f64>]) -> ScoredRows {
        let k = self.columns.len();
        let scores = rows
            .iter()
            .map(|row| row.iter().sum::<f64>() / k as f64)
            .collect();
        let top_features = rows
            .iter()
            .map(|row| {
                let mut by_value: Vec<(String, f64)> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().copied())
                    .collect();
                by_value.sort_by(|x, y| y.1.total_cmp(&x.1));
                by_value
            })
            .collect();
        ScoredRows {
            first_row,
            scores,
            top_features,
        }
    }
}

#[derive(Default)]
struct RecordingSink {
    windows: Mutex<Vec<WindowStats>>,
}

impl MonitorSink for RecordingSink {
    fn record_window(&self, window: &WindowStats) -> anyhow::Result<()> {
        self.windows.lock().unwrap().push(window.clone());
        Ok(())
    }
}

struct TestServer {
    address: SocketAddr,
    state: Arc<ServeState>,
    sink: Arc<RecordingSink>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    fn start(scorer: MeanScorer, config: ServeConfig) -> TestServer {
        let info = ModelInfo {
            name: "detector".into(),
            version: Some("2".into()),
            run_id: "run-1".into(),
            uri: "models:/detector/2".into(),
        };
        let state = ServeState::new(Arc::new(scorer), info, ServeConfig { port: 0, ..config });
        let sink = Arc::new(RecordingSink::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (thread_state, thread_sink) = (Arc::clone(&state), Arc::clone(&sink));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(serve_with(
                thread_state,
                thread_sink,
                move |address| ready_tx.send(address).unwrap(),
                async {
                    let _ = stopped.await;
                },
            ))
        });
        let address = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        TestServer {
            address,
            state,
            sink,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn client(&self) -> HttpClient {
        HttpClient::connect(self.address).unwrap()
    }

    /// Stops the server and returns the windows the sink received.
    fn stop(mut self) -> Vec<WindowStats> {
        self.shutdown();
        self.sink.windows.lock().unwrap().clone()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn json(response: &HttpResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.text()))
}

fn config() -> ServeConfig {
    ServeConfig {
        monitor_every: Duration::from_secs(3600),
        workers: 2,
        ..ServeConfig::default()
    }
}

const SPLIT_BODY: &str = r#"{"dataframe_split": {"columns": ["c", "a", "b"], "data": [[0, 0, 0], [1, 1, 1], [3, 9, 6], [0, 3, 0]]}}"#;

#[test]
fn scores_reports_health_metrics_and_monitors() {
    let server = TestServer::start(MeanScorer::new(), config());
    let mut client = server.client();

    let response = client
        .post("/invocations", "application/json", SPLIT_BODY.as_bytes())
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let body = json(&response);
    assert_eq!(
        (body["first_row"].as_u64(), body["threshold"].as_f64()),
        (Some(2), Some(5.0))
    );
    let predictions = body["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    // Row 2 is a=9, b=6, c=3 after reordering: mean 6 > 5.
    assert_eq!(predictions[0]["row"], 2);
    assert_eq!(predictions[0]["row_id"], 0);
    assert_eq!(predictions[0]["score"].as_f64(), Some(6.0));
    assert_eq!(predictions[0]["anomaly"], true);
    assert_eq!(predictions[0]["top_features"][0]["feature"], "a");
    assert_eq!(predictions[0]["top_features"].as_array().unwrap().len(), 3);
    assert_eq!(
        (predictions[1]["score"].as_f64(), &predictions[1]["anomaly"]),
        (Some(1.0), &Value::Bool(false))
    );

    // CSV on the same kept-alive connection; a query threshold overrides the bundle's; ids continue.
    let response = client
        .post(
            "/invocations?threshold=0.5",
            "text/csv",
            b"a,b,c\n0,0,0\n1,1,1\n1,1,1\n",
        )
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let body = json(&response);
    assert_eq!(body["threshold"].as_f64(), Some(0.5));
    assert_eq!(body["predictions"][0]["row_id"], 2);
    assert_eq!(body["predictions"][0]["anomaly"], true);

    let bad = client
        .post(
            "/invocations",
            "application/json",
            br#"{"instances": [[1, 2, 3]]}"#,
        )
        .unwrap();
    assert_eq!(bad.status, 400);
    let error = json(&bad);
    assert_eq!(error["error_code"], "BAD_REQUEST");
    assert!(
        error["message"].as_str().unwrap().contains("window of 2"),
        "{error}"
    );

    let health = client.get("/health").unwrap();
    assert_eq!(health.status, 200);
    let health = json(&health);
    assert_eq!(
        (&health["name"], &health["version"], &health["run_id"]),
        (&"detector".into(), &"2".into(), &"run-1".into())
    );
    assert_eq!(
        (health["n_features"].as_u64(), health["window"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(health["columns"], serde_json::json!(["a", "b", "c"]));
    let ping = client.get("/ping").unwrap();
    assert_eq!((ping.status, ping.body.len()), (200, 0));
    assert_eq!(
        client.get("/version").unwrap().text(),
        env!("CARGO_PKG_VERSION")
    );

    let metrics = client.get("/metrics").unwrap();
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    assert!(
        text.contains("flow_requests_total{endpoint=\"/invocations\",status=\"200\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("flow_requests_total{endpoint=\"/invocations\",status=\"400\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("flow_rows_scored_total 3\n"));
    assert!(text.contains("flow_anomalies_total 2\n"));
    assert!(!text.contains("flow_window_rows"));

    // Close a window by hand; /metrics then shows its statistics.
    let window = server.state.close_window().unwrap();
    assert_eq!((window.count, window.anomalies), (3, 2));
    let text = client.get("/metrics").unwrap().text();
    assert!(text.contains("flow_window_rows 3.0\n"), "{text}");
    assert!(text.contains("flow_window_feature_psi{feature=\"a\"}"));

    // Feedback for rows 0 (predicted anomaly) and 1 (predicted normal), both labelled anomalous.
    let labels = br#"{"labels": [{"row_id": 0, "label": 1}, {"row_id": 1, "label": 1}, {"row_id": 99, "label": 0}]}"#;
    let response = client
        .post("/feedback", "application/json", labels)
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let body = json(&response);
    assert_eq!(
        (body["accepted"].as_u64(), &body["unknown"]),
        (Some(2), &serde_json::json!([99]))
    );

    let windows = server.stop();
    assert_eq!(
        windows.len(),
        1,
        "the shutdown flush records the window with the labels"
    );
    let last = &windows[0];
    assert_eq!(
        (last.index, last.labels, last.precision, last.recall),
        (1, 2, Some(1.0), Some(0.5))
    );
}

#[test]
fn every_bad_input_is_a_json_400_or_413() {
    let server = TestServer::start(
        MeanScorer::new(),
        ServeConfig {
            max_body_bytes: 2000,
            ..config()
        },
    );
    let mut client = server.client();
    let cases: [(&str, &str, &[u8], u16, &str); 7] = [
        ("/invocations", "application/json", b"", 400, "empty"),
        (
            "/invocations",
            "application/json",
            b"{\"instances\": ",
            400,
            "malformed JSON",
        ),
        (
            "/invocations",
            "text/csv",
            b"a,b,c\n1,2,x\n1,2,3\n1,2,3\n",
            400,
            "row 0, column `c`: `x`",
        ),
        (
            "/invocations",
            "text/plain",
            b"1,2,3",
            400,
            "unsupported Content-Type",
        ),
        (
            "/invocations?threshold=high",
            "text/csv",
            b"1,2,3\n1,2,3\n1,2,3\n",
            400,
            "invalid query string",
        ),
        (
            "/invocations",
            "text/csv",
            &[b'1'; 5000],
            413,
            "larger than the limit of 2000 bytes",
        ),
        (
            "/feedback",
            "application/json",
            br#"{"labels": [{"row_id": 0, "label": 7}]}"#,
            400,
            "must be 0 or 1",
        ),
    ];
    for (path, content_type, body, status, message) in cases {
        let response = client.post(path, content_type, body).unwrap();
        assert_eq!(
            response.status,
            status,
            "{path} {content_type}: {}",
            response.text()
        );
        let error = json(&response);
        assert_eq!(error["error_code"], "BAD_REQUEST");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{error}"
        );
        if status == 413 {
            // The server may close a connection whose body it did not read.
            client = server.client();
        }
    }
    let missing = server.client().get("/nowhere").unwrap();
    assert_eq!(
        (missing.status, json(&missing)["error_code"].as_str()),
        (404, Some("ENDPOINT_NOT_FOUND"))
    );
    let text = server.client().get("/metrics").unwrap().text();
    assert!(
        text.contains("flow_requests_total{endpoint=\"/invocations\",status=\"400\"} 5\n"),
        "{text}"
    );
    assert!(
        text.contains("flow_requests_total{endpoint=\"other\",status=\"404\"} 1\n"),
        "{text}"
    );
    assert!(server.stop().is_empty(), "nothing scored, nothing recorded");
}

#[test]
fn a_full_pool_answers_503_at_once() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let scorer = MeanScorer {
        gate: Some(Gate {
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        }),
        ..MeanScorer::new()
    };
    let server = TestServer::start(
        scorer,
        ServeConfig {
            workers: 1,
            max_queue: 0,
            ..config()
        },
    );
    let address = server.address;
    let body = b"1,2,3\n1,2,3\n1,2,3\n";
    let first = std::thread::spawn(move || {
        HttpClient::connect(address)
            .unwrap()
            .post("/invocations", "text/csv", body)
    });
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the first request reaches the scorer");
    let rejected = server
        .client()
        .post("/invocations", "text/csv", body)
        .unwrap();
    assert_eq!(rejected.status, 503, "{}", rejected.text());
    assert_eq!(json(&rejected)["error_code"], "TEMPORARILY_UNAVAILABLE");
    release_tx.send(()).unwrap();
    assert_eq!(first.join().unwrap().unwrap().status, 200);
    let windows = server.stop();
    assert_eq!(windows.iter().map(|w| w.count).sum::<u64>(), 1);
}

/// Issue 14's HTTP findings: a 405 is JSON like every other error; a gzip body is decoded (and
/// a body that only claims to be gzip, or an encoding the server cannot decode, is refused);
/// a negative threshold and a duplicated JSON key are refused, not silently taken.
#[test]
fn methods_encodings_thresholds_and_duplicate_keys() {
    use std::io::Write;
    let server = TestServer::start(MeanScorer::new(), config());
    let mut client = server.client();

    let wrong_method = client.get("/invocations").unwrap();
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text());
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    let error = json(&wrong_method);
    assert_eq!(error["error_code"], "BAD_REQUEST");
    assert!(
        error["message"].as_str().unwrap().contains("use POST"),
        "{error}"
    );

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(SPLIT_BODY.as_bytes()).unwrap();
    let gzipped = gzip.finish().unwrap();
    let encoded = |encoding: &str, body: &[u8]| {
        let mut client = server.client();
        client
            .request_with_headers(
                "POST",
                "/invocations",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Encoding", encoding),
                ],
                body,
            )
            .unwrap()
    };
    let plain = client
        .post("/invocations", "application/json", SPLIT_BODY.as_bytes())
        .unwrap();
    let decoded = encoded("gzip", &gzipped);
    assert_eq!(decoded.status, 200, "{}", decoded.text());
    assert_eq!(
        json(&decoded)["predictions"][0]["score"],
        json(&plain)["predictions"][0]["score"]
    );
    let cases: [(&str, &[u8], u16, &str); 3] = [
        ("gzip", SPLIT_BODY.as_bytes(), 400, "not valid gzip"),
        (
            "br",
            SPLIT_BODY.as_bytes(),
            415,
            "unsupported Content-Encoding `br`",
        ),
        ("identity", SPLIT_BODY.as_bytes(), 200, ""),
    ];
    for (encoding, body, status, message) in cases {
        let response = encoded(encoding, body);
        assert_eq!(response.status, status, "{encoding}: {}", response.text());
        if status != 200 {
            let error = json(&response);
            assert!(
                error["message"].as_str().unwrap().contains(message),
                "{encoding}: {error}"
            );
        }
    }

    let refused: [(&str, &str); 4] = [
        (
            "/invocations?threshold=-5",
            r#"{"instances": [[1,1,1],[1,1,1],[1,1,1]]}"#,
        ),
        (
            "/invocations",
            r#"{"instances": [[1,1,1],[1,1,1],[1,1,1]], "threshold": -5}"#,
        ),
        (
            "/invocations",
            r#"{"instances": [[1,1,1],[1,1,1],[1,1,1]], "instances": [[2,2,2],[2,2,2],[2,2,2]]}"#,
        ),
        (
            "/invocations",
            r#"{"dataframe_records": [{"a": 1, "b": 1, "c": 1, "a": 9}, {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1}]}"#,
        ),
    ];
    for (path, body) in refused {
        let response = client
            .post(path, "application/json", body.as_bytes())
            .unwrap();
        assert_eq!(response.status, 400, "{path} {body}: {}", response.text());
        let message = json(&response)["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("negative") || message.contains("duplicate key"),
            "{path} {body}: {message}"
        );
    }
    assert!(server.stop().len() <= 1);
}
