//! The streaming form of `/invocations` over real HTTP.

use super::{config, json, MeanScorer, TestServer};
use crate::serve::ServeConfig;

/// The streaming form: a series is started, then continued one row at a time; rows score once
/// the series holds a window before them, exactly as a batch request over the same rows would.
/// Unknown (never started, evicted) series, wrong column counts and out-of-order timestamps
/// are 400s that leave the series as it was, and a restart loses only the rolling state.
#[test]
fn streaming_continues_a_series_row_by_row() {
    let server = TestServer::start(
        MeanScorer::new(),
        ServeConfig {
            max_series: 2,
            ..config()
        },
    );
    let mut client = server.client();
    let mut send = |body: String| {
        let response = client
            .post("/invocations", "application/json", body.as_bytes())
            .unwrap();
        (response.status, json(&response))
    };
    let rows = [[0, 0, 0], [1, 1, 1], [3, 9, 6], [0, 3, 0], [5, 5, 8]];

    let (status, started) = send(format!(
        r#"{{"series": "pump-7", "start": true, "instances": [{:?}], "timestamps": [100]}}"#,
        rows[0]
    ));
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["predictions"], serde_json::json!([]));
    assert_eq!(started["first_row"], 1);
    assert_eq!(
        started["series"],
        serde_json::json!({"id": "pump-7", "rows_seen": 1})
    );
    let mut streamed = Vec::new();
    for (t, row) in rows.iter().enumerate().skip(1) {
        let (status, body) = send(format!(
            r#"{{"series": "pump-7", "instances": [{row:?}], "timestamps": [{}]}}"#,
            100 + t
        ));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["series"]["rows_seen"], t + 1);
        for prediction in body["predictions"].as_array().unwrap() {
            assert_eq!(prediction["row"], 0);
            streamed.push(prediction["score"].as_f64().unwrap());
        }
    }
    let batch = format!(r#"{{"instances": {rows:?}}}"#);
    let (status, batch) = send(batch);
    assert_eq!(status, 200, "{batch}");
    let expected: Vec<f64> = batch["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    // Equal up to the f32 round trip of `scale` (the test scorer undoes it to score raw rows).
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert_eq!(streamed.len(), 3);
    assert!(
        streamed.iter().zip(&expected).all(|(&a, &b)| close(a, b)),
        "{streamed:?} vs {expected:?}"
    );

    // Refused, and the series is left as it was: each names what is wrong.
    let refused = [
        (
            r#"{"series": "pump-9", "instances": [[1, 1, 1]]}"#,
            "unknown series `pump-9`",
        ),
        (
            r#"{"series": "pump-7", "instances": [[1, 1]]}"#,
            "the model expects 3",
        ),
        (
            r#"{"series": "pump-7", "instances": [[1, 1, 1]], "timestamps": [104]}"#,
            "not after the last row series `pump-7` received (104)",
        ),
    ];
    for (body, message) in refused {
        let (status, error) = send(body.to_string());
        assert_eq!(status, 400, "{body}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}: {error}"
        );
    }
    // CSV streams through the query string; the series continues where it was.
    let response = server
        .client()
        .post("/invocations?series=pump-7", "text/csv", b"a,b,c\n2,2,2\n")
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let body = json(&response);
    assert_eq!(body["series"]["rows_seen"], 6);
    assert!(close(
        body["predictions"][0]["score"].as_f64().unwrap(),
        2.0
    ));

    // At most two series: starting two more evicts pump-7, which is then unknown.
    for id in ["a", "b"] {
        let (status, body) = send(format!(
            r#"{{"series": "{id}", "start": true, "instances": [[1, 1, 1]]}}"#
        ));
        assert_eq!(status, 200, "{body}");
    }
    let (status, error) = send(r#"{"series": "pump-7", "instances": [[1, 1, 1]]}"#.into());
    assert_eq!(status, 400);
    assert!(
        error["message"].as_str().unwrap().contains("evicted"),
        "{error}"
    );
    let windows = server.stop();
    let recorded: u64 = windows.iter().map(|w| w.count).sum();
    assert_eq!(
        recorded,
        3 + 3 + 1,
        "streamed, batch and CSV rows are monitored"
    );

    // A restarted server knows no series: the client is told, and restarts it with context.
    let restarted = TestServer::start(MeanScorer::new(), config());
    let mut client = restarted.client();
    let response = client
        .post(
            "/invocations",
            "application/json",
            br#"{"series": "a", "instances": [[1, 1, 1]]}"#,
        )
        .unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    let response = client
        .post(
            "/invocations",
            "application/json",
            br#"{"series": "a", "start": true, "instances": [[1, 1, 1], [1, 1, 1], [4, 4, 4]]}"#,
        )
        .unwrap();
    let score = json(&response)["predictions"][0]["score"].as_f64().unwrap();
    assert!((score - 4.0).abs() < 1e-6, "{score}");
}
