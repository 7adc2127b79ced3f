//! The plots `evaluate` writes to `plots/`: scores with thresholds and true anomaly
//! segments, forecasts and reconstructions of the features behind detected segments,
//! and the training loss curves when the train run left a `history.json`.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bundle::Scores;
use crate::context::StepContext;
use crate::evaluate::{SplitScores, ThresholdMethod};
use crate::plot::{draw_panels, Level, Line, Panel, PALETTE};
use crate::thresholds::metrics::segments;
use crate::thresholds::report::Report;

/// Detected segments drawn at most, the strongest first.
const MAX_SEGMENTS: usize = 3;
/// Features drawn per detected segment.
const FEATURES_PER_SEGMENT: usize = 2;
const WIDTH: u32 = 1200;

/// Everything the figures are drawn from.
pub struct FigureInputs<'a> {
    pub train: &'a SplitScores,
    pub test: &'a SplitScores,
    pub test_scores: &'a Scores,
    /// One per scored test row.
    pub labels: &'a [bool],
    pub report: &'a Report,
    pub chosen: ThresholdMethod,
    pub columns: &'a [String],
    pub target_dims: &'a [usize],
    pub window: usize,
}

/// Writes every figure that has data; returns how many were written.
pub fn write_all(
    ctx: &StepContext,
    inputs: &FigureInputs,
    train_dir: Option<&Path>,
) -> Result<usize> {
    let mut written = 0;
    draw_panels(
        &ctx.output_path("plots/scores.png")?,
        &score_panels(inputs),
        WIDTH,
        360,
    )?;
    written += 1;
    let feature_data = feature_series(inputs);
    if !feature_data.is_empty() {
        let panels: Vec<Panel> = feature_data.iter().map(FeatureSeries::panel).collect();
        draw_panels(&ctx.output_path("plots/features.png")?, &panels, WIDTH, 280)?;
        written += 1;
    }
    if let Some(history) = train_dir
        .map(|dir| dir.join("history.json"))
        .filter(|p| p.exists())
    {
        let curves = read_history(&history)?;
        if !curves.is_empty() {
            let panel = Panel {
                title: "training loss".into(),
                x_label: "epoch".into(),
                y_label: "loss".into(),
                lines: curves
                    .iter()
                    .enumerate()
                    .map(|(i, (name, values))| Line {
                        label: name.clone(),
                        x_start: 1,
                        values,
                        color: PALETTE[i % PALETTE.len()],
                    })
                    .collect(),
                ..Panel::default()
            };
            draw_panels(
                &ctx.output_path("plots/loss.png")?,
                &[panel],
                WIDTH / 2 + 200,
                400,
            )?;
            written += 1;
        }
    }
    Ok(written)
}

/// Loss curves from `history.json`: either `{"train_loss": [..], "val_loss": [..]}` or
/// one object per epoch, `[{"epoch": 1, "train_loss": .., "val_loss": ..}, ..]`. Every
/// numeric key but `epoch` becomes a curve.
pub fn read_history(path: &Path) -> Result<Vec<(String, Vec<f64>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let mut curves: Vec<(String, Vec<f64>)> = Vec::new();
    let mut push = |key: &str, v: &Value| {
        if key == "epoch" {
            return;
        }
        let number = v.as_f64().unwrap_or(f64::NAN);
        match curves.iter_mut().find(|(name, _)| name == key) {
            Some((_, values)) => values.push(number),
            None => curves.push((key.to_string(), vec![number])),
        }
    };
    match &value {
        Value::Object(map) => {
            for (key, series) in map {
                for v in series.as_array().into_iter().flatten() {
                    push(key, v);
                }
            }
        }
        Value::Array(epochs) => {
            for epoch in epochs {
                for (key, v) in epoch.as_object().into_iter().flatten() {
                    push(key, v);
                }
            }
        }
        _ => anyhow::bail!(
            "`{}` must hold an object of arrays or an array of objects",
            path.display()
        ),
    }
    Ok(curves)
}

fn score_panels<'a>(inputs: &FigureInputs<'a>) -> Vec<Panel<'a>> {
    let report = inputs.report;
    let level = |label: &str, value: f64, color: usize| Level {
        label: label.into(),
        value,
        color: PALETTE[color],
    };
    let mut test_levels = vec![
        level("pot", report.pot.threshold, 3),
        level("epsilon", report.epsilon_metrics.threshold, 2),
    ];
    if let Some(best) = &report.best {
        test_levels.push(level("best F1 (pa)", best.threshold, 4));
    }
    let train_levels = test_levels[..2].to_vec();
    vec![
        Panel {
            title: "training scores".into(),
            x_label: "row".into(),
            y_label: "anomaly score".into(),
            lines: vec![Line {
                label: "score".into(),
                x_start: inputs.window,
                values: &inputs.train.total,
                color: PALETTE[0],
            }],
            levels: train_levels,
            shaded: Vec::new(),
        },
        Panel {
            title: "test scores (true anomalies shaded)".into(),
            x_label: "row".into(),
            y_label: "anomaly score".into(),
            lines: vec![Line {
                label: "score".into(),
                x_start: inputs.window,
                values: &inputs.test.total,
                color: PALETTE[0],
            }],
            levels: test_levels,
            shaded: segments(inputs.labels)
                .into_iter()
                .map(|r| r.start + inputs.window..r.end + inputs.window)
                .collect(),
        },
    ]
}

