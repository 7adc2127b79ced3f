//! Degenerate parts of a concatenated series, and which training rows calibrate the
//! thresholds.
//!
//! SMAP and MSL concatenate channels (parts), and the reference normalises each part's
//! scores to [0, 1] on its own, after zeroing the rows around each boundary
//! (`thresholds::scores::normalize_parts`). Some channels hold one row for long stretches:
//! every window inside such a stretch is the same input, so every model gives those rows
//! one and the same score, and min-max normalisation puts that single value wherever the
//! part's extremes happen to fall, often at 1.0 (the part's minimum is a zeroed boundary
//! row). On full SMAP, D-13 (1,490 identical rows) put ~1,450 training scores at exactly 1.0:
//! they filled POT's tail and pushed the fitted threshold above every test score (issue 19).
//!
//! Two kinds of degenerate part are named (a `warning:` line, `summary.json`):
//! - `constant score`: at least half of the part's training scores (over the rows whose
//!   window lies inside it) share one value. By default these rows are left out of the
//!   POT and epsilon fits; their test scores are normalised and judged like any other
//!   part's. On full SMAP: B-1, D-8, D-9, D-12, D-13, G-7, R-1 (85-100% identical windows,
//!   G-7 56%); on MSL none (D-14 has the most identical windows, 27%), so MSL's figures do not
//!   move.
//! - `constant target`: every target column holds one value over the part's training rows
//!   (11 SMAP and 5 MSL channels). The model learns nothing there, but unless their scores
//!   are constant too these rows are ordinary low scores: leaving MSL's five out of the fits
//!   would lower the reference's published POT F1 from 0.9137 to 0.8928 and epsilon's from
//!   0.9432 to 0.9317 (its own `pot_eval`/`epsilon_eval` on its published scores). They are
//!   named, and fitted on.
//!
//! `--constant-parts keep` fits on every row, as the reference does.

use std::ops::Range;

use serde::Serialize;

use crate::data::meta::{Meta, Part};

/// What parts with a constant score contribute to the threshold fits.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConstantParts {
    /// Their training scores are left out of the POT and epsilon fits.
    Exclude,
    /// Every training row enters the fits (the reference's behaviour).
    Keep,
}

/// Why a part is degenerate; a part that is both is named for its constant score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degeneracy {
    /// Named only: its scores enter the fits.
    ConstantTarget,
    /// Most of its training scores are one value: left out of the fits by default.
    ConstantScore,
}

impl Degeneracy {
    pub fn as_str(self) -> &'static str {
        match self {
            Degeneracy::ConstantTarget => "constant target",
            Degeneracy::ConstantScore => "constant score",
        }
    }
}

/// A degenerate part: its name, index among the parts and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DegeneratePart {
    pub part: String,
    #[serde(skip)]
    pub index: usize,
    pub reason: Degeneracy,
    /// Its scored training rows.
    pub train_scores: usize,
}

/// Scores closer than this, relative to their size, count as one value.
const SAME_SCORE_TOLERANCE: f64 = 1e-6;
/// A part whose most common training score covers at least this share has a constant score.
const CONSTANT_SCORE_SHARE: f64 = 0.5;

/// The degenerate parts of `meta`'s series: `train` are the (scaled or raw) training rows,
/// row-major over `meta.columns`; `plain_scores` the unnormalised training scores (score k
/// belongs to row k + `window`).
pub fn degenerate_parts<T: Copy + PartialEq>(
    meta: &Meta,
    train: &[T],
    plain_scores: &[f64],
    window: usize,
) -> Vec<DegeneratePart> {
    let constant_targets = meta.constant_target_parts(train);
    let ranges = score_ranges(&meta.parts, window, plain_scores.len());
    let mut out = Vec::new();
    let mut start_row = 0;
    for (index, part) in meta.parts.iter().enumerate() {
        let end_row = start_row + part.train_rows;
        // Rows whose whole window lies inside the part: scores start_row..end_row - window.
        let inner_end = end_row.saturating_sub(window).min(plain_scores.len());
        let inner = &plain_scores[start_row.min(inner_end)..inner_end];
        let reason = if most_common_share(inner) >= CONSTANT_SCORE_SHARE {
            Some(Degeneracy::ConstantScore)
        } else if constant_targets.contains(&index) {
            Some(Degeneracy::ConstantTarget)
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(DegeneratePart {
                part: part.name.clone(),
                index,
                reason,
                train_scores: ranges[index].len(),
            });
        }
        start_row = end_row;
    }
    out
}

/// One flag per training score: does it enter the threshold fits?
pub fn fit_mask(
    parts: &[Part],
    degenerate: &[DegeneratePart],
    policy: ConstantParts,
    window: usize,
    n_scores: usize,
) -> Vec<bool> {
    let mut mask = vec![true; n_scores];
    if policy == ConstantParts::Keep {
        return mask;
    }
    let ranges = score_ranges(parts, window, n_scores);
    for part in degenerate
        .iter()
        .filter(|d| d.reason == Degeneracy::ConstantScore)
    {
        mask[ranges[part.index].clone()].fill(false);
    }
    mask
}

