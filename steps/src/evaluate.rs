//! The `evaluate` step: scores the train and test splits with the trained bundle, fits
//! the thresholds (POT, epsilon) on the training scores, searches the best-F1 thresholds
//! on the test scores, and reports precision/recall/F1 raw and point-adjusted for each,
//! HitRate@P% where interpretation labels exist (SMD), plots, and the bundle with its
//! thresholds filled in for serving.
//!
//! Scores are post-processed like ML4ITS's `Predictor` (optional robust per-feature
//! scaling; per-channel normalisation for concatenated SMAP/MSL) so the figures compare
//! with the published ones. Those transforms use statistics of the whole split and
//! cannot be applied to live rows, so when either is on, the thresholds written into the
//! bundle are refitted on the plain scores that `predict` and serving compute.

pub(crate) mod figures;
mod files;
mod segment_features;
mod settings;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use serde_json::json;

use crate::bundle::{Bundle, Scores, Thresholds};
use crate::context::StepContext;
use crate::data::meta::Meta;
use crate::thresholds::interpretation::{hit_rate, RowTruth};
use crate::thresholds::metrics::ThresholdMetrics;
use crate::thresholds::pot::RootSearch;
use crate::thresholds::report::{judge, Report, Settings};
use crate::thresholds::scores::{normalize_parts, robust_scale, row_means};

pub use settings::{published_settings, Auto, ThresholdMethod};

/// Parameters of `evaluate`; `auto` picks the published setting for the dataset.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// POT: probability of the initial threshold (SMAP/MSL 0.90, SMD machine-1/2/3
    /// 0.9950/0.9925/0.9999, otherwise 0.99).
    #[arg(long, default_value = "auto")]
    pub level: Auto<f64>,
    /// POT risk q (SMAP 0.005, otherwise 0.001).
    #[arg(long, default_value = "auto")]
    pub q: Auto<f64>,
    /// Epsilon regularisation 0, 1 or 2 (SMAP/MSL 0, otherwise 1).
    #[arg(long, default_value = "auto")]
    pub reg_level: Auto<u8>,
    /// Score = forecast error + gamma * reconstruction error; `auto` = the bundle's.
    #[arg(long, default_value = "auto")]
    pub gamma: Auto<f64>,
    /// Robust per-feature score scaling, (s - median) / (1 + IQR), as ML4ITS `scale_scores`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub scale_scores: bool,
    /// Per-channel score normalisation of concatenated series (`auto`: SMAP and MSL).
    #[arg(long, default_value = "auto")]
    pub normalize_parts: Auto<bool>,
    /// Stream the test scores through SPOT (refitting) instead of the calibrated POT threshold.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub dynamic_pot: bool,
    /// Where the POT fit looks for heavy-tailed roots: `siffer` (the reference, published
    /// figures) or `wide` (from 0; can extrapolate past bounded scores).
    #[arg(long, value_enum, default_value_t = RootSearch::Siffer)]
    pub pot_roots: RootSearch,
    /// The threshold the bundle applies when serving.
    #[arg(long, value_enum, default_value_t = ThresholdMethod::Epsilon)]
    pub choose: ThresholdMethod,
    /// BF-F1-PA grid (ML4ITS `bf_search`): `bf-steps` thresholds from `bf-start` to `bf-end`.
    #[arg(long, default_value_t = 0.01)]
    pub bf_start: f64,
    #[arg(long, default_value_t = 2.0)]
    pub bf_end: f64,
    #[arg(long, default_value_t = 100)]
    pub bf_steps: usize,
    /// Write PNG plots to `plots/`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub plots: bool,
}

/// Per-feature and row scores of one split, as the thresholds see them.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitScores {
    /// Row-major [n_scored, n_target].
    pub per_feature: Vec<f64>,
    /// [n_scored]: after the optional transforms.
    pub total: Vec<f64>,
    /// [n_scored]: the plain mean of the per-feature scores, as serving computes it.
    pub plain_total: Vec<f64>,
}

