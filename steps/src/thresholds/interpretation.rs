//! Interpretation accuracy: do the highest per-feature scores point at the features that
//! really caused the anomaly? OmniAnomaly's HitRate@P% on SMD's interpretation labels.

/// The features behind the anomaly at one scored row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowTruth {
    /// Index into the scored rows (input row minus the window).
    pub score_index: usize,
    /// Indices of the true features among the scored features.
    pub features: Vec<usize>,
}

/// HitRate@P%: for each row with a non-empty truth, rank the features by score and take
/// the top floor(P% x |truth|); the row's hit rate is the share of the truth among them.
/// Returns the mean over rows, `None` when no row has a truth. `per_feature` is
/// row-major [n_rows, n_features]; rows beyond it are skipped.
pub fn hit_rate(
    per_feature: &[f64],
    n_features: usize,
    truths: &[RowTruth],
    percent: f64,
) -> Option<f64> {
    if n_features == 0 {
        return None;
    }
    let n_rows = per_feature.len() / n_features;
    let mut total = 0.0;
    let mut n_counted = 0usize;
    for truth in truths {
        if truth.features.is_empty() || truth.score_index >= n_rows {
            continue;
        }
        let row =
            &per_feature[truth.score_index * n_features..(truth.score_index + 1) * n_features];
        let mut ranked: Vec<usize> = (0..n_features).collect();
        ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top =
            ((percent / 100.0 * truth.features.len() as f64).floor() as usize).min(n_features);
        let hits = ranked[..top]
            .iter()
            .filter(|f| truth.features.contains(f))
            .count();
        total += hits as f64 / truth.features.len() as f64;
        n_counted += 1;
    }
    (n_counted > 0).then(|| total / n_counted as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_rate_at_100_and_150_percent() {
        // Row 0 ranks features 0, 3, 2, 1; truth {0, 2}.
        // @100%: top 2 = {0, 3} -> 1/2. @150%: top 3 = {0, 3, 2} -> 2/2.
        // Row 1 ranks 1 first; truth {1}: @100% top 1 -> 1; @150% top floor(1.5) = 1 -> 1.
        let per_feature = [0.9, 0.1, 0.5, 0.7, 0.0, 0.8, 0.2, 0.1];
        let truths = [
            RowTruth {
                score_index: 0,
                features: vec![0, 2],
            },
            RowTruth {
                score_index: 1,
                features: vec![1],
            },
        ];
        assert_eq!(
            hit_rate(&per_feature, 4, &truths, 100.0),
            Some((0.5 + 1.0) / 2.0)
        );
        assert_eq!(hit_rate(&per_feature, 4, &truths, 150.0), Some(1.0));
    }

    #[test]
    fn rows_without_truth_or_out_of_range_are_skipped() {
        let truths = [
            RowTruth {
                score_index: 0,
                features: vec![],
            },
            RowTruth {
                score_index: 5,
                features: vec![0],
            },
        ];
        assert_eq!(hit_rate(&[1.0, 2.0], 2, &truths, 100.0), None);
    }

    #[test]
    fn top_count_is_capped_at_the_feature_count() {
        let truths = [RowTruth {
            score_index: 0,
            features: vec![0, 1],
        }];
        assert_eq!(hit_rate(&[0.1, 0.2], 2, &truths, 300.0), Some(1.0));
    }
}
