//! Best-F1 threshold searches over the test scores (BF-F1, BF-F1-PA).
//!
//! These use the labels, so they give an upper bound rather than a threshold one could
//! deploy. [`grid_search_adjusted`] is ML4ITS's `bf_search` (a fixed grid, point-adjusted
//! F1), kept for comparable figures; [`best_f1_raw`] and [`best_f1_adjusted`] are exact:
//! they try every distinct threshold in one sorted sweep, O(n log n).

use crate::thresholds::metrics::{evaluate_threshold, segments, ThresholdMetrics};

/// ML4ITS `bf_search`: thresholds `start + i * (end - start) / steps` for i = 1..=steps
/// (accumulated the same way), keeping the first with the highest point-adjusted F1.
/// `None` when `steps` is 0 or there is nothing to score.
pub fn grid_search_adjusted(
    scores: &[f64],
    labels: &[bool],
    start: f64,
    end: f64,
    steps: usize,
) -> Option<ThresholdMetrics> {
    if steps == 0 || scores.is_empty() {
        return None;
    }
    let step = (end - start) / steps as f64;
    let mut threshold = start;
    let mut best: Option<ThresholdMetrics> = None;
    for _ in 0..steps {
        threshold += step;
        let metrics = evaluate_threshold(scores, labels, threshold);
        if best.is_none_or(|b| metrics.adjusted.f1 > b.adjusted.f1) {
            best = Some(metrics);
        }
    }
    best
}

/// The threshold with the highest raw F1 over all distinct thresholds; ties go to the
/// highest threshold. `None` without scores or without any positive label.
pub fn best_f1_raw(scores: &[f64], labels: &[bool]) -> Option<ThresholdMetrics> {
    let events: Vec<Event> = scores
        .iter()
        .zip(labels)
        .map(|(&value, &label)| Event {
            value,
            tp: u64::from(label),
            fp: u64::from(!label),
        })
        .collect();
    best_over_events(scores, labels, events)
}

/// The threshold with the highest point-adjusted F1 over all distinct thresholds.
///
/// Under point adjustment a segment contributes all its rows once its maximum score is
/// above the threshold (row 0 excepted, see [`super::metrics`]), and a normal row is a
/// false positive once its own score is; so one event per segment and per normal row
/// suffices.
pub fn best_f1_adjusted(scores: &[f64], labels: &[bool]) -> Option<ThresholdMetrics> {
    let mut events: Vec<Event> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &label)| !label)
        .map(|(&value, _)| Event {
            value,
            tp: 0,
            fp: 1,
        })
        .collect();
    for segment in segments(labels) {
        let max = scores[segment.clone()]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let len = segment.len() as u64;
        if segment.start == 0 {
            // Row 0 counts only when flagged itself; the rest follows the segment maximum.
            events.push(Event {
                value: max,
                tp: len - 1,
                fp: 0,
            });
            events.push(Event {
                value: scores[0],
                tp: 1,
                fp: 0,
            });
        } else {
            events.push(Event {
                value: max,
                tp: len,
                fp: 0,
            });
        }
    }
    best_over_events(scores, labels, events)
}

/// Something that switches on (adds `tp` true and `fp` false positives) once the
/// threshold drops below `value`.
#[derive(Debug, Clone, Copy)]
struct Event {
    value: f64,
    tp: u64,
    fp: u64,
}

