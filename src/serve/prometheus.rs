//! What `GET /metrics` shows, in the Prometheus text exposition format (version 0.0.4):
//! request counters and latency histograms kept here, plus the latest closed monitoring
//! window. Hand-written: the format is a few lines of text per metric.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::serve::monitor::WindowStats;
use crate::serve::ModelInfo;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters shared by all request handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<RequestMetrics>,
    rows_scored: AtomicU64,
    anomalies: AtomicU64,
    labels: AtomicU64,
}

/// Request counts by (endpoint, status) and latency by endpoint; endpoints are a fixed small
/// set (unknown paths are one `other`), so the maps stay tiny.
#[derive(Debug, Default)]
struct RequestMetrics {
    counts: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
}

/// A latency histogram with per-bucket (not yet cumulative) counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Live gauges that belong to the server rather than to these counters.
#[derive(Debug, Clone, Copy)]
pub struct ServerGauges<'a> {
    pub model: &'a ModelInfo,
    pub threshold: Option<f64>,
    pub in_flight: usize,
    pub window: Option<&'a WindowStats>,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe_request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *requests.counts.entry((endpoint, status)).or_default() += 1;
        requests
            .latency
            .entry(endpoint)
            .or_default()
            .observe(seconds);
    }

    pub fn add_scored(&self, rows: u64, anomalies: u64) {
        self.rows_scored.fetch_add(rows, Ordering::Relaxed);
        self.anomalies.fetch_add(anomalies, Ordering::Relaxed);
    }

    pub fn add_labels(&self, labels: u64) {
        self.labels.fetch_add(labels, Ordering::Relaxed);
    }

    pub fn rows_scored(&self) -> u64 {
        self.rows_scored.load(Ordering::Relaxed)
    }

    /// The whole exposition text.
    pub fn render(&self, gauges: &ServerGauges) -> String {
        let mut out = String::new();
        let model = gauges.model;
        header(
            &mut out,
            "flow_model_info",
            "gauge",
            "The served model (always 1).",
        );
        let labels = [
            ("name", model.name.as_str()),
            ("version", model.version.as_deref().unwrap_or("")),
            ("run_id", model.run_id.as_str()),
            ("uri", model.uri.as_str()),
        ];
        sample(&mut out, "flow_model_info", &labels, 1.0);
        if let Some(threshold) = gauges.threshold {
            header(
                &mut out,
                "flow_model_threshold",
                "gauge",
                "The bundle's anomaly threshold.",
            );
            sample(&mut out, "flow_model_threshold", &[], threshold);
        }
        self.render_requests(&mut out, gauges.in_flight);
        self.render_scoring(&mut out);
        if let Some(window) = gauges.window {
            render_window(&mut out, window);
        }
        out
    }

    fn render_requests(&self, out: &mut String, in_flight: usize) {
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        header(
            out,
            "flow_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status.",
        );
        for (&(endpoint, status), &count) in &requests.counts {
            sample(
                out,
                "flow_requests_total",
                &[("endpoint", endpoint), ("status", &status.to_string())],
                count as f64,
            );
        }
        header(
            out,
            "flow_request_duration_seconds",
            "histogram",
            "HTTP request latency, by endpoint.",
        );
        for (&endpoint, histogram) in &requests.latency {
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let le = format_value(*bound);
                sample(
                    out,
                    "flow_request_duration_seconds_bucket",
                    &[("endpoint", endpoint), ("le", &le)],
                    cumulative as f64,
                );
            }
            let labels = [("endpoint", endpoint), ("le", "+Inf")];
            sample(
                out,
                "flow_request_duration_seconds_bucket",
                &labels,
                histogram.count as f64,
            );
            sample(
                out,
                "flow_request_duration_seconds_sum",
                &[("endpoint", endpoint)],
                histogram.sum,
            );
            sample(
                out,
                "flow_request_duration_seconds_count",
                &[("endpoint", endpoint)],
                histogram.count as f64,
            );
        }
        header(
            out,
            "flow_requests_in_flight",
            "gauge",
            "Scoring requests admitted and not yet answered.",
        );
        sample(out, "flow_requests_in_flight", &[], in_flight as f64);
    }

    fn render_scoring(&self, out: &mut String) {
        let rows = self.rows_scored();
        let anomalies = self.anomalies.load(Ordering::Relaxed);
        header(
            out,
            "flow_rows_scored_total",
            "counter",
            "Rows scored since the server started.",
        );
        sample(out, "flow_rows_scored_total", &[], rows as f64);
        header(
            out,
            "flow_anomalies_total",
            "counter",
            "Rows flagged as anomalies since the server started.",
        );
        sample(out, "flow_anomalies_total", &[], anomalies as f64);
        header(
            out,
            "flow_anomaly_rate",
            "gauge",
            "Share of scored rows flagged since the server started.",
        );
        sample(
            out,
            "flow_anomaly_rate",
            &[],
            if rows > 0 {
                anomalies as f64 / rows as f64
            } else {
                0.0
            },
        );
        header(
            out,
            "flow_feedback_labels_total",
            "counter",
            "Feedback labels accepted.",
        );
        sample(
            out,
            "flow_feedback_labels_total",
            &[],
            self.labels.load(Ordering::Relaxed) as f64,
        );
    }
}

