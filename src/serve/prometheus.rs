//! What `GET /metrics` shows, in the Prometheus text exposition format (version 0.0.4), written
//! by the `prometheus-client` crate: request counters and latency histograms kept here, and at
//! each scrape the server's live gauges and the latest closed monitoring window.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::serve::monitor::{FeatureSummary, WindowStats};
use crate::serve::ModelInfo;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Counters shared by all request handlers. Endpoints are a fixed small set (unknown paths
/// are one `other`) and statuses few, so the label families stay tiny.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    rows_scored: Counter,
    anomalies: Counter,
    labels: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

/// Live values that belong to the server rather than to these counters.
#[derive(Debug, Clone)]
pub struct ServerGauges {
    pub model: ModelInfo,
    pub threshold: Option<f64>,
    pub in_flight: usize,
    /// Streaming series held, and evicted since start.
    pub series: usize,
    pub series_evicted: u64,
    pub window: Option<Arc<WindowStats>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<EndpointLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let (rows_scored, anomalies, labels) =
            (Counter::default(), Counter::default(), Counter::default());
        let mut registry = Registry::default();
        registry.register(
            "flow_requests",
            "HTTP requests answered, by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "flow_request_duration_seconds",
            "HTTP request latency, by endpoint",
            latency.clone(),
        );
        registry.register(
            "flow_rows_scored",
            "Rows scored since the server started",
            rows_scored.clone(),
        );
        registry.register(
            "flow_anomalies",
            "Rows flagged as anomalies since the server started",
            anomalies.clone(),
        );
        registry.register(
            "flow_feedback_labels",
            "Feedback labels accepted",
            labels.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            rows_scored,
            anomalies,
            labels,
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn observe_request(&self, endpoint: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, status })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
    }

    pub fn add_scored(&self, rows: u64, anomalies: u64) {
        self.rows_scored.inc_by(rows);
        self.anomalies.inc_by(anomalies);
    }

    pub fn add_labels(&self, labels: u64) {
        self.labels.inc_by(labels);
    }

    pub fn rows_scored(&self) -> u64 {
        self.rows_scored.get()
    }

    /// The whole exposition text: the counters, then the live gauges of this scrape.
    pub fn render(&self, gauges: ServerGauges) -> String {
        let live = LiveGauges {
            gauges,
            rows_scored: self.rows_scored.get(),
            anomalies: self.anomalies.get(),
        };
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(live));
        let mut text = String::new();
        // Writing into a String cannot fail, and every value here encodes.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &scrape);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// One scrape's gauges, encoded as the registry asks.
#[derive(Debug)]
struct LiveGauges {
    gauges: ServerGauges,
    rows_scored: u64,
    anomalies: u64,
}

impl Collector for LiveGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let gauges = &self.gauges;
        let model = &gauges.model;
        let mut info = encoder.encode_descriptor(
            "flow_model",
            "The served model (always 1)",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[
            ("name", model.name.as_str()),
            ("version", model.version.as_deref().unwrap_or("")),
            ("run_id", model.run_id.as_str()),
            ("uri", model.uri.as_str()),
        ])?;
        if let Some(threshold) = gauges.threshold {
            gauge(
                &mut encoder,
                "flow_model_threshold",
                "The bundle's anomaly threshold",
                threshold,
            )?;
        }
        gauge(
            &mut encoder,
            "flow_requests_in_flight",
            "Scoring requests admitted and not yet answered",
            gauges.in_flight as f64,
        )?;
        let rate = match self.rows_scored {
            0 => 0.0,
            rows => self.anomalies as f64 / rows as f64,
        };
        gauge(
            &mut encoder,
            "flow_anomaly_rate",
            "Share of scored rows flagged since the server started",
            rate,
        )?;
        gauge(
            &mut encoder,
            "flow_series",
            "Streaming series held (each with its last window of rows)",
            gauges.series as f64,
        )?;
        let evicted = ConstCounter::new(gauges.series_evicted);
        evicted.encode(encoder.encode_descriptor(
            "flow_series_evicted",
            "Streaming series evicted, least recently used first, to make room",
            None,
            evicted.metric_type(),
        )?)?;
        if let Some(window) = &gauges.window {
            encode_window(&mut encoder, window)?;
        }
        Ok(())
    }
}

