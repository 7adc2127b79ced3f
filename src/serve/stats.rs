//! Descriptive statistics and drift measures for one monitoring window. Pure functions: the
//! window code feeds them exact streaming moments and a reservoir sample.

use flow_steps::data::preprocessor::{bin_index, quantile_sorted};
use flow_steps::data::FeatureStats;

/// Floor for bin shares in PSI, so an empty bin costs a large but finite amount.
pub const PSI_EPSILON: f64 = 1e-4;

/// The MLWatcher-style summary of one quantity over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation, as the training statistics use.
    pub std: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    /// Interquartile range, q75 - q25.
    pub iqr: f64,
}

/// Exact running count, mean, variance (Welford), min and max; non-finite values are skipped
/// so one bad score cannot poison a whole window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.n += 1;
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (value - self.mean);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.mean
        }
    }

    pub fn std(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            (self.m2 / self.n as f64).max(0.0).sqrt()
        }
    }

    pub fn min(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.min
        }
    }

    pub fn max(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.max
        }
    }
}

impl Summary {
    /// Combines exact moments with quantiles from a sorted sample of the same values.
    pub fn from_parts(moments: &Moments, sorted_sample: &[f64]) -> Summary {
        let quantile = |q: f64| {
            if sorted_sample.is_empty() {
                f64::NAN
            } else {
                quantile_sorted(sorted_sample, q)
            }
        };
        let (q25, median, q75) = (quantile(0.25), quantile(0.5), quantile(0.75));
        Summary {
            min: moments.min(),
            max: moments.max(),
            mean: moments.mean(),
            std: moments.std(),
            q25,
            median,
            q75,
            iqr: q75 - q25,
        }
    }

    /// Summary of a plain list of values (non-finite values are ignored).
    pub fn of(values: &[f64]) -> Summary {
        let mut moments = Moments::default();
        values.iter().for_each(|&v| moments.push(v));
        Summary::from_parts(&moments, &sorted_finite(values))
    }