/// The latest closed monitoring window as gauges.
fn render_window(out: &mut String, window: &WindowStats) {
    let gauges = [
        (
            "flow_window_index",
            "Index of the latest closed monitoring window.",
            window.index as f64,
        ),
        (
            "flow_window_end_timestamp_seconds",
            "When the latest window closed.",
            window.end.timestamp_millis() as f64 / 1e3,
        ),
        (
            "flow_window_rows",
            "Rows scored in the latest window.",
            window.count as f64,
        ),
        (
            "flow_window_sampled_rows",
            "Rows sampled for the latest window's statistics.",
            window.sampled as f64,
        ),
        (
            "flow_window_anomaly_rate",
            "Share of rows flagged in the latest window.",
            window.anomaly_rate,
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        sample(out, name, &[], value);
    }
    header(
        out,
        "flow_window_score",
        "gauge",
        "Anomaly score statistics over the latest window.",
    );
    for (stat, value) in window.score.fields() {
        sample(out, "flow_window_score", &[("stat", stat)], value);
    }
    type Field = fn(&crate::serve::monitor::FeatureSummary) -> f64;
    let per_feature: [(&str, &str, Field); 4] = [
        (
            "flow_window_feature_mean",
            "Mean of each scaled input feature in the latest window.",
            |f| f.summary.mean,
        ),
        (
            "flow_window_feature_std",
            "Standard deviation of each scaled input feature.",
            |f| f.summary.std,
        ),
        (
            "flow_window_feature_psi",
            "Population stability index of each feature vs training.",
            |f| f.psi,
        ),
        (
            "flow_window_feature_ks",
            "Kolmogorov-Smirnov statistic of each feature vs training.",
            |f| f.ks,
        ),
    ];
    for (name, help, field) in per_feature {
        header(out, name, "gauge", help);
        for feature in &window.features {
            sample(out, name, &[("feature", &feature.name)], field(feature));
        }
    }
    for (name, value) in [
        ("precision", window.precision),
        ("recall", window.recall),
        ("f1", window.f1),
    ] {
        if let Some(value) = value {
            let metric = format!("flow_window_{name}");
            header(
                out,
                &metric,
                "gauge",
                "Over the feedback labels received in the latest window.",
            );
            sample(out, &metric, &[], value);
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, label_value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label(label_value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Numbers as Prometheus spells them (`NaN`, `+Inf`, `-Inf`).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::serve::monitor::WindowAccumulator;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "det\"ector".into(),
            version: Some("3".into()),
            run_id: "r1".into(),
            uri: "models:/d/3".into(),
        }
    }

    #[test]
    fn counters_and_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.observe_request("/invocations", 200, 0.003);
        metrics.observe_request("/invocations", 200, 0.3);
        metrics.observe_request("/invocations", 400, 0.0005);
        metrics.add_scored(10, 2);
        let text = metrics.render(&ServerGauges {
            model: &model(),
            threshold: Some(0.5),
            in_flight: 1,
            window: None,
        });
        assert!(
            text.contains("flow_requests_total{endpoint=\"/invocations\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("flow_requests_total{endpoint=\"/invocations\",status=\"400\"} 1\n"));
        assert!(text.contains(
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("flow_request_duration_seconds_count{endpoint=\"/invocations\"} 3\n"));
        assert!(text.contains("flow_anomaly_rate 0.2\n"));
        assert!(text.contains("flow_model_info{name=\"det\\\"ector\",version=\"3\",run_id=\"r1\",uri=\"models:/d/3\"} 1\n"));
        assert!(text.contains("# TYPE flow_request_duration_seconds histogram\n"));
        assert!(!text.contains("flow_window_"));
    }

    #[test]
    fn window_gauges_per_feature() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 1, 10, 1);
        window.record(&[1.0, 3.0], &[false, true], &[0.25, 0.75]);
        let stats = window.close(4, DateTime::UNIX_EPOCH, &["temp".to_string()], &[]);
        let text = Metrics::default().render(&ServerGauges {
            model: &model(),
            threshold: None,
            in_flight: 0,
            window: Some(&stats),
        });
        assert!(text.contains("flow_window_index 4\n"));
        assert!(text.contains("flow_window_anomaly_rate 0.5\n"));
        assert!(text.contains("flow_window_score{stat=\"mean\"} 2\n"));
        assert!(
            text.contains("flow_window_feature_mean{feature=\"temp\"} 0.5\n"),
            "{text}"
        );
        assert!(text.contains("flow_window_feature_psi{feature=\"temp\"} NaN\n"));
        assert!(!text.contains("flow_window_f1"));
    }

    #[test]
    fn values_and_labels_are_escaped() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(escape_label("a\\b\n\"c\""), "a\\\\b\\n\\\"c\\\"");
    }
}