/// The scores of each part's training rows (score k belongs to row k + `window`), clamped
/// to `0..n_scores`; together they cover every score once.
pub fn score_ranges(parts: &[Part], window: usize, n_scores: usize) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(parts.len());
    let mut start_row = 0;
    for (i, part) in parts.iter().enumerate() {
        let end_row = start_row + part.train_rows;
        let lo = start_row.saturating_sub(window).min(n_scores);
        let hi = if i + 1 == parts.len() {
            n_scores
        } else {
            end_row.saturating_sub(window).min(n_scores)
        };
        out.push(lo..hi.max(lo));
        start_row = end_row;
    }
    out
}

/// The share of `values` held by its most common value (within the tolerance); 0 if empty.
fn most_common_share(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (mut best, mut lo) = (0, 0);
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] > SAME_SCORE_TOLERANCE * sorted[hi].abs() {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    if sorted.is_empty() {
        0.0
    } else {
        best as f64 / sorted.len() as f64
    }
}

/// One warning line per degenerate part, saying what it contributes under `policy`.
pub fn describe(degenerate: &[DegeneratePart], policy: ConstantParts) -> Vec<String> {
    degenerate
        .iter()
        .map(|d| {
            format!(
                "warning: part `{}` has a {} in training ({} scored rows); {}",
                d.part,
                d.reason.as_str(),
                d.train_scores,
                match (d.reason, policy) {
                    (Degeneracy::ConstantTarget, _) => "the model learns nothing there, but its scores vary and enter the POT and epsilon fits",
                    (Degeneracy::ConstantScore, ConstantParts::Exclude) => "most of its rows are one score, which normalisation places arbitrarily: they are left out of the POT and epsilon fits (`--constant-parts keep` fits on them, as the reference does)",
                    (Degeneracy::ConstantScore, ConstantParts::Keep) => "its training scores enter the POT and epsilon fits (`--constant-parts keep`)",
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, train_rows: usize) -> Part {
        Part {
            name: name.into(),
            train_rows,
            test_rows: 0,
        }
    }

    #[test]
    fn score_ranges_cover_every_score_once() {
        // Parts of 30, 20 and 25 rows, window 10: 65 scores, boundaries at scores 20 and 40.
        let parts = [part("a", 30), part("b", 20), part("c", 25)];
        assert_eq!(score_ranges(&parts, 10, 65), vec![0..20, 20..40, 40..65]);
        // A first part shorter than the window has no scores of its own.
        let parts = [part("a", 5), part("b", 20)];
        assert_eq!(score_ranges(&parts, 10, 15), vec![0..0, 0..15]);
    }

    #[test]
    fn the_most_common_score_share_counts_near_equal_values() {
        assert_eq!(most_common_share(&[]), 0.0);
        assert_eq!(most_common_share(&[0.3, 0.1, 0.3, 0.2]), 0.5);
        assert_eq!(most_common_share(&[0.5, 0.5 + 1e-9, 0.5 - 1e-9, 0.1]), 0.75);
    }

    #[test]
    fn constant_target_and_constant_score_are_named() {
        let meta = Meta {
            format_version: Meta::FORMAT_VERSION,
            dataset: "SMAP".into(),
            source_format: "telemanom".into(),
            columns: vec!["value".into(), "command".into()],
            target_dims: Some(vec![0]),
            parts: vec![part("A-1", 30), part("B-1", 30), part("C-1", 30)],
            interpretation: Vec::new(),
        };
        // A-1 varies; B-1's target is constant (its command column is not, nor are its
        // scores); C-1 varies in training but most of its scores are one value.
        let mut train = Vec::new();
        for row in 0..90 {
            let value = if (30..60).contains(&row) {
                -1.0
            } else {
                (row as f64 * 0.3).sin()
            };
            train.extend([value, (row % 2) as f64]);
        }
        let window = 10;
        let scores: Vec<f64> = (0..80)
            .map(|k| {
                if (60..72).contains(&k) {
                    0.25
                } else {
                    0.1 + k as f64 * 0.01
                }
            })
            .collect();
        let degenerate = degenerate_parts(&meta, &train, &scores, window);
        let named: Vec<(&str, Degeneracy, usize)> = degenerate
            .iter()
            .map(|d| (d.part.as_str(), d.reason, d.train_scores))
            .collect();
        assert_eq!(
            named,
            [
                ("B-1", Degeneracy::ConstantTarget, 30),
                ("C-1", Degeneracy::ConstantScore, 30)
            ]
        );
        // Only the constant score is left out of the fits: scores 50..80 are C-1's.
        let mask = fit_mask(&meta.parts, &degenerate, ConstantParts::Exclude, window, 80);
        assert!(mask[..50].iter().all(|&m| m));
        assert!(mask[50..].iter().all(|&m| !m));
        let kept = fit_mask(&meta.parts, &degenerate, ConstantParts::Keep, window, 80);
        assert!(kept.iter().all(|&m| m));
        let lines = describe(&degenerate, ConstantParts::Exclude);
        assert!(
            lines[0].contains("`B-1` has a constant target"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("left out of the POT and epsilon fits"),
            "{}",
            lines[1]
        );
    }
}