    /// The fields as (name, value) pairs, in a fixed order, for metric keys.
    pub fn fields(&self) -> [(&'static str, f64); 8] {
        [
            ("min", self.min),
            ("max", self.max),
            ("mean", self.mean),
            ("std", self.std),
            ("q25", self.q25),
            ("median", self.median),
            ("q75", self.q75),
            ("iqr", self.iqr),
        ]
    }
}

/// The finite values, sorted ascending.
pub fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Population stability index of live values against the training deciles:
/// sum over bins of (live - train) * ln(live / train), shares floored at [`PSI_EPSILON`].
/// NaN when there is nothing to compare (no finite values, malformed training bins).
pub fn psi(train: &FeatureStats, values: &[f64]) -> f64 {
    let n_bins = train.bin_shares.len();
    if n_bins == 0 || train.bin_edges.len() != n_bins + 1 {
        return f64::NAN;
    }
    let mut counts = vec![0usize; n_bins];
    let mut n = 0usize;
    for &value in values.iter().filter(|v| v.is_finite()) {
        counts[bin_index(&train.bin_edges, value)] += 1;
        n += 1;
    }
    if n == 0 {
        return f64::NAN;
    }
    let live: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
    psi_of_shares(&train.bin_shares, &live)
}

/// PSI between two share vectors over the same bins.
pub fn psi_of_shares(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(PSI_EPSILON), a.max(PSI_EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Kolmogorov-Smirnov statistic sup |F_live - F_train| of a sorted live sample against the
/// training CDF given by evenly spaced quantiles (0%, 1%, ..., 100%), linearly interpolated.
/// Both CDFs are piecewise monotone between the sample points and the quantiles, so checking
/// each of those points from the left and from the right finds the supremum exactly.
pub fn ks(train_quantiles: &[f64], sorted_sample: &[f64]) -> f64 {
    if train_quantiles.len() < 2 || sorted_sample.is_empty() {
        return f64::NAN;
    }
    let n = sorted_sample.len() as f64;
    let live_at = |x: f64| sorted_sample.partition_point(|&s| s <= x) as f64 / n;
    let live_before = |x: f64| sorted_sample.partition_point(|&s| s < x) as f64 / n;
    sorted_sample
        .iter()
        .chain(train_quantiles)
        .filter(|x| x.is_finite())
        .map(|&x| {
            let right = (live_at(x) - train_cdf(train_quantiles, x)).abs();
            let left = (live_before(x) - train_cdf_before(train_quantiles, x)).abs();
            right.max(left)
        })
        .fold(0.0, f64::max)
}

/// The training CDF at `x` (right-continuous), from sorted evenly spaced quantiles.
pub fn train_cdf(quantiles: &[f64], x: f64) -> f64 {
    let last = quantiles.len() - 1;
    if x < quantiles[0] {
        return 0.0;
    }
    if x >= quantiles[last] {
        return 1.0;
    }
    // quantiles[i] <= x < quantiles[i + 1], so the gap is positive.
    let i = quantiles.partition_point(|&q| q <= x) - 1;
    let frac = (x - quantiles[i]) / (quantiles[i + 1] - quantiles[i]);
    (i as f64 + frac) / last as f64
}

/// The training CDF just below `x` (its left limit), which differs from [`train_cdf`] where
/// several quantiles coincide (an atom of the training distribution).
pub fn train_cdf_before(quantiles: &[f64], x: f64) -> f64 {
    let last = quantiles.len() - 1;
    if x <= quantiles[0] {
        return 0.0;
    }
    if x > quantiles[last] {
        return 1.0;
    }
    // quantiles[j - 1] < x <= quantiles[j].
    let j = quantiles.partition_point(|&q| q < x);
    let frac = (x - quantiles[j - 1]) / (quantiles[j] - quantiles[j - 1]);
    ((j - 1) as f64 + frac) / last as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summary_of_known_values() {
        let summary = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN]);
        assert_eq!((summary.min, summary.max), (1.0, 5.0));
        assert!(close(summary.mean, 3.0));
        assert!(close(summary.std, 2.0f64.sqrt()));
        assert_eq!((summary.q25, summary.median, summary.q75), (2.0, 3.0, 4.0));
        assert_eq!(summary.iqr, 2.0);
    }

    #[test]
    fn moments_match_two_pass_formulas() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0)
            .collect();
        let mut moments = Moments::default();
        values.iter().for_each(|&v| moments.push(v));
        let mean = values.iter().sum::<f64>() / 1000.0;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0).sqrt();
        assert!(close(moments.mean(), mean));
        assert!((moments.std() - std).abs() < 1e-9);
        assert_eq!(moments.n, 1000);
        assert!(Moments::default().mean().is_nan());
    }

    #[test]
    fn psi_is_zero_for_the_training_distribution_and_large_when_shifted() {
        let train: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let stats = FeatureStats::of(&train);
        assert!(psi(&stats, &train).abs() < 1e-12);
        let shifted: Vec<f64> = train.iter().map(|v| v + 0.5).collect();
        let drifted = psi(&stats, &shifted);
        assert!(drifted > 1.0, "psi of a half-range shift = {drifted}");
        let slightly: Vec<f64> = train.iter().map(|v| v + 0.01).collect();
        assert!(psi(&stats, &slightly) < 0.05);
        assert!(psi(&stats, &[]).is_nan());
    }

    #[test]
    fn psi_of_shares_matches_hand_computation() {
        let value = psi_of_shares(&[0.5, 0.5], &[0.25, 0.75]);
        let expected = (0.25 - 0.5) * (0.25f64 / 0.5).ln() + (0.75 - 0.5) * (0.75f64 / 0.5).ln();
        assert!(close(value, expected));
        // An empty bin is floored, not infinite.
        assert!(psi_of_shares(&[0.5, 0.5], &[0.0, 1.0]).is_finite());
    }

    #[test]
    fn train_cdf_interpolates_and_handles_atoms() {
        let uniform: Vec<f64> = (0..=100).map(|p| p as f64 / 100.0).collect();
        assert!(close(train_cdf(&uniform, 0.255), 0.255));
        assert_eq!(train_cdf(&uniform, -1.0), 0.0);
        assert_eq!(train_cdf(&uniform, 1.0), 1.0);
        let constant = vec![2.0; 101];
        assert_eq!(train_cdf(&constant, 2.0), 1.0);
        assert_eq!(train_cdf_before(&constant, 2.0), 0.0);
        assert_eq!(train_cdf(&constant, 1.9), 0.0);
    }

    #[test]
    fn ks_is_small_for_the_same_distribution_and_large_for_shifted() {
        let train: Vec<f64> = (0..10_000).map(|i| i as f64 / 10_000.0).collect();
        let stats = FeatureStats::of(&train);
        let same: Vec<f64> = (0..500).map(|i| (i as f64 + 0.5) / 500.0).collect();
        assert!(ks(&stats.quantiles, &same) < 0.01);
        let shifted: Vec<f64> = same.iter().map(|v| v + 0.3).collect();
        assert!((ks(&stats.quantiles, &shifted) - 0.3).abs() < 0.01);
        let far: Vec<f64> = same.iter().map(|v| v + 5.0).collect();
        assert_eq!(ks(&stats.quantiles, &far), 1.0);
        assert!(ks(&stats.quantiles, &[]).is_nan());
    }

    #[test]
    fn ks_sees_a_point_mass_against_a_constant_feature() {
        let constant = vec![0.0; 101];
        assert_eq!(ks(&constant, &[0.0, 0.0, 0.0]), 0.0);
        assert_eq!(ks(&constant, &[0.0, 1.0]), 0.5);
    }
}
