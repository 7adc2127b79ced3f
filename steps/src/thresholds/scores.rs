//! Post-processing of anomaly scores before thresholding, as ML4ITS's `Predictor` does it.
//!
//! - optional robust per-feature scaling, (s - median) / (1 + IQR), before the row mean;
//! - for SMAP and MSL, whose channels are concatenated into one series, the windows that
//!   straddle two channels cannot be predicted: the reference zeroes the scores around each
//!   channel boundary and min-max normalises every channel's scores on its own
//!   (`adjust_anomaly_scores` in utils.py).

use crate::data::preprocessor::quantile_sorted;

/// Scores this many rows either side of a channel boundary are zeroed.
const BOUNDARY_BUFFER: usize = 19;

/// Scales each feature's scores (row-major [n_rows, n_features]) to
/// (s - median) / (1 + IQR), with numpy's linear percentiles.
pub fn robust_scale(per_feature: &mut [f64], n_features: usize) {
    if n_features == 0 || per_feature.is_empty() {
        return;
    }
    let n_rows = per_feature.len() / n_features;
    for feature in 0..n_features {
        let mut column: Vec<f64> = (0..n_rows)
            .map(|row| per_feature[row * n_features + feature])
            .collect();
        column.sort_by(f64::total_cmp);
        let median = quantile_sorted(&column, 0.5);
        let iqr = quantile_sorted(&column, 0.75) - quantile_sorted(&column, 0.25);
        for row in 0..n_rows {
            let value = &mut per_feature[row * n_features + feature];
            *value = (*value - median) / (1.0 + iqr);
        }
    }
}

/// The row score: the mean over features of row-major [n_rows, n_features] scores.
pub fn row_means(per_feature: &[f64], n_features: usize) -> Vec<f64> {
    if n_features == 0 {
        return Vec::new();
    }
    per_feature
        .chunks(n_features)
        .map(|row| row.iter().sum::<f64>() / n_features as f64)
        .collect()
}

/// ML4ITS `adjust_anomaly_scores` for a series concatenated from parts of `part_rows`
/// input rows each, scored from row `window` on (score k belongs to row k + window).
///
/// Zeroes the scores within 19 of each boundary, then min-max normalises each part's
/// scores; like the reference, the ranges are inclusive at both ends, so the score at a
/// boundary is normalised with both neighbours. A constant part becomes 0 (the reference
/// would produce NaN).
pub fn normalize_parts(scores: &mut [f64], part_rows: &[usize], window: usize) {
    let len = scores.len() as i64;
    let mut ends = Vec::with_capacity(part_rows.len());
    let mut cumulative = 0i64;
    for &rows in part_rows {
        cumulative += rows as i64;
        ends.push(cumulative - window as i64);
    }
    for &boundary in &ends[..ends.len().saturating_sub(1)] {
        let lo = (boundary - BOUNDARY_BUFFER as i64).max(0);
        let hi = (boundary + BOUNDARY_BUFFER as i64).min(len - 1);
        for i in lo..=hi {
            scores[i as usize] = 0.0;
        }
    }
    let mut start = 0i64;
    for &end in &ends {
        let lo = start.clamp(0, len) as usize;
        let hi = (end + 1).clamp(0, len) as usize;
        start = end;
        if lo >= hi {
            continue;
        }
        let part = &mut scores[lo..hi];
        let min = part.iter().copied().fold(f64::INFINITY, f64::min);
        let max = part.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for value in part.iter_mut() {
            *value = if max > min {
                (*value - min) / (max - min)
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_scale_uses_median_and_iqr_per_feature() {
        // Feature 0: 1, 2, 3, 4, 5 -> median 3, IQR 4 - 2 = 2. Feature 1 is constant.
        let mut scores = vec![1.0, 7.0, 2.0, 7.0, 3.0, 7.0, 4.0, 7.0, 5.0, 7.0];
        robust_scale(&mut scores, 2);
        let feature0: Vec<f64> = scores.iter().step_by(2).copied().collect();
        assert_eq!(
            feature0,
            vec![-2.0 / 3.0, -1.0 / 3.0, 0.0, 1.0 / 3.0, 2.0 / 3.0]
        );
        assert!(scores.iter().skip(1).step_by(2).all(|&v| v == 0.0));
    }

    #[test]
    fn row_means_average_features() {
        assert_eq!(row_means(&[1.0, 3.0, 2.0, 2.0], 2), vec![2.0, 2.0]);
    }

    #[test]
    fn parts_are_zeroed_at_boundaries_and_normalised_separately() {
        // Two parts of 60 and 50 rows, window 10: 100 scores, boundary at score 50.
        let mut scores: Vec<f64> = (0..100)
            .map(|i| {
                if i < 50 {
                    1.0 + i as f64
                } else {
                    1000.0 + i as f64
                }
            })
            .collect();
        normalize_parts(&mut scores, &[60, 50], 10);
        assert!(scores[31..=69].iter().all(|&v| v == 0.0));
        // Part 1 is scores 0..=50: min 0 (zeroed), max 31 (score 30 = 1 + 30).
        assert_eq!(scores[0], 1.0 / 31.0);
        assert_eq!(scores[30], 1.0);
        // Part 2 is scores 50..100: min 0, max 1099.
        assert_eq!(scores[99], 1.0);
        assert_eq!(scores[70], 1070.0 / 1099.0);
    }

    #[test]
    fn a_single_part_is_just_min_max_normalised() {
        let mut scores = vec![2.0, 4.0, 3.0];
        normalize_parts(&mut scores, &[13], 10);
        assert_eq!(scores, vec![0.0, 1.0, 0.5]);
        let mut flat = vec![2.0, 2.0];
        normalize_parts(&mut flat, &[12], 10);
        assert_eq!(flat, vec![0.0, 0.0]);
    }
}