/// Runs the step on the outputs of `load`, `process` and `train`.
pub fn run(ctx: &StepContext, args: &EvaluateArgs) -> Result<()> {
    let bundle = Bundle::load(&ctx.input("train")?.join("model"))?;
    let process_dir = ctx.input("process")?;
    let data = read_processed(process_dir)?;
    let meta = match ctx.input("load") {
        Ok(dir) => Some(Meta::read(&dir.join("meta.json"))?),
        Err(_) => None,
    };
    let n_features = bundle.manifest.model.n_features;
    if data.n_features != n_features {
        bail!(
            "`{}` has {} columns but the model was trained on {n_features}: evaluate with the `process` run the model was trained on",
            process_dir.join("data.safetensors").display(),
            data.n_features
        );
    }
    let dataset = meta.as_ref().map(|m| m.dataset.clone()).unwrap_or_default();
    let published = published_settings(&dataset);
    let settings = Settings {
        level: args.level.or(published.level),
        q: args.q.or(published.q),
        reg_level: args.reg_level.or(published.reg_level),
        dynamic_pot: args.dynamic_pot,
        pot_roots: args.pot_roots,
        bf_start: args.bf_start,
        bf_end: args.bf_end,
        bf_steps: args.bf_steps,
    };
    let gamma = args.gamma.or(bundle.manifest.gamma);
    if !gamma.is_finite() || gamma < 0.0 {
        bail!("`--gamma` must be a non-negative number, got {gamma}");
    }
    let normalize = args.normalize_parts.or(published.normalize_parts);
    let window = bundle.manifest.model.window;

    let started = std::time::Instant::now();
    eprintln!(
        "scoring {} training and {} test rows (window {window})",
        data.n_train, data.n_test
    );
    let train_scores = bundle
        .score_scaled(&data.train, data.n_train)
        .context("cannot score the training split")?;
    let test_scores = bundle
        .score_scaled(&data.test, data.n_test)
        .context("cannot score the test split")?;
    eprintln!(
        "scored both splits in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let parts = |rows: fn(&crate::data::meta::Part) -> usize| -> Option<Vec<usize>> {
        normalize
            .then(|| meta.as_ref().map(|m| m.parts.iter().map(rows).collect()))
            .flatten()
    };
    let train = split_scores(
        &train_scores,
        gamma,
        args.scale_scores,
        parts(|p| p.train_rows).as_deref(),
        window,
    );
    let test = split_scores(
        &test_scores,
        gamma,
        args.scale_scores,
        parts(|p| p.test_rows).as_deref(),
        window,
    );
    let labels: Vec<bool> = data.labels[window..].iter().map(|&l| l > 0).collect();

    eprintln!(
        "fitting thresholds: POT level {} q {}{}, epsilon reg_level {}",
        settings.level,
        settings.q,
        if settings.dynamic_pot {
            " (streaming)"
        } else {
            ""
        },
        settings.reg_level
    );
    let report = judge(&train.total, &test.total, &labels, settings)?;
    let transformed = args.scale_scores || normalize;
    let serving = if transformed {
        judge(&train.plain_total, &test.plain_total, &labels, settings)?
    } else {
        report.clone()
    };

    let mut metrics = report.metrics();
    let truths = meta
        .as_ref()
        .map(|m| interpretation_truths(m, &bundle.target_dims(), window))
        .unwrap_or_default();
    for percent in [100.0, 150.0] {
        if let Some(rate) = hit_rate(&test.per_feature, test_scores.n_target, &truths, percent) {
            metrics.push((format!("hitrate_{percent:.0}"), rate));
        }
    }
    metrics.push(("n_test_scored".into(), labels.len() as f64));
    metrics.push((
        "test_anomaly_ratio".into(),
        labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64,
    ));
    let thresholds = bundle_thresholds(&serving, args.choose);
    if transformed {
        for (name, value) in [
            ("pot", thresholds.pot),
            ("epsilon", thresholds.epsilon),
            ("best", thresholds.best_f1),
        ] {
            if let Some(value) = value {
                metrics.push((format!("serve_threshold_{name}"), value));
            }
        }
    }
    let pairs: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ctx.log_metrics(&pairs, 0)?;

    files::write_scores_csv(
        &ctx.output_path("scores.csv")?,
        &report,
        &test.total,
        &labels,
        window,
    )?;
    files::write_train_scores_csv(&ctx.output_path("train_scores.csv")?, &train.total, window)?;
    let test_parts = meta
        .as_ref()
        .map(|m| m.parts.as_slice())
        .unwrap_or_default();
    files::write_segments_csv(
        &ctx.output_path("segments.csv")?,
        &report,
        &test.total,
        &labels,
        test_parts,
        window,
    )?;
    segment_features::write_segment_features_csv(
        &ctx.output_path("segment_features.csv")?,
        &labels,
        &test.per_feature,
        &test_scores,
        &bundle.manifest.preprocessor.columns,
        &bundle.target_dims(),
        window,
    )?;
    let summary = json!({
        "dataset": dataset,
        "window": window,
        "gamma": gamma,
        "scale_scores": args.scale_scores,
        "normalize_parts": normalize,
        "chosen": args.choose.as_str(),
        "metrics": metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "report": report,
        "bundle_thresholds": thresholds,
    });
    let summary_path = ctx.output_path("summary.json")?;
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("cannot write `{}`", summary_path.display()))?;

    let mut evaluated = bundle.with_thresholds(thresholds);
    evaluated.manifest.gamma = gamma;
    let model_dir = ctx.output_path("model/flow-model.json")?;
    evaluated.save(model_dir.parent().context("model directory")?)?;

    if args.plots {
        let inputs = figures::FigureInputs {
            train: &train,
            test: &test,
            test_scores: &test_scores,
            labels: &labels,
            report: &report,
            chosen: args.choose,
            columns: &bundle.manifest.preprocessor.columns,
            target_dims: &bundle.target_dims(),
            window,
        };
        let written = figures::write_all(ctx, &inputs, ctx.input("train").ok())?;
        eprintln!(
            "wrote {} plot(s) to `{}`",
            written,
            ctx.output_dir.join("plots").display()
        );
    }
    eprint!("{}", summary_table(&report, &metrics));
    Ok(())
}

