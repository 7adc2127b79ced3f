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
//!
//! Parts that teach the model nothing (a constant training target or score) are named
//! and, by default, left out of the threshold fits ([`parts`]). The scoring-independent
//! half (judging scores, writing the tables, summary and plots) is shared with `ensemble`.

pub(crate) mod figures;
mod files;
mod judging;
pub mod parts;
mod segment_features;
mod settings;

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};

use crate::bundle::{Bundle, Scores};
use crate::context::StepContext;
use crate::data::meta::Meta;
use crate::thresholds::interpretation::RowTruth;
use crate::thresholds::pot::RootSearch;
use crate::thresholds::report::Settings;
use crate::thresholds::scores::{normalize_parts, robust_scale, row_means};
use judging::{bundle_thresholds, serving_note};
pub(crate) use judging::{judge_scored, write_outputs};
use parts::ConstantParts;

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
    /// What parts whose training target or score is constant contribute to the threshold
    /// fits: `exclude` (their training scores are left out) or `keep` (the reference).
    #[arg(long, value_enum, default_value_t = ConstantParts::Exclude)]
    pub constant_parts: ConstantParts,
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
    let inputs = Inputs::read(ctx, args)?;
    inputs.check_columns(&bundle, "the model")?;
    let gamma = args.gamma.or(bundle.manifest.gamma);
    let scored = inputs.score(&bundle, gamma, args)?;
    let judged = judge_scored(&inputs, args, &scored, true)?;
    let thresholds = bundle_thresholds(
        judged.serving.as_ref().unwrap_or(&judged.report),
        args.choose,
    );
    write_outputs(
        ctx,
        args,
        &inputs,
        &scored,
        &judged,
        serde_json::Map::new(),
        ctx.input("train").ok(),
    )?;

    let mut evaluated = bundle.with_thresholds(thresholds);
    evaluated.manifest.gamma = gamma;
    let model_dir = ctx.output_path("model/flow-model.json")?;
    evaluated.save(model_dir.parent().context("model directory")?)?;
    eprint!("{}", serving_note(&judged, args.choose));
    Ok(())
}

/// What `evaluate` (and `ensemble`) read from the upstream runs besides the model: the
/// processed splits, the dataset description and the threshold settings it implies.
pub(crate) struct Inputs {
    pub data: Processed,
    pub meta: Option<Meta>,
    pub dataset: String,
    pub settings: Settings,
    /// Per-part normalisation of the row scores (SMAP/MSL by default).
    pub normalize: bool,
    /// One per scored test row, once the window is known.
    labels: Vec<u8>,
}

impl Inputs {
    /// Reads `process` (and `load`, when present) and resolves `auto` settings.
    pub fn read(ctx: &StepContext, args: &EvaluateArgs) -> Result<Inputs> {
        let data = read_processed(ctx.input("process")?)?;
        let meta = match ctx.input("load") {
            Ok(dir) => Some(Meta::read(&dir.join("meta.json"))?),
            Err(_) => None,
        };
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
        let labels = data.labels.clone();
        Ok(Inputs {
            normalize: args.normalize_parts.or(published.normalize_parts),
            data,
            meta,
            dataset,
            settings,
            labels,
        })
    }

    /// Refuses a bundle (`what`, e.g. "the model") whose column count differs from the data's.
    pub fn check_columns(&self, bundle: &Bundle, what: &str) -> Result<()> {
        let n_features = bundle.manifest.model.n_features;
        if self.data.n_features != n_features {
            bail!(
                "`{}` has {} columns but {what} was trained on {n_features}: evaluate with the `process` run the model was trained on",
                self.data.path.display(),
                self.data.n_features
            );
        }
        Ok(())
    }

    /// Scores both splits with `bundle` and post-processes them as the settings say.
    pub fn score(&self, bundle: &Bundle, gamma: f64, args: &EvaluateArgs) -> Result<Scored> {
        if !gamma.is_finite() || gamma < 0.0 {
            bail!("`--gamma` must be a non-negative number, got {gamma}");
        }
        let window = bundle.manifest.model.window;
        let data = &self.data;
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
        let train = split_scores(
            &train_scores,
            gamma,
            args.scale_scores,
            self.part_rows(|p| p.train_rows).as_deref(),
            window,
        );
        let test = split_scores(
            &test_scores,
            gamma,
            args.scale_scores,
            self.part_rows(|p| p.test_rows).as_deref(),
            window,
        );
        Ok(Scored {
            train,
            test,
            test_scores,
            labels: self.labels[window..].iter().map(|&l| l > 0).collect(),
            columns: bundle.manifest.preprocessor.columns.clone(),
            target_dims: bundle.target_dims(),
            window,
            gamma,
        })
    }

    /// Input rows of each part, when scores are normalised per part.
    pub fn part_rows(&self, rows: fn(&crate::data::meta::Part) -> usize) -> Option<Vec<usize>> {
        self.normalize
            .then(|| {
                self.meta
                    .as_ref()
                    .map(|m| m.parts.iter().map(rows).collect())
            })
            .flatten()
    }
}

/// Both splits' scores as the thresholds see them, and what the figures need.
pub(crate) struct Scored {
    pub train: SplitScores,
    pub test: SplitScores,
    /// Forecasts, reconstructions and actual values of the test split.
    pub test_scores: Scores,
    /// One per scored test row.
    pub labels: Vec<bool>,
    pub columns: Vec<String>,
    pub target_dims: Vec<usize>,
    pub window: usize,
    pub gamma: f64,
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

/// The scaled splits of `data.safetensors`.
pub(crate) struct Processed {
    pub path: std::path::PathBuf,
    pub train: Vec<f32>,
    pub test: Vec<f32>,
    pub labels: Vec<u8>,
    pub n_train: usize,
    pub n_test: usize,
    pub n_features: usize,
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
        path,
        train,
        test,
        labels,
        n_train,
        n_test,
        n_features,
    })
}

#[cfg(test)]
pub(crate) mod tests;
