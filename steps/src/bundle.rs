//! The model bundle: preprocessor + MTAD-GAT weights + thresholds, in one directory.
//!
//! `flow-model.json` ([`BundleManifest`]) says how to turn raw rows into model input and
//! how to read the scores; `weights.safetensors` holds the network under the reference
//! implementation's state-dict names. `train` writes it, `evaluate` fills in thresholds,
//! `predict` and serving only ever load this directory.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::context::StepContext;
use crate::data::meta::Meta;
use crate::data::preprocessor::Preprocessor;
use crate::model::init::seeded_var_builder;
use crate::model::{Config, MtadGat};

pub const MANIFEST_FILE: &str = "flow-model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// Windows per forward pass when scoring.
const SCORE_BATCH: usize = 256;

/// The manifest, `model/flow-model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format_version: u32,
    /// `mtad_gat`.
    pub algorithm: String,
    /// Columns, scaler, target dims, window, training statistics.
    pub preprocessor: Preprocessor,
    pub model: Config,
    /// Score = forecast error + gamma * reconstruction error.
    pub gamma: f64,
    /// Filled by `evaluate`; `train` leaves them empty.
    pub thresholds: Thresholds,
    pub trained: TrainSummary,
    /// The dataset the model was trained on (its columns are the preprocessor's); unknown
    /// for manifests written before it was recorded.
    #[serde(default)]
    pub dataset: TrainedOn,
}

impl BundleManifest {
    pub const FORMAT_VERSION: u32 = 1;
}

/// Anomaly thresholds on the row score, by method.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub pot: Option<f64>,
    pub epsilon: Option<f64>,
    pub best_f1: Option<f64>,
    /// `pot`, `epsilon` or `best_f1`: the one predict and serving apply.
    pub chosen: Option<String>,
}

impl Thresholds {
    /// The chosen threshold, else epsilon, else POT.
    pub fn active(&self) -> Option<f64> {
        let chosen = match self.chosen.as_deref() {
            Some("pot") => self.pot,
            Some("epsilon") => self.epsilon,
            Some("best_f1") => self.best_f1,
            _ => None,
        };
        chosen.or(self.epsilon).or(self.pot)
    }
}

/// How the weights were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: usize,
    /// Best validation loss (the training loss when there was no validation split).
    pub best_val_loss: f64,
    pub seed: u64,
    pub n_train_windows: usize,
    pub train_run_id: String,
}

/// The dataset a model was trained on, as the `load` run described it, so that one
/// member's model (an SMD machine, a channel) is never applied to another's data unasked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainedOn {
    /// The `dataset` parameter of the load run (`MSL`, `machine-1-6`); empty when unknown.
    pub name: String,
    /// The channels or machines concatenated into the training series, in order.
    pub parts: Vec<String>,
}

impl TrainedOn {
    /// The dataset `meta` describes.
    pub fn from_meta(meta: &Meta) -> TrainedOn {
        TrainedOn {
            name: meta.dataset.clone(),
            parts: meta.parts.iter().map(|p| p.name.clone()).collect(),
        }
    }

    /// The dataset of the step's `load` input, or unknown when it has none.
    pub fn from_context(ctx: &StepContext) -> Result<TrainedOn> {
        match ctx.input("load") {
            Ok(dir) => Ok(TrainedOn::from_meta(&Meta::read(&dir.join("meta.json"))?)),
            Err(_) => Ok(TrainedOn::default()),
        }
    }

    pub fn is_known(&self) -> bool {
        !self.name.is_empty()
    }
}

/// Per-row anomaly scores; see the contract in notes/contracts.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// = window: index of the first scored input row.
    pub first_row: usize,
    /// Number of scored features (target dims).
    pub n_target: usize,
    /// [n_scored]: mean of the per-feature scores.
    pub total: Vec<f32>,
    /// [n_scored * n_target]: |forecast - x| + gamma * |reconstruction - x|.
    pub per_feature: Vec<f32>,
    /// [n_scored * n_target]; NaN when the model's mode has no forecasting head.
    pub forecast: Vec<f32>,
    /// [n_scored * n_target]; NaN when the model's mode has no reconstruction head.
    pub reconstruction: Vec<f32>,
    /// [n_scored * n_target]: the scaled observed values.
    pub actual: Vec<f32>,
}

