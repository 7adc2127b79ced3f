//! `segment_features.csv`: for every true anomaly segment (in `segments.csv`'s order), the
//! features that score highest over it, with their actual, forecast and reconstructed
//! values across the segment and some rows of context on each side. It is the data behind
//! the dashboard's segment picker, which draws the three against each other.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::bundle::Scores;
use crate::evaluate::files::write_table;
use crate::thresholds::metrics::segments;

/// Features written per segment, the highest-scoring first.
pub const FEATURES_PER_SEGMENT: usize = 3;

/// `segment,feature,row,actual,forecast,reconstruction`, one line per (segment, feature,
/// row). `per_feature` ranks the features ([n_scored, n_target], row-major); `scores`
/// holds the values; rows are input rows (`window` + scored index), as in `scores.csv`.
pub fn write_segment_features_csv(
    path: &Path,
    labels: &[bool],
    per_feature: &[f64],
    scores: &Scores,
    columns: &[String],
    target_dims: &[usize],
    window: usize,
) -> Result<()> {
    let n_target = scores.n_target.max(1);
    let n_scored = labels.len().min(scores.actual.len() / n_target);
    let value = |values: &[f32], index: usize| -> String {
        let value = values.get(index).copied().unwrap_or(f32::NAN);
        if value.is_finite() {
            value.to_string()
        } else {
            "NaN".to_string()
        }
    };
    write_table(
        path,
        "segment,feature,row,actual,forecast,reconstruction",
        |out| {
            for (index, segment) in segments(&labels[..n_scored]).into_iter().enumerate() {
                let mut ranked: Vec<(usize, f64)> = (0..n_target)
                    .map(|feature| {
                        let sum: f64 = segment
                            .clone()
                            .map(|row| {
                                per_feature
                                    .get(row * n_target + feature)
                                    .copied()
                                    .unwrap_or(0.0)
                            })
                            .sum();
                        (feature, sum / segment.len() as f64)
                    })
                    .collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                // Enough rows around the segment to see it begin and end.
                let context = (2 * window).max(segment.len() / 2).clamp(20, 500);
                let lo = segment.start.saturating_sub(context);
                let hi = (segment.end + context).min(n_scored);
                for &(feature, _) in ranked.iter().take(FEATURES_PER_SEGMENT) {
                    let name = target_dims
                        .get(feature)
                        .and_then(|&dim| columns.get(dim))
                        .cloned()
                        .unwrap_or_else(|| format!("feature {feature}"))
                        .replace([',', '"', '\n'], " ");
                    for row in lo..hi {
                        let at = row * n_target + feature;
                        writeln!(
                            out,
                            "{index},{name},{},{},{},{}",
                            row + window,
                            value(&scores.actual, at),
                            value(&scores.forecast, at),
                            value(&scores.reconstruction, at)
                        )?;
                    }
                }
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_segment_lists_its_strongest_features_with_context() {
        // 30 scored rows, 2 features; rows 10..12 anomalous, where feature 1 scores high.
        let n_scored = 30;
        let labels: Vec<bool> = (0..n_scored).map(|row| (10..12).contains(&row)).collect();
        let per_feature: Vec<f64> = (0..n_scored)
            .flat_map(|row| {
                if (10..12).contains(&row) {
                    [0.1, 0.9]
                } else {
                    [0.1, 0.1]
                }
            })
            .collect();
        let values: Vec<f32> = (0..n_scored * 2).map(|i| i as f32).collect();
        let scores = Scores {
            first_row: 5,
            n_target: 2,
            total: vec![0.0; n_scored],
            per_feature: per_feature.iter().map(|&v| v as f32).collect(),
            forecast: values.clone(),
            reconstruction: vec![f32::NAN; n_scored * 2],
            actual: values,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment_features.csv");
        let columns = ["a".to_string(), "b".to_string()];
        write_segment_features_csv(&path, &labels, &per_feature, &scores, &columns, &[0, 1], 5)
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "segment,feature,row,actual,forecast,reconstruction"
        );
        // Context is clamped to 20 rows: all 30 scored rows, strongest feature first.
        assert_eq!(lines[1], "0,b,5,1,1,NaN");
        assert_eq!(lines.len(), 1 + 2 * n_scored);
        assert!(lines[n_scored + 1].starts_with("0,a,5,"));
    }
}
