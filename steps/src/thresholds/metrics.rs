//! Detection metrics: precision, recall and F1 point-wise, raw and point-adjusted.
//!
//! Point adjustment follows OmniAnomaly's `adjust_predicts` as ML4ITS uses it: a true
//! anomaly segment counts as wholly detected once any of its points is flagged. The
//! reference's back-fill loop stops before index 0 (`range(i, 0, -1)`), so a segment
//! starting at row 0 does not get row 0 back-filled; we keep that quirk so our
//! point-adjusted figures are comparable with the published ones.

use std::ops::Range;

use serde::Serialize;

/// Counts and rates of one set of predictions against the labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

/// One threshold judged both ways.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdMetrics {
    pub threshold: f64,
    pub raw: Detection,
    pub adjusted: Detection,
    /// Mean number of rows between a segment's start and its first alarm, over detected
    /// segments (the reference's `latency`).
    pub latency: f64,
}

/// Rows whose score is strictly above `threshold` (the reference's `score > threshold`).
pub fn predict_above(scores: &[f64], threshold: f64) -> Vec<bool> {
    scores.iter().map(|&s| s > threshold).collect()
}

/// Maximal runs of `true` in `labels`, as half-open ranges.
pub fn segments(labels: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &label) in labels.iter().enumerate() {
        match (label, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..labels.len());
    }
    out
}

/// Point-adjusted predictions and the mean detection latency (in rows).
pub fn point_adjust(predicted: &[bool], labels: &[bool]) -> (Vec<bool>, f64) {
    let mut adjusted = predicted.to_vec();
    let mut in_detected_segment = false;
    let mut n_detected = 0u64;
    let mut backfilled = 0u64;
    for i in 0..adjusted.len() {
        if labels[i] && adjusted[i] && !in_detected_segment {
            in_detected_segment = true;
            n_detected += 1;
            // Like the reference: walk back to the segment start, never touching row 0.
            for j in (1..=i).rev() {
                if !labels[j] {
                    break;
                }
                if !adjusted[j] {
                    adjusted[j] = true;
                    backfilled += 1;
                }
            }
        } else if !labels[i] {
            in_detected_segment = false;
        }
        if in_detected_segment {
            adjusted[i] = true;
        }
    }
    // The reference divides by (count + 1e-4) so that no segment gives 0, not NaN.
    (adjusted, backfilled as f64 / (n_detected as f64 + 1e-4))
}

/// Confusion counts and precision/recall/F1 (0 where a ratio is 0/0).
pub fn detection(predicted: &[bool], labels: &[bool]) -> Detection {
    let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (&p, &l) in predicted.iter().zip(labels) {
        match (p, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    Detection::from_counts(tp, fp, fn_, tn)
}

/// Raw and point-adjusted metrics of `score > threshold`.
pub fn evaluate_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> ThresholdMetrics {
    let predicted = predict_above(scores, threshold);
    let (adjusted_pred, latency) = point_adjust(&predicted, labels);
    ThresholdMetrics {
        threshold,
        raw: detection(&predicted, labels),
        adjusted: detection(&adjusted_pred, labels),
        latency,
    }
}

impl Detection {
    pub fn from_counts(tp: u64, fp: u64, fn_: u64, tn: u64) -> Detection {
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Detection {
            precision,
            recall,
            f1,
            tp,
            fp,
            fn_,
            tn,
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bools(bits: &str) -> Vec<bool> {
        bits.chars().map(|c| c == '1').collect()
    }

    #[test]
    fn segments_are_maximal_runs() {
        assert_eq!(segments(&bools("0110001")), vec![1..3, 6..7]);
        assert_eq!(segments(&bools("111")), vec![0..3]);
        assert!(segments(&bools("000")).is_empty());
    }

    #[test]
    fn one_hit_marks_the_whole_segment() {
        let labels = bools("0011110011");
        let pred = bools("0000100000");
        let (adjusted, latency) = point_adjust(&pred, &labels);
        assert_eq!(adjusted, bools("0011110000"));
        // Two rows (2 and 3) were back-filled for the one detected segment.
        assert!((latency - 2.0 / 1.0001).abs() < 1e-9);
    }

    #[test]
    fn false_positives_are_kept_and_undetected_segments_stay_missed() {
        let labels = bools("0110000110");
        let pred = bools("1000010000");
        let (adjusted, _) = point_adjust(&pred, &labels);
        assert_eq!(adjusted, pred);
    }

    #[test]
    fn adjacent_segments_are_judged_separately() {
        // Two segments separated by one normal row: a hit in the first must not spill.
        let labels = bools("11101110");
        let pred = bools("01000000");
        let (adjusted, _) = point_adjust(&pred, &labels);
        assert_eq!(adjusted, bools("01100000"));
    }

    #[test]
    fn segment_at_row_zero_is_not_backfilled_like_the_reference() {
        let labels = bools("1110");
        let pred = bools("0010");
        let (adjusted, _) = point_adjust(&pred, &labels);
        assert_eq!(adjusted, bools("0110"));
    }

    #[test]
    fn detection_counts_and_rates() {
        let labels = bools("0011110011");
        let pred = bools("1000110010");
        let d = detection(&pred, &labels);
        assert_eq!((d.tp, d.fp, d.fn_, d.tn), (3, 1, 3, 3));
        assert!((d.precision - 0.75).abs() < 1e-12);
        assert!((d.recall - 0.5).abs() < 1e-12);
        assert!((d.f1 - 0.6).abs() < 1e-12);
    }

    #[test]
    fn no_predictions_give_zero_not_nan() {
        let d = detection(&bools("000"), &bools("010"));
        assert_eq!((d.precision, d.recall, d.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn evaluate_threshold_is_strict_and_adjusts() {
        let scores = [0.1, 0.5, 0.2, 0.9, 0.1];
        let labels = bools("01110");
        let m = evaluate_threshold(&scores, &labels, 0.5);
        // Only 0.9 is strictly above 0.5.
        assert_eq!(m.raw.tp, 1);
        assert_eq!(m.adjusted.tp, 3);
        assert_eq!(m.adjusted.fp, 0);
        assert!((m.adjusted.f1 - 1.0).abs() < 1e-12);
    }
}
