//! The `train` step: fits MTAD-GAT on the processed training split and writes the bundle
//! (`model/flow-model.json` + `model/weights.safetensors`) to the output directory.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};

use crate::bundle::{
    resolve_target_dims, Bundle, BundleManifest, Thresholds, TrainSummary, TrainedOn,
};
use crate::context::{ProgressReport, StepContext};
use crate::data::preprocessor::Preprocessor;
use crate::model::fit::{fit, EpochReport, FitObserver, FitOptions, ValWindows};
use crate::model::{Config, DecoderInput, GatKind, Mode};

/// Flags of `flow step train`; defaults are the published settings (ML4ITS, 10 epochs).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Model to train; only `mtad_gat` is built in.
    #[arg(long, default_value = "mtad_gat")]
    pub algorithm: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.3)]
    pub dropout: f64,
    /// Which heads are trained and scored.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,
    /// Attention variant of both graph-attention layers.
    #[arg(long, value_enum, default_value_t = GatKind::Gatv2)]
    pub gat: GatKind,
    #[arg(long, default_value_t = 7)]
    pub kernel_size: usize,
    #[arg(long, default_value_t = 150)]
    pub gru_hidden: usize,
    /// Hidden layers of the forecasting MLP (plus an output layer).
    #[arg(long, default_value_t = 3)]
    pub forecast_layers: usize,
    #[arg(long, default_value_t = 150)]
    pub forecast_hidden: usize,
    #[arg(long, default_value_t = 150)]
    pub recon_hidden: usize,
    /// What the reconstruction decoder reads per step: ML4ITS's `interleaved` layout of the
    /// encoder state, or the state `repeated` at every step.
    #[arg(long, value_enum, default_value_t = DecoderInput::Interleaved)]
    pub decoder_input: DecoderInput,
    /// Negative slope of the attention LeakyReLU.
    #[arg(long, default_value_t = 0.2)]
    pub alpha: f64,
    /// Share of windows held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// Which windows validate: `random` (seeded, as the reference) or `last` (in time).
    #[arg(long, value_enum, default_value_t = ValWindows::Random)]
    pub val_windows: ValWindows,
    /// Maximum global gradient norm; 0 turns clipping off.
    #[arg(long, default_value_t = 5.0)]
    pub clip_norm: f64,
    /// Weight of the reconstruction error in the anomaly score (stored in the bundle).
    #[arg(long, default_value_t = 1.0)]
    pub gamma: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on at most this many windows, evenly spaced (0 = all): for quick runs.
    #[arg(long, default_value_t = 0)]
    pub max_windows: usize,
}

impl Default for TrainArgs {
    fn default() -> TrainArgs {
        TrainArgs {
            algorithm: "mtad_gat".to_string(),
            epochs: 10,
            batch_size: 256,
            lr: 1e-3,
            dropout: 0.3,
            mode: Mode::Both,
            gat: GatKind::Gatv2,
            kernel_size: 7,
            gru_hidden: 150,
            forecast_layers: 3,
            forecast_hidden: 150,
            recon_hidden: 150,
            decoder_input: DecoderInput::Interleaved,
            alpha: 0.2,
            val_split: 0.1,
            val_windows: ValWindows::Random,
            clip_norm: 5.0,
            gamma: 1.0,
            seed: 0,
            max_windows: 0,
        }
    }
}

impl TrainArgs {
    /// The network these flags describe, for data with `n_features` columns.
    pub fn config(&self, n_features: usize, window: usize, n_target: usize) -> Config {
        Config {
            kernel_size: self.kernel_size,
            gat: self.gat,
            gru_hidden: self.gru_hidden,
            forecast_layers: self.forecast_layers,
            forecast_hidden: self.forecast_hidden,
            recon_hidden: self.recon_hidden,
            decoder_input: self.decoder_input,
            dropout: self.dropout,
            alpha: self.alpha,
            mode: self.mode,
            ..Config::paper(n_features, window, n_target)
        }
    }