/// The latest closed monitoring window as gauges.
fn encode_window(encoder: &mut DescriptorEncoder, window: &WindowStats) -> std::fmt::Result {
    let scalars = [
        (
            "flow_window_index",
            "Index of the latest closed monitoring window",
            window.index as f64,
        ),
        (
            "flow_window_end_timestamp_seconds",
            "When the latest window closed",
            window.end.timestamp_millis() as f64 / 1e3,
        ),
        (
            "flow_window_rows",
            "Rows scored in the latest window",
            window.count as f64,
        ),
        (
            "flow_window_sampled_rows",
            "Rows sampled for the latest window's statistics",
            window.sampled as f64,
        ),
        (
            "flow_window_anomaly_rate",
            "Share of rows flagged in the latest window",
            window.anomaly_rate,
        ),
    ];
    for (name, help, value) in scalars {
        gauge(encoder, name, help, value)?;
    }
    gauge_family(
        encoder,
        "flow_window_score",
        "Anomaly score statistics over the latest window",
        "stat",
        window.score.fields().into_iter(),
    )?;
    type Field = fn(&FeatureSummary) -> f64;
    let per_feature: [(&str, &str, Field); 4] = [
        (
            "flow_window_feature_mean",
            "Mean of each scaled input feature in the latest window",
            |f| f.summary.mean,
        ),
        (
            "flow_window_feature_std",
            "Standard deviation of each scaled input feature",
            |f| f.summary.std,
        ),
        (
            "flow_window_feature_psi",
            "Population stability index of each feature vs training",
            |f| f.psi,
        ),
        (
            "flow_window_feature_ks",
            "Kolmogorov-Smirnov statistic of each feature vs training",
            |f| f.ks,
        ),
    ];
    for (name, help, field) in per_feature {
        let values = window.features.iter().map(|f| (f.name.as_str(), field(f)));
        gauge_family(encoder, name, help, "feature", values)?;
    }
    for (name, value) in [
        ("flow_window_precision", window.precision),
        ("flow_window_recall", window.recall),
        ("flow_window_f1", window.f1),
    ] {
        if let Some(value) = value {
            gauge(
                encoder,
                name,
                "Over the feedback labels received in the latest window",
                value,
            )?;
        }
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One gauge per label value: `name{label="value"} v`.
fn gauge_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, f64)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label_value, value) in values {
        let labels = [(label, label_value)];
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::serve::monitor::WindowAccumulator;

    fn gauges(window: Option<WindowStats>) -> ServerGauges {
        ServerGauges {
            model: ModelInfo {
                name: "det\"ector".into(),
                version: Some("3".into()),
                run_id: "r1".into(),
                uri: "models:/d/3".into(),
            },
            threshold: Some(0.5),
            in_flight: 1,
            series: 2,
            series_evicted: 1,
            window: window.map(Arc::new),
        }
    }

    #[test]
    fn counters_and_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.observe_request("/invocations", 200, 0.003);
        metrics.observe_request("/invocations", 200, 0.3);
        metrics.observe_request("/invocations", 400, 0.0005);
        metrics.add_scored(10, 2);
        let text = metrics.render(gauges(None));
        for line in [
            "flow_requests_total{endpoint=\"/invocations\",status=\"200\"} 2\n",
            "flow_requests_total{endpoint=\"/invocations\",status=\"400\"} 1\n",
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"0.001\"} 1\n",
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"0.005\"} 2\n",
            "flow_request_duration_seconds_bucket{endpoint=\"/invocations\",le=\"+Inf\"} 3\n",
            "flow_request_duration_seconds_count{endpoint=\"/invocations\"} 3\n",
            "# TYPE flow_request_duration_seconds histogram\n",
            "flow_anomaly_rate 0.2\n",
            "flow_rows_scored_total 10\n",
            "flow_series 2.0\n",
            "flow_series_evicted_total 1\n",
            "flow_model_threshold 0.5\n",
            "flow_model_info{name=\"det\\\"ector\",version=\"3\",run_id=\"r1\",uri=\"models:/d/3\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("flow_window_"));
    }

    #[test]
    fn window_gauges_per_feature() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 1, 10, 1);
        window.record(&[1.0, 3.0], &[false, true], &[0.25, 0.75]);
        let stats = window.close(4, DateTime::UNIX_EPOCH, &["te\nmp".to_string()], &[]);
        let text = Metrics::default().render(gauges(Some(stats)));
        for line in [
            "flow_window_index 4.0\n",
            "flow_window_anomaly_rate 0.5\n",
            "flow_window_score{stat=\"mean\"} 2.0\n",
            "flow_window_feature_mean{feature=\"te\\nmp\"} 0.5\n",
            "flow_window_feature_psi{feature=\"te\\nmp\"} NaN\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("flow_window_f1"));
    }
}
