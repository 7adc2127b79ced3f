//! The fitted preprocessor: scaler statistics from the training split, NaN handling,
//! target dimensions and window. Saved by `process`, copied into the model bundle, and
//! applied again to raw rows at predict and serving time.

use serde::{Deserialize, Serialize};

/// How features are scaled; statistics always come from the training split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScalerKind {
    /// (x - min) / (max - min); a constant column maps to 0.
    Minmax,
    /// (x - mean) / std; a constant column maps to 0.
    Standard,
    /// Values pass through unchanged.
    None,
}

/// Training-set statistics of one input feature, after scaling. Serving compares live
/// rows against these to measure drift (PSI over `bin_edges`, KS against the quantiles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub std: f64,
    /// Quantiles at 0, 0.01, 0.02, ..., 1 (101 values): an empirical CDF for KS.
    pub quantiles: Vec<f64>,
    /// Decile edges (11 values) and the share of training rows in each of the 10 bins, for PSI.
    pub bin_edges: Vec<f64>,
    pub bin_shares: Vec<f64>,
}

/// Everything needed to turn raw rows into model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub format_version: u32,
    pub scaler: ScalerKind,
    /// Input column names, in order; serving checks requests against them.
    pub columns: Vec<String>,
    /// Per-column offset and divisor: scaled = (raw - offset) / scale.
    pub offset: Vec<f64>,
    pub scale: Vec<f64>,
    /// Value that replaces NaN in raw input, before scaling.
    pub nan_fill: f64,
    /// Indices of the columns the model forecasts, reconstructs and scores.
    pub target_dims: Vec<usize>,
    /// Sliding-window length W.
    pub window: usize,
    /// Per-column statistics of the scaled training data.
    pub train_stats: Vec<FeatureStats>,
}

impl Preprocessor {
    pub const FORMAT_VERSION: u32 = 1;

    /// Fits scaler statistics on row-major training data `train` ([n_rows, columns.len()]).
    pub fn fit(
        train: &[f64],
        columns: Vec<String>,
        scaler: ScalerKind,
        nan_fill: f64,
        target_dims: Vec<usize>,
        window: usize,
    ) -> Preprocessor {
        let n_cols = columns.len().max(1);
        let n_rows = train.len() / n_cols;
        let mut offset = vec![0.0; columns.len()];
        let mut scale = vec![1.0; columns.len()];
        for col in 0..columns.len() {
            let values = (0..n_rows).map(|row| fill(train[row * n_cols + col], nan_fill));
            match scaler {
                ScalerKind::Minmax => {
                    let (lo, hi) = values
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                            (lo.min(v), hi.max(v))
                        });
                    if lo.is_finite() {
                        offset[col] = lo;
                        scale[col] = if hi > lo { hi - lo } else { 1.0 };
                    }
                }
                ScalerKind::Standard => {
                    let values: Vec<f64> = values.collect();
                    if !values.is_empty() {
                        let mean = values.iter().sum::<f64>() / values.len() as f64;
                        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                            / values.len() as f64;
                        offset[col] = mean;
                        scale[col] = if var > 0.0 { var.sqrt() } else { 1.0 };
                    }
                }
                ScalerKind::None => {}
            }
        }
        let mut preprocessor = Preprocessor {
            format_version: Self::FORMAT_VERSION,
            scaler,
            columns,
            offset,
            scale,
            nan_fill,
            target_dims,
            window,
            train_stats: Vec::new(),
        };
        let scaled = preprocessor.transform(train);
        preprocessor.train_stats = (0..n_cols.min(preprocessor.columns.len()))
            .map(|col| {
                let column: Vec<f64> = (0..n_rows)
                    .map(|row| scaled[row * n_cols + col] as f64)
                    .collect();
                FeatureStats::of(&column)
            })
            .collect();
        preprocessor
    }

    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// Scales row-major raw data ([n_rows, n_features]) into model input.
    pub fn transform(&self, raw: &[f64]) -> Vec<f32> {
        let n_cols = self.columns.len().max(1);
        raw.iter()
            .enumerate()
            .map(|(i, &v)| {
                let col = i % n_cols;
                ((fill(v, self.nan_fill) - self.offset[col]) / self.scale[col]) as f32
            })
            .collect()
    }
}

impl FeatureStats {
    /// Statistics of one column of values.
    pub fn of(values: &[f64]) -> FeatureStats {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return FeatureStats {
                min: 0.0,
                max: 0.0,
                mean: 0.0,
                std: 0.0,
                quantiles: vec![0.0; 101],
                bin_edges: vec![0.0; 11],
                bin_shares: vec![0.1; 10],
            };
        }
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let std = (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        let quantiles: Vec<f64> = (0..=100)
            .map(|p| quantile_sorted(&sorted, p as f64 / 100.0))
            .collect();
        let bin_edges: Vec<f64> = (0..=10).map(|d| quantiles[d * 10]).collect();
        let mut counts = [0usize; 10];
        for &v in &sorted {
            counts[bin_index(&bin_edges, v)] += 1;
        }
        FeatureStats {
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean,
            std,
            quantiles,
            bin_edges,
            bin_shares: counts.iter().map(|&c| c as f64 / n).collect(),
        }
    }
}

/// The PSI bin (0..10) a value falls into, given 11 decile edges; outside values clamp.
pub fn bin_index(edges: &[f64], value: f64) -> usize {
    let inner = &edges[1..edges.len() - 1];
    inner
        .partition_point(|&edge| edge < value)
        .min(edges.len() - 2)
}

/// Linear-interpolated quantile of already sorted, non-empty values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn fill(value: f64, nan_fill: f64) -> f64 {
    if value.is_nan() {
        nan_fill
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_uses_train_statistics_and_allows_out_of_range() {
        let train = [0.0, 10.0, 2.0, 10.0, 4.0, 10.0];
        let p = Preprocessor::fit(
            &train,
            vec!["a".into(), "b".into()],
            ScalerKind::Minmax,
            0.0,
            vec![0],
            2,
        );
        assert_eq!(p.transform(&[2.0, 10.0]), vec![0.5, 0.0]);
        assert_eq!(p.transform(&[8.0, f64::NAN]), vec![2.0, -10.0]);
    }

    #[test]
    fn standard_scaler_centres_and_scales() {
        let train = [1.0, 3.0];
        let p = Preprocessor::fit(
            &train,
            vec!["a".into()],
            ScalerKind::Standard,
            0.0,
            vec![0],
            1,
        );
        assert_eq!(p.transform(&[2.0, 3.0]), vec![0.0, 1.0]);
    }

    #[test]
    fn stats_bins_cover_all_rows() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let stats = FeatureStats::of(&values);
        assert_eq!(stats.quantiles.len(), 101);
        assert!((stats.bin_shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(stats.bin_shares.iter().all(|&s| (s - 0.1).abs() < 0.002));
    }
}