    pub fn fit_options(&self) -> FitOptions {
        FitOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            val_split: self.val_split,
            val_windows: self.val_windows,
            clip_norm: self.clip_norm,
            seed: self.seed,
            max_windows: self.max_windows,
            inject_nan_at: Vec::new(),
        }
    }
}

pub fn run(ctx: &StepContext, args: &TrainArgs) -> Result<()> {
    if args.algorithm != "mtad_gat" {
        bail!(
            "unknown `--algorithm {}`; supported: `mtad_gat`",
            args.algorithm
        );
    }
    if !args.gamma.is_finite() || args.gamma < 0.0 {
        bail!(
            "`--gamma` must be a non-negative number, got {}",
            args.gamma
        );
    }
    let process_dir = ctx.input("process")?;
    let preprocessor = read_preprocessor(process_dir)?;
    let (series, n_rows) = read_train_split(process_dir, preprocessor.n_features())?;
    let n_features = preprocessor.n_features();
    let targets = resolve_target_dims(&preprocessor.target_dims, n_features);
    if let Some(bad) = targets.iter().find(|&&d| d >= n_features) {
        bail!("`preprocessor.json` lists target dim {bad}, but the data has {n_features} columns");
    }
    let cfg = args.config(n_features, preprocessor.window, targets.len());
    cfg.validate()?;
    eprintln!(
        "training MTAD-GAT on {n_rows} rows x {n_features} features (window {}, targets {:?}), {} epochs",
        cfg.window, targets, args.epochs
    );
    let mut observer = Progress::new(ctx, args.epochs);
    let fitted = fit(
        &series,
        n_rows,
        &targets,
        &cfg,
        &args.fit_options(),
        &mut observer,
    )?;
    observer.finish();
    write_history(&ctx.output_path("history.json")?, &observer.history)?;
    ctx.log_metrics(
        &[("best_val_loss", fitted.best_val_loss)],
        fitted.best_epoch as i64,
    )?;
    eprintln!(
        "best validation loss {:.5} at epoch {} ({} training, {} validation windows)",
        fitted.best_val_loss, fitted.best_epoch, fitted.n_train_windows, fitted.n_val_windows
    );
    let manifest = BundleManifest {
        format_version: BundleManifest::FORMAT_VERSION,
        algorithm: args.algorithm.clone(),
        preprocessor,
        model: cfg,
        gamma: args.gamma,
        thresholds: Thresholds::default(),
        trained: TrainSummary {
            epochs: args.epochs,
            best_val_loss: fitted.best_val_loss,
            seed: args.seed,
            n_train_windows: fitted.n_train_windows,
            train_run_id: ctx.run_id.clone(),
        },
        dataset: TrainedOn::from_context(ctx)?,
    };
    let bundle = Bundle::from_weights(manifest, fitted.weights)?;
    let model_dir = ctx.output_path("model/flow-model.json")?;
    let model_dir = model_dir.parent().context("model directory")?;
    bundle.save(model_dir)?;
    eprintln!("wrote the model bundle to `{}`", model_dir.display());
    Ok(())
}

/// The `preprocessor.json` of a `process` run.
pub(crate) fn read_preprocessor(process_dir: &Path) -> Result<Preprocessor> {
    let path = process_dir.join("preprocessor.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a valid preprocessor", path.display()))
}

/// The `train` tensor of `data.safetensors`: F32 [N, K] with K = the preprocessor's columns.
fn read_train_split(process_dir: &Path, n_columns: usize) -> Result<(Vec<f32>, usize)> {
    let path = process_dir.join("data.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let train = tensors
        .remove("train")
        .with_context(|| format!("`{}` has no `train` tensor", path.display()))?;
    if train.dtype() != DType::F32 {
        bail!(
            "`train` in `{}` is {:?}, expected F32",
            path.display(),
            train.dtype()
        );
    }
    let (n_rows, k) = train.dims2().with_context(|| {
        format!(
            "`train` in `{}` must be [rows, columns], is {:?}",
            path.display(),
            train.shape()
        )
    })?;
    if k != n_columns {
        bail!(
            "`train` in `{}` has {k} columns, the preprocessor lists {n_columns}",
            path.display()
        );
    }
    let values = train.flatten_all()?.to_vec1::<f32>()?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "`train` in `{}` has a non-finite value at row {}, column {}",
            path.display(),
            i / k,
            i % k
        );
    }
    Ok((values, n_rows))
}

