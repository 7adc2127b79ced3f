//! One monitoring window, MLWatcher-style: what was scored between two instants, summarised
//! (score and every scaled input feature), compared with the training data (PSI, KS), and
//! checked against the labels clients sent back. Pure: the caller supplies times and rows.

use chrono::{DateTime, Utc};
use flow_steps::data::FeatureStats;

use crate::serve::reservoir::RowReservoir;
use crate::serve::stats::{ks, psi, sorted_finite, Moments, Summary};

/// The statistics of one closed window, as recorded to the sink and shown on `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    /// 0 for the first recorded window of a server, then 1, 2, ...
    pub index: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Rows scored in the window (exact).
    pub count: u64,
    /// Rows the quantiles, PSI and KS were computed from (at most the buffer size).
    pub sampled: usize,
    /// Rows flagged as anomalies (exact).
    pub anomalies: u64,
    pub anomaly_rate: f64,
    pub score: Summary,
    pub features: Vec<FeatureSummary>,
    /// Feedback labels received in the window; precision, recall and F1 are over them.
    pub labels: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

/// One input feature over a window, in the scaled space of the training statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSummary {
    pub name: String,
    pub summary: Summary,
    /// Population stability index against the training deciles.
    pub psi: f64,
    /// Kolmogorov-Smirnov statistic against the training quantiles.
    pub ks: f64,
}

/// Prediction-vs-label counts for the labels received in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

/// The open window: exact counts and moments for every row, and a reservoir of
/// (score, scaled features) rows for quantiles and drift.
#[derive(Debug, Clone)]
pub struct WindowAccumulator {
    start: DateTime<Utc>,
    n_features: usize,
    count: u64,
    anomalies: u64,
    score_moments: Moments,
    feature_moments: Vec<Moments>,
    /// Rows of width 1 + n_features: the score, then the scaled features.
    sample: RowReservoir,
    confusion: Confusion,
    row_buffer: Vec<f64>,
}

impl WindowStats {
    /// The window as (metric key, value) pairs for the sink: `count`, `anomaly_rate`,
    /// `score.<stat>`, `feature.<name>.<stat>`, `feature.<name>.psi`, `feature.<name>.ks`,
    /// and `precision`/`recall`/`f1` when labels arrived. Non-finite values are left out
    /// (a metric store cannot hold NaN), so an undefined statistic is simply absent.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut metrics = vec![
            ("count".to_string(), self.count as f64),
            ("sampled".to_string(), self.sampled as f64),
            ("anomalies".to_string(), self.anomalies as f64),
            ("anomaly_rate".to_string(), self.anomaly_rate),
        ];
        for (stat, value) in self.score.fields() {
            metrics.push((format!("score.{stat}"), value));
        }
        for feature in &self.features {
            for (stat, value) in feature.summary.fields() {
                metrics.push((format!("feature.{}.{stat}", feature.name), value));
            }
            metrics.push((format!("feature.{}.psi", feature.name), feature.psi));
            metrics.push((format!("feature.{}.ks", feature.name), feature.ks));
        }
        if self.labels > 0 {
            metrics.push(("labels".to_string(), self.labels as f64));
        }
        for (key, value) in [
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
        ] {
            if let Some(value) = value {
                metrics.push((key.to_string(), value));
            }
        }
        metrics.retain(|(_, value)| value.is_finite());
        metrics
    }
}

impl Confusion {
    pub fn add(&mut self, predicted_anomaly: bool, labelled_anomaly: bool) {
        match (predicted_anomaly, labelled_anomaly) {
            (true, true) => self.true_positives += 1,
            (true, false) => self.false_positives += 1,
            (false, true) => self.false_negatives += 1,
            (false, false) => self.true_negatives += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.true_positives + self.false_positives + self.false_negatives + self.true_negatives
    }

    /// Precision, recall and F1; each None when its denominator is empty.
    pub fn scores(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        let precision = ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        );
        let recall = ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        );
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (None, None) => None,
            // One side defined means no true positive (else both would be): F1 is 0.
            _ => Some(0.0),
        };
        (precision, recall, f1)
    }
}

impl WindowAccumulator {
    /// An empty window opened at `start`, sampling at most `max_buffer` rows with `seed`.
    pub fn new(
        start: DateTime<Utc>,
        n_features: usize,
        max_buffer: usize,
        seed: u64,
    ) -> WindowAccumulator {
        WindowAccumulator {
            start,
            n_features,
            count: 0,
            anomalies: 0,
            score_moments: Moments::default(),
            feature_moments: vec![Moments::default(); n_features],
            sample: RowReservoir::new(1 + n_features, max_buffer, seed),
            confusion: Confusion::default(),
            row_buffer: Vec::with_capacity(1 + n_features),
        }
    }

