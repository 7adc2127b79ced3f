//! Every threshold method applied to one pair of score series, judged against the labels:
//! what `evaluate` logs, prints and saves, kept free of IO so it can be tested directly.

use anyhow::Result;
use serde::Serialize;

use crate::thresholds::epsilon::find_epsilon;
use crate::thresholds::metrics::{evaluate_threshold, ThresholdMetrics};
use crate::thresholds::pot::{pot_eval, PotConfig, PotResult, RootSearch};
use crate::thresholds::search::{best_f1_adjusted, best_f1_raw, grid_search_adjusted};

/// Parameters of the threshold methods.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    pub level: f64,
    pub q: f64,
    pub reg_level: u8,
    pub dynamic_pot: bool,
    pub pot_roots: RootSearch,
    /// The BF-F1-PA grid of ML4ITS's `bf_search`: `bf_steps` thresholds up to `bf_end`.
    pub bf_start: f64,
    pub bf_end: f64,
    pub bf_steps: usize,
}

/// Thresholds from the training scores (POT, epsilon) and test-set searches (best).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub pot: PotResult,
    pub pot_metrics: ThresholdMetrics,
    pub epsilon_metrics: ThresholdMetrics,
    /// BF-F1-PA on the reference grid; `None` without positive labels.
    pub best: Option<ThresholdMetrics>,
    /// The exact best raw F1 over all distinct thresholds.
    pub best_raw: Option<ThresholdMetrics>,
    /// The exact best point-adjusted F1 over all distinct thresholds (>= `best`).
    pub best_adjusted_exact: Option<ThresholdMetrics>,
}

/// Fits POT and epsilon on `train` (POT then sees `test` as its stream), searches the
/// best thresholds on `test`, and judges each against `labels` (one per test score).
pub fn judge(train: &[f64], test: &[f64], labels: &[bool], settings: Settings) -> Result<Report> {
    anyhow::ensure!(
        test.len() == labels.len(),
        "{} test scores but {} labels: they must line up row for row",
        test.len(),
        labels.len()
    );
    let pot = pot_eval(
        train,
        test,
        PotConfig {
            level: settings.level,
            q: settings.q,
            dynamic: settings.dynamic_pot,
            roots: settings.pot_roots,
        },
    )?;
    let epsilon = find_epsilon(train, settings.reg_level)?;
    Ok(Report {
        settings,
        pot_metrics: evaluate_threshold(test, labels, pot.threshold),
        pot,
        epsilon_metrics: evaluate_threshold(test, labels, epsilon),
        best: grid_search_adjusted(
            test,
            labels,
            settings.bf_start,
            settings.bf_end,
            settings.bf_steps,
        )
        .filter(|_| labels.contains(&true)),
        best_raw: best_f1_raw(test, labels),
        best_adjusted_exact: best_f1_adjusted(test, labels),
    })
}

impl Report {
    /// Flat metric names and values, as logged by `evaluate`.
    ///
    /// For `pot` and `epsilon` all figures refer to that method's threshold. For `best`,
    /// `threshold_best` and the `_pa_` figures come from the BF-F1-PA grid (as the
    /// reference reports them) while `f1_best`, `precision_best` and `recall_best` are the
    /// exact raw optimum at `threshold_best_raw`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (name, m) in [
            ("pot", &self.pot_metrics),
            ("epsilon", &self.epsilon_metrics),
        ] {
            push_threshold(&mut out, name, m, m);
        }
        if let (Some(best), Some(raw)) = (&self.best, &self.best_raw) {
            push_threshold(&mut out, "best", raw, best);
            out.push(("threshold_best_raw".into(), raw.threshold));
        }
        if let Some(exact) = &self.best_adjusted_exact {
            out.push(("f1_pa_best_exact".into(), exact.adjusted.f1));
            out.push(("threshold_best_pa_exact".into(), exact.threshold));
        }
        out.push(("pot_level".into(), self.pot.level));
        out
    }
}

fn push_threshold(
    out: &mut Vec<(String, f64)>,
    name: &str,
    raw: &ThresholdMetrics,
    adjusted: &ThresholdMetrics,
) {
    out.push((format!("threshold_{name}"), adjusted.threshold));
    out.push((format!("precision_{name}"), raw.raw.precision));
    out.push((format!("recall_{name}"), raw.raw.recall));
    out.push((format!("f1_{name}"), raw.raw.f1));
    out.push((format!("precision_pa_{name}"), adjusted.adjusted.precision));
    out.push((format!("recall_pa_{name}"), adjusted.adjusted.recall));
    out.push((format!("f1_pa_{name}"), adjusted.adjusted.f1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SplitMix64 as Rng;

    fn settings() -> Settings {
        Settings {
            level: 0.95,
            q: 1e-3,
            reg_level: 1,
            dynamic_pot: false,
            pot_roots: RootSearch::Siffer,
            bf_start: 0.0,
            bf_end: 2.0,
            bf_steps: 100,
        }
    }

    #[test]
    fn judges_every_method_on_a_clear_anomaly() {
        let mut rng = Rng::new(21);
        let train: Vec<f64> = (0..3000).map(|_| 0.1 * rng.next_f64()).collect();
        let mut test: Vec<f64> = (0..1000).map(|_| 0.05 * rng.next_f64()).collect();
        let mut labels = vec![false; 1000];
        for i in 600..640 {
            labels[i] = true;
            if i >= 620 {
                test[i] = 1.0;
            }
        }
        let report = judge(&train, &test, &labels, settings()).unwrap();
        assert_eq!(report.pot_metrics.adjusted.f1, 1.0);
        assert_eq!(report.epsilon_metrics.adjusted.f1, 1.0);
        let best = report.best.unwrap();
        assert_eq!(best.adjusted.f1, 1.0);
        // Raw: the 20 high rows, the 20 low anomalous rows are missed.
        let raw = report.best_raw.unwrap();
        assert_eq!((raw.raw.tp, raw.raw.fp, raw.raw.fn_), (20, 0, 20));
        let metrics = report.metrics();
        let get = |k: &str| metrics.iter().find(|(name, _)| name == k).map(|(_, v)| *v);
        for key in [
            "f1_pa_pot",
            "f1_pa_epsilon",
            "f1_pa_best",
            "f1_best",
            "threshold_epsilon",
            "recall_pot",
        ] {
            assert!(get(key).is_some(), "missing {key}");
        }
        assert_eq!(get("f1_pa_best"), Some(1.0));
        assert!((get("f1_best").unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn without_positive_labels_there_is_no_best() {
        let train: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let report = judge(&train, &[0.1, 0.2], &[false, false], settings()).unwrap();
        assert!(report.best.is_none() && report.best_raw.is_none());
        assert!(!report.metrics().iter().any(|(k, _)| k.ends_with("_best")));
    }

    #[test]
    fn misaligned_labels_are_an_error() {
        let err = judge(&[0.1, 0.2], &[0.1], &[], settings())
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 test scores but 0 labels"), "{err}");
    }
}