impl Scores {
    pub fn n_scored(&self) -> usize {
        self.total.len()
    }
}

/// What one window's forward pass says: see [`Bundle::forward_window`].
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutput {
    /// [n_target]: the row after the window.
    pub forecast: Option<Vec<f32>>,
    /// [n_target]: the window's own last row.
    pub last_reconstruction: Option<Vec<f32>>,
}

/// A loaded bundle, ready to score.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: BundleManifest,
    model: MtadGat,
    weights: HashMap<String, Tensor>,
    device: Device,
}

impl Bundle {
    /// Assembles a bundle from a manifest and named weights (as `train` produces them).
    pub fn from_weights(
        manifest: BundleManifest,
        weights: HashMap<String, Tensor>,
    ) -> Result<Bundle> {
        let device = Device::Cpu;
        check_manifest(&manifest)?;
        // A bundle scores: plain tensors, so no op keeps state for a backward pass (weights
        // straight from training are variables, or copies that still record their origin).
        let weights: HashMap<String, Tensor> = weights
            .into_iter()
            .map(|(name, tensor)| (name, tensor.detach()))
            .collect();
        let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &device);
        let model = MtadGat::new(&manifest.model, vb, manifest.trained.seed)
            .context("the weights do not fit the model described by the manifest")?;
        Ok(Bundle {
            manifest,
            model,
            weights,
            device,
        })
    }

    /// A bundle with seeded random weights and no thresholds: what benchmarks and tests
    /// score with when the cost or plumbing matters, not the accuracy.
    pub fn untrained(preprocessor: Preprocessor, model: Config, seed: u64) -> Result<Bundle> {
        let varmap = VarMap::new();
        MtadGat::new(
            &model,
            seeded_var_builder(&varmap, seed, &Device::Cpu),
            seed,
        )?;
        let weights: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("the weight map is poisoned"))?
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        let manifest = BundleManifest {
            format_version: BundleManifest::FORMAT_VERSION,
            algorithm: "mtad_gat".into(),
            preprocessor,
            model,
            gamma: 1.0,
            thresholds: Thresholds::default(),
            trained: TrainSummary {
                epochs: 0,
                best_val_loss: 0.0,
                seed,
                n_train_windows: 0,
                train_run_id: "untrained".into(),
            },
            dataset: TrainedOn::default(),
        };
        Bundle::from_weights(manifest, weights)
    }

    pub fn load(dir: &Path) -> Result<Bundle> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read model manifest `{}`", manifest_path.display()))?;
        let version: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not valid JSON", manifest_path.display()))?;
        match version.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == BundleManifest::FORMAT_VERSION as u64 => {}
            Some(v) => bail!(
                "`{}` has format_version {v}; this flow reads format_version {}",
                manifest_path.display(),
                BundleManifest::FORMAT_VERSION
            ),
            None => bail!("`{}` has no `format_version`", manifest_path.display()),
        }
        let manifest: BundleManifest = serde_json::from_value(version).with_context(|| {
            format!("`{}` is not a flow model manifest", manifest_path.display())
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .with_context(|| format!("cannot read model weights `{}`", weights_path.display()))?;
        Bundle::from_weights(manifest, weights)
            .with_context(|| format!("invalid model bundle `{}`", dir.display()))
    }

    /// Writes both files, each through a temporary file, fsync and rename, weights first so a
    /// manifest never points at missing weights.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights_tmp = temp_path(&weights_path);
        candle_core::safetensors::save(&self.weights, &weights_tmp)
            .with_context(|| format!("cannot write `{}`", weights_tmp.display()))?;
        publish(&weights_tmp, &weights_path)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_tmp = temp_path(&manifest_path);
        let text = serde_json::to_string_pretty(&self.manifest)
            .context("cannot serialise the model manifest")?;
        std::fs::write(&manifest_tmp, text)
            .with_context(|| format!("cannot write `{}`", manifest_tmp.display()))?;
        publish(&manifest_tmp, &manifest_path)?;
        if let Ok(dir_handle) = File::open(dir) {
            // Persists the renames; not every platform can fsync a directory.
            let _ = dir_handle.sync_all();
        }
        Ok(())
    }

    pub fn with_thresholds(&self, thresholds: Thresholds) -> Bundle {
        let mut bundle = self.clone();
        bundle.manifest.thresholds = thresholds;
        bundle
    }

    pub fn model(&self) -> &MtadGat {
        &self.model
    }

    /// Named weights as stored in `weights.safetensors`.
    pub fn weights(&self) -> &HashMap<String, Tensor> {
        &self.weights
    }

    /// The scored feature indices (all columns when the preprocessor lists none).
    pub fn target_dims(&self) -> Vec<usize> {
        resolve_target_dims(
            &self.manifest.preprocessor.target_dims,
            self.manifest.preprocessor.n_features(),
        )
    }

    /// Scores scaled rows (row-major [n_rows, K]): rows window..n_rows. Row t combines the
    /// forecast from rows t-W..t-1 with the last reconstructed row of rows t-W+1..t, as
    /// ML4ITS `Predictor.get_score` does, but from one forward pass per window.
    pub fn score_scaled(&self, series: &[f32], n_rows: usize) -> Result<Scores> {
        let n_features = self.manifest.model.n_features;
        let window = self.manifest.model.window;
        if series.len() != n_rows * n_features {
            bail!(
                "the series has {} values, expected {n_rows} rows x {n_features} columns = {}",
                series.len(),
                n_rows * n_features
            );
        }
        if n_rows <= window {
            bail!("scoring needs more rows than the window ({window}): got {n_rows}, need at least {}", window + 1);
        }
        crate::model::alloc::tune_for_tensors();
        let targets = self.target_dims();
        let n_target = targets.len();
        let n_scored = n_rows - window;
        let mode = self.manifest.model.mode;
        let mut forecast = vec![f32::NAN; n_scored * n_target];
        let mut reconstruction = vec![f32::NAN; n_scored * n_target];
        // Window j covers rows j..j+W: it forecasts row j+W (scored index j) and its last
        // reconstructed row is row j+W-1 (scored index j-1).
        let n_windows = n_rows - window + 1;
        let mut start = 0;
        while start < n_windows {
            let count = SCORE_BATCH.min(n_windows - start);
            let mut batch = Vec::with_capacity(count * window * n_features);
            for j in start..start + count {
                batch.extend_from_slice(&series[j * n_features..(j + window) * n_features]);
            }
            let xs = Tensor::from_vec(batch, (count, window, n_features), &self.device)?;
            let out = self.model.forward(&xs, false)?;
            if let Some(fc) = out.forecast {
                let fc = fc.flatten_all()?.to_vec1::<f32>()?;
                for (offset, j) in (start..start + count).enumerate() {
                    if j < n_scored {
                        forecast[j * n_target..][..n_target]
                            .copy_from_slice(&fc[offset * n_target..][..n_target]);
                    }
                }
            }
            if let Some(rec) = out.reconstruction {
                let last = rec
                    .narrow(1, window - 1, 1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                for (offset, j) in (start..start + count).enumerate() {
                    if j >= 1 {
                        reconstruction[(j - 1) * n_target..][..n_target]
                            .copy_from_slice(&last[offset * n_target..][..n_target]);
                    }
                }
            }
            start += count;
        }
        let gamma = self.manifest.gamma as f32;
        let mut actual = Vec::with_capacity(n_scored * n_target);
        for t in window..n_rows {
            actual.extend(targets.iter().map(|&d| series[t * n_features + d]));
        }
        let per_feature: Vec<f32> = (0..n_scored * n_target)
            .map(|i| {
                let fc = if mode.forecasts() {
                    (forecast[i] - actual[i]).abs()
                } else {
                    0.0
                };
                let rec = if mode.reconstructs() {
                    gamma * (reconstruction[i] - actual[i]).abs()
                } else {
                    0.0
                };
                fc + rec
            })
            .collect();
        let total = per_feature
            .chunks_exact(n_target)
            .map(|row| row.iter().sum::<f32>() / n_target as f32)
            .collect();
        Ok(Scores {
            first_row: window,
            n_target,
            total,
            per_feature,
            forecast,
            reconstruction,
            actual,
        })
    }

    /// One window of scaled rows (row-major [W, K]) -> its forecast of the row after it and
    /// its reconstruction of its own last row, each [n_target] (`None` when the mode has no
    /// such head). Row t's score combines the forecast of the window ending at t - 1 with
    /// the reconstruction of the window ending at t, so a stream that keeps each window's
    /// forecast for the next row scores a new row with this one forward pass, where
    /// [`Bundle::score_scaled`] on W + 1 rows runs two.
    pub fn forward_window(&self, rows: &[f32]) -> Result<WindowOutput> {
        let (window, n_features) = (self.manifest.model.window, self.manifest.model.n_features);
        if rows.len() != window * n_features {
            bail!(
                "a window is {window} rows x {n_features} columns = {} values, got {}",
                window * n_features,
                rows.len()
            );
        }
        let xs = Tensor::from_slice(rows, (1, window, n_features), &self.device)?;
        let out = self.model.forward(&xs, false)?;
        let forecast = out
            .forecast
            .map(|f| f.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        let last_reconstruction = out
            .reconstruction
            .map(|r| r.narrow(1, window - 1, 1)?.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        Ok(WindowOutput {
            forecast,
            last_reconstruction,
        })
    }

    /// Raw rows (row-major [n_rows, K], unscaled, NaN allowed): scales them, then scores.
    pub fn score_raw(&self, raw: &[f64], n_rows: usize) -> Result<Scores> {
        let n_columns = self.manifest.preprocessor.n_features();
        if raw.len() != n_rows * n_columns {
            bail!(
                "expected {n_rows} rows x {n_columns} columns ({}) = {} values, got {}",
                self.manifest.preprocessor.columns.join(", "),
                n_rows * n_columns,
                raw.len()
            );
        }
        let scaled = self.manifest.preprocessor.transform(raw);
        self.score_scaled(&scaled, n_rows)
    }
}

/// Target dims as stored, or every column when none are listed.
pub fn resolve_target_dims(target_dims: &[usize], n_features: usize) -> Vec<usize> {
    if target_dims.is_empty() {
        (0..n_features).collect()
    } else {
        target_dims.to_vec()
    }
}

fn check_manifest(manifest: &BundleManifest) -> Result<()> {
    if manifest.format_version != BundleManifest::FORMAT_VERSION {
        bail!(
            "unsupported bundle format_version {}; this flow reads format_version {}",
            manifest.format_version,
            BundleManifest::FORMAT_VERSION
        );
    }
    if manifest.algorithm != "mtad_gat" {
        bail!(
            "unsupported algorithm `{}` in the bundle; supported: `mtad_gat`",
            manifest.algorithm
        );
    }
    manifest.model.validate()?;
    let pre = &manifest.preprocessor;
    let cfg = &manifest.model;
    if pre.n_features() != cfg.n_features || pre.window != cfg.window {
        bail!(
            "the preprocessor ({} columns, window {}) and the model ({} features, window {}) disagree",
            pre.n_features(),
            pre.window,
            cfg.n_features,
            cfg.window
        );
    }
    let targets = resolve_target_dims(&pre.target_dims, pre.n_features());
    if targets.len() != cfg.n_target || targets.iter().any(|&d| d >= pre.n_features()) {
        bail!(
            "target dims {:?} do not fit a model with {} outputs over {} columns",
            pre.target_dims,
            cfg.n_target,
            pre.n_features()
        );
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn publish(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot fsync `{}`", tmp.display()))?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("cannot move `{}` to `{}`", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests;