/// One feature around one detected segment.
struct FeatureSeries {
    title: String,
    x_start: usize,
    actual: Vec<f64>,
    forecast: Vec<f64>,
    reconstruction: Vec<f64>,
    segment: std::ops::Range<usize>,
}

impl FeatureSeries {
    fn panel(&self) -> Panel<'_> {
        let line = |label: &str, values, color| Line {
            label: label.into(),
            x_start: self.x_start,
            values,
            color,
        };
        Panel {
            title: self.title.clone(),
            x_label: "row".into(),
            y_label: "scaled value".into(),
            lines: vec![
                line("actual", &self.actual, PALETTE[0]),
                line("forecast", &self.forecast, PALETTE[1]),
                line("reconstruction", &self.reconstruction, PALETTE[2]),
            ],
            levels: Vec::new(),
            shaded: vec![self.segment.clone()],
        }
    }
}

/// The strongest detected segments (chosen threshold) and their top-scoring features.
fn feature_series(inputs: &FigureInputs) -> Vec<FeatureSeries> {
    let report = inputs.report;
    let threshold = match inputs.chosen {
        ThresholdMethod::Pot => report.pot.threshold,
        ThresholdMethod::BestF1 => report
            .best
            .map_or(report.epsilon_metrics.threshold, |b| b.threshold),
        ThresholdMethod::Epsilon => report.epsilon_metrics.threshold,
    };
    let total = &inputs.test.total;
    let predicted: Vec<bool> = total.iter().map(|&s| s > threshold).collect();
    let peak = |r: &std::ops::Range<usize>| {
        total[r.clone()]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let mut detected = segments(&predicted);
    detected.sort_by(|a, b| peak(b).total_cmp(&peak(a)));
    detected.truncate(MAX_SEGMENTS);

    let n_target = inputs.test_scores.n_target;
    let n_scored = total.len();
    let mut out = Vec::new();
    for segment in detected {
        let mut features: Vec<(usize, f64)> = (0..n_target)
            .map(|f| {
                let sum: f64 = segment
                    .clone()
                    .map(|i| inputs.test.per_feature[i * n_target + f])
                    .sum();
                (f, sum / segment.len() as f64)
            })
            .collect();
        features.sort_by(|a, b| b.1.total_cmp(&a.1));
        let context = 2 * inputs.window.max(10);
        let lo = segment.start.saturating_sub(context);
        let hi = (segment.end + context).min(n_scored);
        for &(feature, _) in features.iter().take(FEATURES_PER_SEGMENT) {
            let column = inputs
                .target_dims
                .get(feature)
                .and_then(|&d| inputs.columns.get(d));
            let name = column
                .cloned()
                .unwrap_or_else(|| format!("feature {feature}"));
            let pick = |values: &[f32]| {
                (lo..hi)
                    .map(|i| values[i * n_target + feature] as f64)
                    .collect()
            };
            out.push(FeatureSeries {
                title: format!(
                    "{name}: rows {}..{} detected",
                    segment.start + inputs.window,
                    segment.end + inputs.window
                ),
                x_start: lo + inputs.window,
                actual: pick(&inputs.test_scores.actual),
                forecast: pick(&inputs.test_scores.forecast),
                reconstruction: pick(&inputs.test_scores.reconstruction),
                segment: segment.start + inputs.window..segment.end + inputs.window,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        std::fs::write(
            &path,
            r#"{"train_loss": [3, 2, 1], "val_loss": [4, 3, null]}"#,
        )
        .unwrap();
        let curves = read_history(&path).unwrap();
        assert_eq!(curves[0], ("train_loss".to_string(), vec![3.0, 2.0, 1.0]));
        assert!(curves[1].1[2].is_nan());
        std::fs::write(
            &path,
            r#"[{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5}]"#,
        )
        .unwrap();
        assert_eq!(
            read_history(&path).unwrap(),
            vec![("train_loss".to_string(), vec![2.0, 1.5])]
        );
        std::fs::write(&path, "3").unwrap();
        assert!(read_history(&path)
            .unwrap_err()
            .to_string()
            .contains("object of arrays"));
    }
}
