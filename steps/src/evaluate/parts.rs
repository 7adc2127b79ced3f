//! Degenerate parts of a concatenated series, and which training rows calibrate the
//! thresholds.
//!
//! SMAP and MSL concatenate channels (parts), and the reference normalises each part's
//! scores to [0, 1] on its own, after zeroing the rows around each boundary
//! (`thresholds::scores::normalize_parts`). A part whose training target never changes
//! (11 of SMAP's 54 channels, 5 of MSL's 27) teaches the model nothing; its training error
//! is a near-constant offset, and because the part's minimum is a zeroed boundary row,
//! normalisation maps nearly all of it to 1.0. On full SMAP one such part put ~1,450 rows
//! at exactly 1.0: they filled POT's tail (the top 10% of training scores) and pushed the
//! fitted threshold above every test score (issue 19).
//!
//! Such parts are *degenerate*: `constant target` (every target column holds one value
//! over the part's training rows) or `constant score` (the part's training scores, over the
//! rows whose window lies inside it, do not vary). By default their training scores are
//! left out of the threshold fits (POT and epsilon, for the reported and the serving
//! thresholds); their test scores are normalised and judged like any other part's.
//! `--constant-parts keep` fits on every row, as the reference does.

use std::ops::Range;

use serde::Serialize;

use crate::data::meta::{Meta, Part};

/// What degenerate parts contribute to the threshold fits.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConstantParts {
    /// Their training scores are left out of the POT and epsilon fits.
    Exclude,
    /// Every training row enters the fits (the reference's behaviour).
    Keep,
}

/// Why a part is degenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degeneracy {
    ConstantTarget,
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

/// Scores spread less than this, relative to their size, count as constant.
const CONSTANT_SCORE_TOLERANCE: f64 = 1e-6;

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
        let reason = if constant_targets.contains(&index) {
            Some(Degeneracy::ConstantTarget)
        } else {
            // Rows whose whole window lies inside the part: scores start_row..end_row - window.
            let inner = start_row..end_row.saturating_sub(window).min(plain_scores.len());
            constant(&plain_scores[inner.start.min(inner.end)..inner.end])
                .then_some(Degeneracy::ConstantScore)
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
    for part in degenerate {
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

/// Whether `values` (non-empty) spread by less than the tolerance relative to their size.
fn constant(values: &[f64]) -> bool {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    !values.is_empty() && max - min <= CONSTANT_SCORE_TOLERANCE * max.abs().max(min.abs())
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
                match policy {
                    ConstantParts::Exclude => "its training scores are left out of the POT and epsilon fits (`--constant-parts keep` fits on them, as the reference does)",
                    ConstantParts::Keep => "its training scores enter the POT and epsilon fits (`--constant-parts keep`)",
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
        // A-1 varies; B-1's target is constant (its command column is not); C-1 varies in
        // training but its scores inside the part do not.
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
            .map(|k| if k >= 60 { 0.25 } else { 0.1 + k as f64 * 0.01 })
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
        let mask = fit_mask(&meta.parts, &degenerate, ConstantParts::Exclude, window, 80);
        assert!(mask[..20].iter().all(|&m| m));
        assert!(mask[20..].iter().all(|&m| !m));
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