    /// Empties the window and opens it again at `start`, keeping its sample's memory (so a
    /// server's windows reuse two buffers instead of growing fresh ones every interval).
    pub fn reopen(&mut self, start: DateTime<Utc>, seed: u64) {
        self.start = start;
        self.count = 0;
        self.anomalies = 0;
        self.score_moments = Moments::default();
        self.feature_moments.fill(Moments::default());
        self.sample.reset(seed);
        self.confusion = Confusion::default();
    }

    /// Adds scored rows: `scores[i]`, `anomalies[i]` and the scaled features
    /// `scaled[i * n_features..(i + 1) * n_features]`. Mismatched lengths record the scores only
    /// up to the shortest input, never panic.
    pub fn record(&mut self, scores: &[f64], anomalies: &[bool], scaled: &[f32]) {
        let width = self.n_features;
        let n_rows = scores.len().min(anomalies.len());
        let n_rows = scaled
            .len()
            .checked_div(width)
            .map_or(n_rows, |full| n_rows.min(full));
        for row in 0..n_rows {
            let features = &scaled[row * width..(row + 1) * width];
            self.count += 1;
            self.anomalies += u64::from(anomalies[row]);
            self.score_moments.push(scores[row]);
            self.row_buffer.clear();
            self.row_buffer.push(scores[row]);
            for (moments, &value) in self.feature_moments.iter_mut().zip(features) {
                moments.push(value as f64);
                self.row_buffer.push(value as f64);
            }
            self.sample.offer(&self.row_buffer);
        }
    }

    /// Adds one feedback label for a row whose prediction is known.
    pub fn record_label(&mut self, predicted_anomaly: bool, labelled_anomaly: bool) {
        self.confusion.add(predicted_anomaly, labelled_anomaly);
    }