fn best_over_events(
    scores: &[f64],
    labels: &[bool],
    mut events: Vec<Event>,
) -> Option<ThresholdMetrics> {
    let n_positive = labels.iter().filter(|&&l| l).count() as u64;
    if scores.is_empty() || n_positive == 0 {
        return None;
    }
    events.sort_by(|a, b| b.value.total_cmp(&a.value));
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut best_f1 = -1.0;
    let mut best_threshold = f64::INFINITY;
    let mut i = 0;
    while i < events.len() {
        let value = events[i].value;
        while i < events.len() && events[i].value == value {
            tp += events[i].tp;
            fp += events[i].fp;
            i += 1;
        }
        // Threshold between this value and the next lower one: everything >= value is on.
        let threshold = match events.get(i) {
            Some(next) => value - (value - next.value) / 2.0,
            None => value - (value.abs() * 1e-9).max(1e-12),
        };
        let f1 = 2.0 * tp as f64 / (2 * tp + fp + (n_positive - tp)) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            best_threshold = threshold;
        }
    }
    Some(evaluate_threshold(scores, labels, best_threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SplitMix64 as Rng;

    /// Scores rounded to a coarse grid (so ties occur) and labels in runs.
    fn random_case(rng: &mut Rng, n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut labels = Vec::with_capacity(n);
        let mut state = false;
        for _ in 0..n {
            if rng.next_f64() < 0.15 {
                state = !state;
            }
            labels.push(state);
        }
        let scores = labels
            .iter()
            .map(|&l| ((rng.next_f64() + if l { 0.3 } else { 0.0 }) * 20.0).round() / 20.0)
            .collect();
        (scores, labels)
    }

    /// Every midpoint between distinct scores, plus one below and one above them all.
    fn all_thresholds(scores: &[f64]) -> Vec<f64> {
        let mut distinct = scores.to_vec();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let mut out = vec![distinct[0] - 1.0, distinct[distinct.len() - 1] + 1.0];
        out.extend(distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        out
    }

    #[test]
    fn exact_searches_match_brute_force_on_random_data() {
        let mut rng = Rng::new(7);
        for case in 0..200 {
            let n = 5 + case % 60;
            let (scores, labels) = random_case(&mut rng, n);
            if !labels.contains(&true) {
                assert!(best_f1_raw(&scores, &labels).is_none());
                continue;
            }
            let brute: Vec<ThresholdMetrics> = all_thresholds(&scores)
                .into_iter()
                .map(|t| evaluate_threshold(&scores, &labels, t))
                .collect();
            let brute_raw = brute.iter().map(|m| m.raw.f1).fold(0.0, f64::max);
            let brute_adjusted = brute.iter().map(|m| m.adjusted.f1).fold(0.0, f64::max);
            let raw = best_f1_raw(&scores, &labels).unwrap();
            let adjusted = best_f1_adjusted(&scores, &labels).unwrap();
            assert!(
                (raw.raw.f1 - brute_raw).abs() < 1e-12,
                "case {case}: {} vs {brute_raw}",
                raw.raw.f1
            );
            assert!(
                (adjusted.adjusted.f1 - brute_adjusted).abs() < 1e-12,
                "case {case}: {} vs {brute_adjusted}",
                adjusted.adjusted.f1
            );
        }
    }

    #[test]
    fn exact_adjusted_search_handles_a_segment_at_row_zero() {
        // Row 0 is labelled but low; flagging it would also flag rows 3, 4 and 5.
        let scores = [0.1, 0.9, 0.2, 0.3, 0.15, 0.12];
        let labels = [true, true, true, false, false, false];
        let best = best_f1_adjusted(&scores, &labels).unwrap();
        // Best: threshold in (0.3, 0.9): rows 1, 2 adjusted (row 0 is not back-filled).
        assert_eq!(
            (best.adjusted.tp, best.adjusted.fp, best.adjusted.fn_),
            (2, 0, 1)
        );
        assert!(best.threshold > 0.3 && best.threshold < 0.9);
    }

    #[test]
    fn raw_search_finds_the_separating_threshold() {
        let scores = [0.1, 0.2, 0.8, 0.9, 0.3];
        let labels = [false, false, true, true, false];
        let best = best_f1_raw(&scores, &labels).unwrap();
        assert_eq!(best.raw.f1, 1.0);
        assert!((best.threshold - 0.55).abs() < 1e-12);
    }

    #[test]
    fn grid_search_matches_the_reference_grid() {
        let scores = [0.05, 0.5, 1.5, 0.3];
        let labels = [false, true, true, false];
        // Grid 0.5, 1.0, 1.5, 2.0 from start 0: 0.5 misses row 1 (strict >), but the
        // segment is still found through row 2, so the first grid point already wins.
        let best = grid_search_adjusted(&scores, &labels, 0.0, 2.0, 4).unwrap();
        assert!((best.threshold - 0.5).abs() < 1e-12);
        assert_eq!(best.adjusted.f1, 1.0);
        assert_eq!(best.raw.tp, 1);
        assert!(grid_search_adjusted(&scores, &labels, 0.0, 2.0, 0).is_none());
    }

    #[test]
    fn no_positive_labels_give_no_best() {
        assert!(best_f1_adjusted(&[0.1, 0.2], &[false, false]).is_none());
        assert!(best_f1_raw(&[], &[]).is_none());
    }
}