/// `history.json`: one object per epoch with its losses, which evaluate draws as the
/// loss curves (throughput stays in the metrics: it is not a loss).
fn write_history(path: &Path, history: &[EpochReport]) -> Result<()> {
    let epochs: Vec<serde_json::Value> = history
        .iter()
        .map(|r| {
            serde_json::json!({
                "epoch": r.epoch,
                "train_loss": r.train_loss,
                "val_loss": r.val_loss,
                "forecast_loss": r.forecast_loss,
                "recon_loss": r.recon_loss,
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&epochs)?;
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Progress to stderr (a bar on a terminal, one line per epoch otherwise), per-epoch
/// metrics through the step context, and the epochs kept for `history.json`.
struct Progress<'a> {
    ctx: &'a StepContext,
    bar: Option<ProgressBar>,
    interactive: bool,
    history: Vec<EpochReport>,
    /// Epochs requested, for the progress label (`epoch 3/10`).
    epochs: usize,
}

impl<'a> Progress<'a> {
    fn new(ctx: &'a StepContext, epochs: usize) -> Progress<'a> {
        Progress {
            ctx,
            epochs,
            bar: None,
            interactive: std::io::stderr().is_terminal(),
            history: Vec::new(),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl FitObserver for Progress<'_> {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f64) {
        // At most ~100 reports an epoch: the runner redraws a few times a second anyway.
        if done == total || done.is_multiple_of(total.div_ceil(100).max(1)) {
            let label = format!("epoch {epoch}/{}", self.epochs);
            self.ctx.report_progress(&ProgressReport {
                label: &label,
                done: done as u64,
                total: total as u64,
                unit: "batches",
            });
        }
        if !self.interactive {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} batches {msg} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        bar.set_length(total as u64);
        bar.set_prefix(epoch.to_string());
        bar.set_position(done as u64);
        bar.set_message(format!("loss {loss:.4}"));
    }

    fn epoch(&mut self, r: &EpochReport) -> Result<()> {
        let line = format!(
            "epoch {}: train_loss {:.5} (forecast {:.5}, recon {:.5}), val_loss {:.5}, {:.0} windows/s, {:.1}s, max gradient norm {:.3} ({} batches clipped)",
            r.epoch, r.train_loss, r.forecast_loss, r.recon_loss, r.val_loss, r.windows_per_s, r.epoch_seconds, r.max_grad_norm, r.clipped_batches
        );
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
        self.history.push(r.clone());
        self.ctx.log_metrics(
            &[
                ("train_loss", r.train_loss),
                ("val_loss", r.val_loss),
                ("forecast_loss", r.forecast_loss),
                ("recon_loss", r.recon_loss),
                ("windows_per_s", r.windows_per_s),
                ("epoch_seconds", r.epoch_seconds),
                ("max_grad_norm", r.max_grad_norm),
                ("clipped_batches", r.clipped_batches as f64),
            ],
            r.epoch as i64,
        )
    }

    fn event(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocessor::ScalerKind;
    use candle_core::Tensor;
    use std::collections::HashMap;

    /// A processed directory with a smooth 3-feature series.
    fn write_process_dir(dir: &Path, n_rows: usize, window: usize) {
        let k = 3;
        let raw: Vec<f64> = (0..n_rows)
            .flat_map(|t| (0..k).map(move |f| ((t as f64) * 0.3 + f as f64).sin()))
            .collect();
        let columns: Vec<String> = (0..k).map(|f| format!("f{f}")).collect();
        let pre = Preprocessor::fit(&raw, columns, ScalerKind::Minmax, 0.0, vec![0], window);
        let scaled = pre.transform(&raw);
        std::fs::write(
            dir.join("preprocessor.json"),
            serde_json::to_string(&pre).unwrap(),
        )
        .unwrap();
        let train = Tensor::from_vec(scaled.clone(), (n_rows, k), &Device::Cpu).unwrap();
        let test = Tensor::from_vec(scaled, (n_rows, k), &Device::Cpu).unwrap();
        let tensors = HashMap::from([("train".to_string(), train), ("test".to_string(), test)]);
        candle_core::safetensors::save(&tensors, dir.join("data.safetensors")).unwrap();
    }

    fn tiny_args() -> TrainArgs {
        TrainArgs {
            epochs: 2,
            batch_size: 16,
            kernel_size: 3,
            gru_hidden: 8,
            forecast_hidden: 8,
            recon_hidden: 8,
            ..TrainArgs::default()
        }
    }

    #[test]
    fn step_writes_a_loadable_bundle_and_metrics() {
        let process = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        write_process_dir(process.path(), 80, 8);
        let metrics = out.path().join("metrics.jsonl");
        let progress = out.path().join("progress.jsonl");
        let mut ctx = StepContext::for_dirs(out.path().join("run"), &[("process", process.path())]);
        ctx.metrics_path = Some(metrics.clone());
        ctx.progress_path = Some(progress.clone());
        run(&ctx, &tiny_args()).unwrap();
        // Progress the runner can draw: each epoch's batches, ending complete.
        let reports: Vec<serde_json::Value> = std::fs::read_to_string(progress)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let last = reports.last().unwrap();
        assert_eq!(last["label"], "epoch 2/2");
        assert_eq!(last["done"], last["total"]);
        assert_eq!(last["unit"], "batches");
        assert!(reports.iter().any(|r| r["label"] == "epoch 1/2"));
        let bundle = Bundle::load(&out.path().join("run/model")).unwrap();
        assert_eq!(bundle.manifest.trained.epochs, 2);
        assert!(bundle.manifest.trained.best_val_loss.is_finite());
        assert_eq!(bundle.manifest.model.n_target, 1);
        assert_eq!(bundle.manifest.thresholds, Thresholds::default());
        let curves =
            crate::evaluate::figures::read_history(&out.path().join("run/history.json")).unwrap();
        let names: Vec<&str> = curves.iter().map(|(name, _)| name.as_str()).collect();
        assert!(
            names.contains(&"train_loss") && names.contains(&"val_loss"),
            "{names:?}"
        );
        assert!(curves.iter().all(|(_, values)| values.len() == 2));
        let text = std::fs::read_to_string(metrics).unwrap();
        for key in [
            "train_loss",
            "val_loss",
            "forecast_loss",
            "recon_loss",
            "windows_per_s",
            "epoch_seconds",
            "max_grad_norm",
            "clipped_batches",
            "best_val_loss",
        ] {
            assert!(
                text.contains(&format!("\"key\":\"{key}\"")),
                "metric `{key}` missing in {text}"
            );
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let process = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        write_process_dir(process.path(), 9, 8);
        let ctx = StepContext::for_dirs(out.path(), &[("process", process.path())]);
        let err = format!("{:#}", run(&ctx, &tiny_args()).unwrap_err());
        assert!(err.contains("window 8"), "{err}");
        let err = run(
            &ctx,
            &TrainArgs {
                algorithm: "lstm".into(),
                ..tiny_args()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--algorithm lstm"), "{err}");
        let err = run(
            &ctx,
            &TrainArgs {
                kernel_size: 4,
                ..tiny_args()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kernel-size"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let ctx = StepContext::for_dirs(out.path(), &[("process", empty.path())]);
        let err = format!("{:#}", run(&ctx, &tiny_args()).unwrap_err());
        assert!(err.contains("preprocessor.json"), "{err}");
    }
}