/// Per-feature scores recomputed with `gamma` from the bundle's forecasts and
/// reconstructions, optionally robust-scaled, and row scores, optionally normalised per
/// part (`part_rows`: input rows of each concatenated part).
pub fn split_scores(
    scores: &Scores,
    gamma: f64,
    scale: bool,
    part_rows: Option<&[usize]>,
    window: usize,
) -> SplitScores {
    let term = |model: f32, actual: f32| {
        if model.is_finite() {
            (model as f64 - actual as f64).abs()
        } else {
            0.0
        }
    };
    let plain: Vec<f64> = (0..scores.actual.len())
        .map(|i| {
            term(scores.forecast[i], scores.actual[i])
                + gamma * term(scores.reconstruction[i], scores.actual[i])
        })
        .collect();
    let plain_total = row_means(&plain, scores.n_target);
    let mut per_feature = plain;
    if scale {
        robust_scale(&mut per_feature, scores.n_target);
    }
    let mut total = if scale {
        row_means(&per_feature, scores.n_target)
    } else {
        plain_total.clone()
    };
    if let Some(rows) = part_rows {
        normalize_parts(&mut total, rows, window);
    }
    SplitScores {
        per_feature,
        total,
        plain_total,
    }
}

/// The features behind each interpreted test row, as indices among the target dims.
pub fn interpretation_truths(meta: &Meta, target_dims: &[usize], window: usize) -> Vec<RowTruth> {
    let mut truths = Vec::new();
    for segment in &meta.interpretation {
        let features: Vec<usize> = segment
            .dims
            .iter()
            .filter_map(|d| target_dims.iter().position(|t| t == d))
            .collect();
        for row in segment.start.max(window)..segment.end {
            truths.push(RowTruth {
                score_index: row - window,
                features: features.clone(),
            });
        }
    }
    truths
}

/// The thresholds written into the bundle (fitted on the scores serving computes).
fn bundle_thresholds(report: &Report, choose: ThresholdMethod) -> Thresholds {
    Thresholds {
        pot: Some(report.pot.threshold),
        epsilon: Some(report.epsilon_metrics.threshold),
        best_f1: report.best.map(|b| b.threshold),
        chosen: Some(choose.as_str().to_string()),
    }
}

/// The scaled splits of `data.safetensors`.
struct Processed {
    train: Vec<f32>,
    test: Vec<f32>,
    labels: Vec<u8>,
    n_train: usize,
    n_test: usize,
    n_features: usize,
}

fn read_processed(process_dir: &Path) -> Result<Processed> {
    let path = process_dir.join("data.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let matrix = |name: &str| -> Result<(Vec<f32>, usize, usize)> {
        let tensor = tensors
            .get(name)
            .with_context(|| format!("`{}` has no `{name}` tensor", path.display()))?;
        let (rows, cols) = tensor
            .dims2()
            .with_context(|| format!("`{name}` in `{}` must be [rows, columns]", path.display()))?;
        Ok((
            tensor
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            rows,
            cols,
        ))
    };
    let (train, n_train, n_features) = matrix("train")?;
    let (test, n_test, test_cols) = matrix("test")?;
    if test_cols != n_features {
        bail!(
            "`{}`: `train` has {n_features} columns but `test` has {test_cols}",
            path.display()
        );
    }
    let labels = tensors
        .get("labels")
        .with_context(|| format!("`{}` has no `labels` tensor", path.display()))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    if labels.len() != n_test {
        bail!(
            "`{}`: {} labels for {n_test} test rows",
            path.display(),
            labels.len()
        );
    }
    Ok(Processed {
        train,
        test,
        labels,
        n_train,
        n_test,
        n_features,
    })
}

/// A fixed-width table of the figures, for the terminal.
fn summary_table(report: &Report, metrics: &[(String, f64)]) -> String {
    let mut text = String::from(
        "method      threshold   P        R        F1       P(pa)    R(pa)    F1(pa)\n",
    );
    let mut row = |name: &str, raw: &ThresholdMetrics, adjusted: &ThresholdMetrics| {
        let _ = writeln!(
            text,
            "{name:<11} {:<11.5} {:<8.4} {:<8.4} {:<8.4} {:<8.4} {:<8.4} {:.4}",
            adjusted.threshold,
            raw.raw.precision,
            raw.raw.recall,
            raw.raw.f1,
            adjusted.adjusted.precision,
            adjusted.adjusted.recall,
            adjusted.adjusted.f1
        );
    };
    row("pot", &report.pot_metrics, &report.pot_metrics);
    row("epsilon", &report.epsilon_metrics, &report.epsilon_metrics);
    if let Some(best) = &report.best {
        row("best(grid)", best, best);
    }
    if let Some(raw) = &report.best_raw {
        row("best(raw)", raw, raw);
    }
    if let Some(exact) = &report.best_adjusted_exact {
        row("best(pa)", exact, exact);
    }
    for (name, value) in metrics.iter().filter(|(k, _)| k.starts_with("hitrate")) {
        let _ = writeln!(text, "{name}: {value:.4}");
    }
    text
}

#[cfg(test)]
pub(crate) mod tests;