    /// Nothing was scored or labelled: not worth recording.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.confusion.total() == 0
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// Closes the window: summaries, drift against `train_stats` (one per feature, in the
    /// order of `names`; a missing entry gives NaN drift) and feedback scores.
    pub fn close(
        &self,
        index: u64,
        end: DateTime<Utc>,
        names: &[String],
        train_stats: &[FeatureStats],
    ) -> WindowStats {
        let score_sample = sorted_finite(&self.sample.column(0));
        let features = (0..self.n_features)
            .map(|col| {
                let sample = sorted_finite(&self.sample.column(col + 1));
                let (psi, ks) = match train_stats.get(col) {
                    Some(train) => (psi(train, &sample), ks(&train.quantiles, &sample)),
                    None => (f64::NAN, f64::NAN),
                };
                FeatureSummary {
                    name: names.get(col).cloned().unwrap_or_else(|| format!("f{col}")),
                    summary: Summary::from_parts(&self.feature_moments[col], &sample),
                    psi,
                    ks,
                }
            })
            .collect();
        let (precision, recall, f1) = self.confusion.scores();
        WindowStats {
            index,
            start: self.start,
            end,
            count: self.count,
            sampled: self.sample.len(),
            anomalies: self.anomalies,
            anomaly_rate: if self.count > 0 {
                self.anomalies as f64 / self.count as f64
            } else {
                0.0
            },
            score: Summary::from_parts(&self.score_moments, &score_sample),
            features,
            labels: self.confusion.total(),
            precision,
            recall,
            f1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["a".to_string(), "b".to_string()]
    }

    fn uniform_stats() -> FeatureStats {
        FeatureStats::of(&(0..1000).map(|i| i as f64 / 1000.0).collect::<Vec<_>>())
    }

    #[test]
    fn crafted_window_has_known_statistics() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 2, 100, 1);
        // Feature a = 0, 0.25, 0.5, 0.75, 1.0; feature b constant 0.5; scores 1..5.
        let scaled: Vec<f32> = (0..5).flat_map(|i| [i as f32 * 0.25, 0.5]).collect();
        window.record(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[false, false, false, true, true],
            &scaled,
        );
        let stats = window.close(
            3,
            DateTime::UNIX_EPOCH,
            &names(),
            &[uniform_stats(), uniform_stats()],
        );
        assert_eq!(
            (stats.index, stats.count, stats.sampled, stats.anomalies),
            (3, 5, 5, 2)
        );
        assert!((stats.anomaly_rate - 0.4).abs() < 1e-12);
        assert_eq!(
            (stats.score.min, stats.score.median, stats.score.max),
            (1.0, 3.0, 5.0)
        );
        assert_eq!(
            (stats.score.q25, stats.score.q75, stats.score.iqr),
            (2.0, 4.0, 2.0)
        );
        let a = &stats.features[0];
        assert_eq!(a.name, "a");
        assert!((a.summary.mean - 0.5).abs() < 1e-12);
        assert!((a.summary.std - (0.125f64).sqrt()).abs() < 1e-9);
        let b = &stats.features[1];
        assert_eq!((b.summary.std, b.summary.iqr), (0.0, 0.0));
        // A point mass at the median of a uniform training feature: KS = 0.5, PSI large.
        assert!((b.ks - 0.5).abs() < 0.01, "ks {}", b.ks);
        assert!(b.psi > a.psi);
        assert_eq!((stats.labels, stats.precision, stats.f1), (0, None, None));
    }

    #[test]
    fn count_is_exact_while_the_sample_is_bounded() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 1, 50, 9);
        for chunk in 0..100 {
            let scores: Vec<f64> = (0..100).map(|i| (chunk * 100 + i) as f64).collect();
            let scaled: Vec<f32> = scores.iter().map(|&s| s as f32 / 10_000.0).collect();
            window.record(&scores, &[false; 100], &scaled);
        }
        let stats = window.close(0, DateTime::UNIX_EPOCH, &names()[..1], &[uniform_stats()]);
        assert_eq!((stats.count, stats.sampled), (10_000, 50));
        // Exact moments: min and max of all rows, not just the sample.
        assert_eq!((stats.score.min, stats.score.max), (0.0, 9999.0));
        // The sample spans the stream, so the median is near the middle.
        assert!(
            (stats.score.median - 5000.0).abs() < 2000.0,
            "median {}",
            stats.score.median
        );
        // Live feature values follow the training distribution: little drift.
        assert!(stats.features[0].ks < 0.25, "ks {}", stats.features[0].ks);
    }

    #[test]
    fn a_reopened_window_is_a_new_window() {
        let rows = |window: &mut WindowAccumulator, offset: f64| {
            let scores: Vec<f64> = (0..40).map(|i| i as f64 + offset).collect();
            let scaled: Vec<f32> = scores.iter().map(|&s| (s / 100.0) as f32).collect();
            window.record(&scores, &[true; 40], &scaled);
            window.record_label(true, false);
        };
        let mut reused = WindowAccumulator::new(DateTime::UNIX_EPOCH, 1, 10, 1);
        rows(&mut reused, 0.0);
        let later = DateTime::UNIX_EPOCH + chrono::Duration::seconds(60);
        reused.reopen(later, 5);
        let mut fresh = WindowAccumulator::new(later, 1, 10, 5);
        rows(&mut reused, 7.0);
        rows(&mut fresh, 7.0);
        let close = |w: &WindowAccumulator| w.close(2, later, &names()[..1], &[uniform_stats()]);
        assert_eq!(close(&reused), close(&fresh));
    }

    #[test]
    fn feedback_gives_precision_recall_f1() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 0, 10, 1);
        assert!(window.is_empty());
        for (predicted, label) in [
            (true, true),
            (true, true),
            (true, false),
            (false, true),
            (false, false),
        ] {
            window.record_label(predicted, label);
        }
        assert!(!window.is_empty());
        let stats = window.close(0, DateTime::UNIX_EPOCH, &[], &[]);
        assert_eq!(stats.labels, 5);
        let (p, r, f1) = (
            stats.precision.unwrap(),
            stats.recall.unwrap(),
            stats.f1.unwrap(),
        );
        assert!((p - 2.0 / 3.0).abs() < 1e-12 && (r - 2.0 / 3.0).abs() < 1e-12);
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12);
        // Only negatives labelled and predicted: precision and recall undefined, F1 too.
        let mut quiet = Confusion::default();
        quiet.add(false, false);
        assert_eq!(quiet.scores(), (None, None, None));
        let mut missed = Confusion::default();
        missed.add(false, true);
        assert_eq!(missed.scores(), (None, Some(0.0), Some(0.0)));
    }

    #[test]
    fn metrics_flatten_with_stable_keys_and_skip_nan() {
        let mut window = WindowAccumulator::new(DateTime::UNIX_EPOCH, 2, 10, 1);
        window.record(&[0.5, f64::NAN], &[true, false], &[0.1, 0.2, 0.3, 0.4]);
        window.record_label(true, true);
        let metrics = window
            .close(0, DateTime::UNIX_EPOCH, &names(), &[uniform_stats()])
            .metrics();
        let get = |key: &str| metrics.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        assert_eq!(get("count"), Some(2.0));
        assert_eq!(get("anomaly_rate"), Some(0.5));
        assert_eq!(get("score.mean"), Some(0.5));
        assert!(get("feature.a.psi").is_some() && get("feature.a.ks").is_some());
        assert!((get("feature.b.mean").unwrap() - 0.3).abs() < 1e-6);
        // No training statistics for b: its drift is undefined and left out.
        assert_eq!(get("feature.b.psi"), None);
        assert_eq!(
            (get("precision"), get("recall"), get("f1")),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        assert!(metrics.iter().all(|(_, v)| v.is_finite()));
    }
}
