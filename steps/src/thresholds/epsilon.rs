//! Non-parametric dynamic error thresholding (Hundman et al., "Detecting Spacecraft
//! Anomalies Using LSTMs and Nonparametric Dynamic Thresholding", KDD 2018), as
//! telemanom's and ML4ITS's `find_epsilon`.
//!
//! For z = 2.5, 3.0, ..., 11.5, epsilon = mean + z std. The rows at or above epsilon,
//! widened by 49 rows either side, are the candidate anomalies; epsilon is good when
//! removing the scores at or above it shrinks the mean and the standard deviation a lot
//! while flagging few rows. ML4ITS fits it on the training scores.

use anyhow::{bail, Result};

/// Rows either side of an exceedance that join its candidate anomaly (telemanom's buffer).
const BUFFER: usize = 49;

/// The epsilon with the best score; the maximum score when no z qualifies.
///
/// `reg_level` 0, 1 or 2 divides the score by 1, the number of candidate rows or its
/// square: higher levels prefer fewer flagged rows. Ties go to the larger z, like the
/// reference (`score >= max_score`).
pub fn find_epsilon(errors: &[f64], reg_level: u8) -> Result<f64> {
    if errors.is_empty() {
        bail!("epsilon threshold needs scores, got none");
    }
    if reg_level > 2 {
        bail!("`reg-level` must be 0, 1 or 2, got {reg_level}");
    }
    if let Some(bad) = errors.iter().find(|v| !v.is_finite()) {
        bail!("epsilon threshold needs finite scores, found {bad}");
    }
    let n = errors.len();
    let (mean, std) = mean_std(errors);
    let mut best: Option<f64> = None;
    let mut max_score = -10_000_000.0;
    for step in 0..19 {
        let z = 2.5 + 0.5 * step as f64;
        let epsilon = mean + std * z;
        let n_flagged = buffered_count(errors, epsilon);
        if n_flagged == 0 {
            continue;
        }
        let below: Vec<f64> = errors.iter().copied().filter(|&e| e < epsilon).collect();
        if below.is_empty() {
            continue;
        }
        let (below_mean, below_std) = mean_std(&below);
        let mean_drop = (mean - below_mean) / mean;
        let std_drop = (std - below_std) / std;
        let denominator = match reg_level {
            0 => 1.0,
            1 => n_flagged as f64,
            _ => (n_flagged as f64).powi(2),
        };
        let score = (mean_drop + std_drop) / denominator;
        if score >= max_score && (n_flagged as f64) < n as f64 * 0.5 {
            max_score = score;
            best = Some(epsilon);
        }
    }
    Ok(best.unwrap_or_else(|| errors.iter().copied().fold(f64::NEG_INFINITY, f64::max)))
}

/// Number of distinct rows within `BUFFER` of a score >= `epsilon`.
fn buffered_count(errors: &[f64], epsilon: f64) -> usize {
    let n = errors.len();
    // Difference array over the covered intervals.
    let mut cover = vec![0i64; n + 1];
    for (i, _) in errors.iter().enumerate().filter(|(_, &e)| e >= epsilon) {
        cover[i.saturating_sub(BUFFER)] += 1;
        cover[(i + BUFFER + 1).min(n)] -= 1;
    }
    let mut depth = 0;
    cover[..n]
        .iter()
        .filter(|&&d| {
            depth += d;
            depth > 0
        })
        .count()
}

/// Mean and population standard deviation (numpy's default).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SplitMix64 as Rng;

    #[test]
    fn buffer_covers_49_rows_each_side_and_merges_overlaps() {
        let mut errors = vec![0.0; 300];
        errors[100] = 1.0;
        assert_eq!(buffered_count(&errors, 1.0), 99);
        errors[120] = 1.0; // overlaps: rows 51..=169
        assert_eq!(buffered_count(&errors, 1.0), 119);
        errors[0] = 1.0; // clipped at the start: rows 0..=49
        assert_eq!(buffered_count(&errors, 1.0), 119 + 50);
        errors[299] = 1.0; // clipped at the end: rows 250..=299
        assert_eq!(buffered_count(&errors, 1.0), 119 + 50 + 50);
    }

    #[test]
    fn one_obvious_spike_is_separated() {
        let mut rng = Rng::new(11);
        let mut errors: Vec<f64> = (0..2000).map(|_| 0.1 + 0.01 * rng.next_f64()).collect();
        errors[1500] = 5.0;
        let epsilon = find_epsilon(&errors, 0).unwrap();
        let normal_max = errors
            .iter()
            .copied()
            .filter(|&e| e < 1.0)
            .fold(0.0, f64::max);
        assert!(epsilon > normal_max && epsilon <= 5.0, "{epsilon}");
        // Same with the regularised scores: the one spike is still the only exceedance.
        for reg_level in [1, 2] {
            let eps = find_epsilon(&errors, reg_level).unwrap();
            assert!(eps > normal_max && eps <= 5.0, "reg {reg_level}: {eps}");
        }
    }

    #[test]
    fn ties_go_to_the_largest_z() {
        // With one spike every z up to the spike's gives the same score: the largest wins.
        let mut errors = vec![0.0; 1000];
        errors[500] = 1.0;
        let (mean, std) = mean_std(&errors);
        let z_max = (0..19)
            .map(|s| 2.5 + 0.5 * s as f64)
            .filter(|z| mean + std * z <= 1.0)
            .fold(0.0, f64::max);
        assert_eq!(find_epsilon(&errors, 0).unwrap(), mean + std * z_max);
    }

    #[test]
    fn flat_scores_fall_back_to_the_maximum() {
        assert_eq!(find_epsilon(&[0.3; 10], 1).unwrap(), 0.3);
        // Too short for the buffer: the spike's candidate covers the whole series.
        let mut short = vec![0.0; 9];
        short.push(1.0);
        assert_eq!(find_epsilon(&short, 0).unwrap(), 1.0);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(find_epsilon(&[], 0).is_err());
        assert!(find_epsilon(&[1.0], 3)
            .unwrap_err()
            .to_string()
            .contains("`reg-level`"));
        assert!(find_epsilon(&[f64::NAN, 1.0], 0).is_err());
    }
}
