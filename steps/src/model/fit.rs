//! The training loop: sliding windows cut on the fly, Adam, gradient clipping, best-validation
//! weights, and a guard that rolls back instead of ever keeping non-finite weights.
//!
//! Mirrors ML4ITS `Trainer.fit`: loss = sqrt(MSE(forecast, y)) + sqrt(MSE(recon, x)) on the
//! target dims; an epoch's loss per term is sqrt(mean of the batch losses squared).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use super::init::{seeded_var_builder, SplitMix64};
use super::{Config, MtadGat};

mod step;
pub use step::{StepOutcome, Trainer};

/// Settings of one training run (the model's own settings live in [`Config`]).
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Share of windows held out for validation.
    pub val_split: f64,
    /// Which windows are held out.
    pub val_windows: ValWindows,
    /// Maximum global gradient norm; 0 turns clipping off.
    pub clip_norm: f64,
    pub seed: u64,
    /// Use at most this many windows, evenly spaced over the series (0 = all).
    pub max_windows: usize,
    /// Testing hook: the loss of these global batch numbers is replaced by NaN.
    pub inject_nan_at: Vec<usize>,
}

/// Which windows validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ValWindows {
    /// A seeded random share, as the reference (ML4ITS shuffles the window indices before
    /// it splits). On a concatenated dataset such as MSL every channel is trained on.
    #[default]
    Random,
    /// The last share in time order. On concatenated channels that holds out whole
    /// channels (the last ~3 of MSL's 27), which the model then never learns.
    Last,
}

/// One epoch's figures, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub forecast_loss: f64,
    pub recon_loss: f64,
    /// The training loss when there is no validation split.
    pub val_loss: f64,
    pub windows_per_s: f64,
    pub epoch_seconds: f64,
    pub lr: f64,
    /// Batches whose global gradient norm exceeded `clip_norm` and were scaled down.
    pub clipped_batches: usize,
    /// The largest global gradient norm of the epoch (before clipping).
    pub max_grad_norm: f64,
}

/// Receives progress while training runs.
pub trait FitObserver {
    /// After every optimisation step.
    fn batch(&mut self, _epoch: usize, _done: usize, _total: usize, _loss: f64) {}
    fn epoch(&mut self, report: &EpochReport) -> Result<()>;
    /// Rollbacks and other notable events, one line each.
    fn event(&mut self, message: &str);
}

/// The outcome: the best weights and how they were found.
#[derive(Debug)]
pub struct Fitted {
    pub weights: HashMap<String, Tensor>,
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub n_train_windows: usize,
    pub n_val_windows: usize,
    pub rollbacks: usize,
}

/// Rollbacks allowed before training gives up (the learning rate halves at each one).
const MAX_ROLLBACKS: usize = 12;

/// Trains on `series` (row-major [n_rows, cfg.n_features], already scaled).
pub fn fit(
    series: &[f32],
    n_rows: usize,
    target_dims: &[usize],
    cfg: &Config,
    opts: &FitOptions,
    observer: &mut dyn FitObserver,
) -> Result<Fitted> {
    cfg.validate()?;
    check_options(opts)?;
    super::alloc::tune_for_tensors();
    let windows = Windows::new(series, n_rows, cfg, target_dims)?;
    let (train_idx, val_idx) = split_windows(windows.count(), opts)?;
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = MtadGat::new(
        cfg,
        seeded_var_builder(&varmap, opts.seed, &device),
        opts.seed,
    )
    .context("cannot build the MTAD-GAT network")?;
    model.reseed_dropout(opts.seed.wrapping_add(1));
    let mut lr = opts.lr;
    let mut trainer = Trainer::new(&model, &varmap, lr, opts.clip_norm)?;
    let mut rng = SplitMix64::new(opts.seed ^ 0x5348_5546_464C_4521);
    let mut last_good = snapshot(trainer.vars())?;
    let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
    let mut rollbacks = 0;
    let mut global_batch = 0;
    for epoch in 1..=opts.epochs {
        let epoch_start = Instant::now();
        let mut order = train_idx.clone();
        rng.shuffle(&mut order);
        let n_batches = order.len().div_ceil(opts.batch_size);
        let mut sums = LossSums::default();
        let (mut clipped_batches, mut max_grad_norm) = (0, 0f64);
        for (batch_no, batch) in order.chunks(opts.batch_size).enumerate() {
            global_batch += 1;
            let (xs, ys, xs_target) = windows.batch(batch, &device)?;
            let poison = opts.inject_nan_at.contains(&global_batch);
            match trainer.step(&xs, &ys, &xs_target, poison)? {
                StepOutcome::Updated {
                    loss,
                    forecast_loss,
                    recon_loss,
                    grad_norm,
                    clipped,
                } => {
                    max_grad_norm = max_grad_norm.max(grad_norm);
                    clipped_batches += usize::from(clipped);
                    sums.add(forecast_loss, recon_loss, batch.len());
                    observer.batch(epoch, batch_no + 1, n_batches, loss);
                }
                StepOutcome::NonFinite { loss_finite } => {
                    rollbacks += 1;
                    if rollbacks > MAX_ROLLBACKS {
                        bail!("training diverged: {rollbacks} non-finite losses or gradients; last learning rate {lr:e}");
                    }
                    restore(trainer.vars(), &last_good)?;
                    lr /= 2.0;
                    trainer.restart_optimizer(lr);
                    observer.event(&format!(
                        "epoch {epoch}, batch {}: non-finite {} -> rolled back to the last good weights, learning rate halved to {lr:e}",
                        batch_no + 1,
                        if loss_finite { "gradient" } else { "loss" }
                    ));
                }
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        if !all_finite(trainer.vars())? {
            rollbacks += 1;
            restore(trainer.vars(), &last_good)?;
            lr /= 2.0;
            trainer.restart_optimizer(lr);
            observer.event(&format!(
                "epoch {epoch}: non-finite weights -> rolled back, learning rate halved to {lr:e}"
            ));
            if rollbacks > MAX_ROLLBACKS {
                bail!("training diverged: {rollbacks} rollbacks; last learning rate {lr:e}");
            }
            continue;
        }
        last_good = snapshot(trainer.vars())?;
        let (forecast_loss, recon_loss) = sums.epoch_losses();
        let train_loss = forecast_loss + recon_loss;
        let val_loss = match val_idx.is_empty() {
            true => train_loss,
            false => evaluate(&model, &windows, &val_idx, opts.batch_size, &device)?,
        };
        if val_loss.is_finite() && best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            best = Some((val_loss, epoch, snapshot(trainer.vars())?));
        }
        observer.epoch(&EpochReport {
            epoch,
            train_loss,
            forecast_loss,
            recon_loss,
            val_loss,
            windows_per_s: train_idx.len() as f64 / train_seconds.max(1e-9),
            epoch_seconds: epoch_start.elapsed().as_secs_f64(),
            lr,
            clipped_batches,
            max_grad_norm,
        })?;
    }
    let (best_val_loss, best_epoch, weights) = match best {
        Some(best) => best,
        None => {
            // No finished epoch (epochs = 0 or every epoch rolled back): keep the finite start.
            let loss = evaluate(
                &model,
                &windows,
                if val_idx.is_empty() {
                    &train_idx
                } else {
                    &val_idx
                },
                opts.batch_size,
                &device,
            )?;
            (loss, 0, last_good)
        }
    };
    Ok(Fitted {
        weights,
        best_val_loss,
        best_epoch,
        n_train_windows: train_idx.len(),
        n_val_windows: val_idx.len(),
        rollbacks,
    })
}

/// Mean validation loss of `model` over windows `idx`, without dropout.
pub fn evaluate(
    model: &MtadGat,
    windows: &Windows,
    idx: &[usize],
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let mut sums = LossSums::default();
    for batch in idx.chunks(batch_size.max(1)) {
        let (xs, ys, xs_target) = windows.batch(batch, device)?;
        let out = model.forward(&xs, false)?;
        let (_, fc, rec) = losses(&out, &ys, &xs_target)?;
        sums.add(fc, rec, batch.len());
    }
    let (fc, rec) = sums.epoch_losses();
    Ok(fc + rec)
}

/// Sliding windows over a series, cut when a batch is assembled: window i is rows i..i+W,
/// its forecast target row i+W.
pub struct Windows<'a> {
    series: &'a [f32],
    n_features: usize,
    window: usize,
    targets: Vec<usize>,
    count: usize,
}

impl<'a> Windows<'a> {
    pub fn new(
        series: &'a [f32],
        n_rows: usize,
        cfg: &Config,
        targets: &[usize],
    ) -> Result<Windows<'a>> {
        if series.len() != n_rows * cfg.n_features {
            bail!(
                "training data has {} values, expected {n_rows} rows x {} columns",
                series.len(),
                cfg.n_features
            );
        }
        if n_rows <= cfg.window + 1 {
            bail!(
                "training needs more than window + 1 = {} rows (window {}), the training split has {n_rows}",
                cfg.window + 1,
                cfg.window
            );
        }
        if targets.len() != cfg.n_target || targets.iter().any(|&d| d >= cfg.n_features) {
            bail!(
                "target dims {targets:?} do not fit {} outputs over {} columns",
                cfg.n_target,
                cfg.n_features
            );
        }
        Ok(Windows {
            series,
            n_features: cfg.n_features,
            window: cfg.window,
            targets: targets.to_vec(),
            count: n_rows - cfg.window,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// (x [B, W, K], y [B, n_target], x on the target dims [B, W, n_target]).
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
        let (k, w, nt) = (self.n_features, self.window, self.targets.len());
        let mut xs = Vec::with_capacity(idx.len() * w * k);
        let mut ys = Vec::with_capacity(idx.len() * nt);
        let mut xt = Vec::with_capacity(idx.len() * w * nt);
        for &i in idx {
            let rows = &self.series[i * k..(i + w) * k];
            xs.extend_from_slice(rows);
            for row in rows.chunks_exact(k) {
                xt.extend(self.targets.iter().map(|&d| row[d]));
            }
            let next = &self.series[(i + w) * k..(i + w + 1) * k];
            ys.extend(self.targets.iter().map(|&d| next[d]));
        }
        let b = idx.len();
        Ok((
            Tensor::from_vec(xs, (b, w, k), device)?,
            Tensor::from_vec(ys, (b, nt), device)?,
            Tensor::from_vec(xt, (b, w, nt), device)?,
        ))
    }
}

fn check_options(opts: &FitOptions) -> Result<()> {
    if opts.batch_size == 0 {
        bail!("`--batch-size` must be at least 1");
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        bail!("`--lr` must be a positive number, got {}", opts.lr);
    }
    if !(0.0..1.0).contains(&opts.val_split) {
        bail!("`--val-split` must be in [0, 1), got {}", opts.val_split);
    }
    if !(opts.clip_norm.is_finite() && opts.clip_norm >= 0.0) {
        bail!(
            "`--clip-norm` must be 0 (off) or positive, got {}",
            opts.clip_norm
        );
    }
    Ok(())
}

/// Training and validation window indices (`val_split` of them validate), each sorted.
fn split_windows(n_windows: usize, opts: &FitOptions) -> Result<(Vec<usize>, Vec<usize>)> {
    let used: Vec<usize> = match opts.max_windows {
        0 => (0..n_windows).collect(),
        cap if cap >= n_windows => (0..n_windows).collect(),
        cap => (0..cap).map(|i| i * n_windows / cap).collect(),
    };
    let n_val = (opts.val_split * used.len() as f64).floor() as usize;
    let n_train = used.len() - n_val;
    if n_train == 0 {
        bail!(
            "no training windows left after the validation split ({} windows in all)",
            used.len()
        );
    }
    match opts.val_windows {
        ValWindows::Last => Ok((used[..n_train].to_vec(), used[n_train..].to_vec())),
        ValWindows::Random => {
            let mut shuffled = used;
            SplitMix64::new(opts.seed ^ 0x5641_4C49_4441_5445).shuffle(&mut shuffled);
            let (val, train) = shuffled.split_at(n_val);
            let (mut train, mut val) = (train.to_vec(), val.to_vec());
            train.sort_unstable();
            val.sort_unstable();
            Ok((train, val))
        }
    }
}

/// (total loss, forecast RMSE, reconstruction RMSE); a term is 0 when its head is off.
fn losses(out: &super::Output, ys: &Tensor, xs_target: &Tensor) -> Result<(Tensor, f64, f64)> {
    let mut total: Option<Tensor> = None;
    let mut add = |term: Tensor| -> Result<()> {
        total = Some(match total.take() {
            Some(t) => (t + term)?,
            None => term,
        });
        Ok(())
    };
    let mut fc_value = 0.0;
    let mut rec_value = 0.0;
    if let Some(fc) = &out.forecast {
        let term = (fc - ys)?.sqr()?.mean_all()?.sqrt()?;
        fc_value = term.to_scalar::<f32>()? as f64;
        add(term)?;
    }
    if let Some(rec) = &out.reconstruction {
        let term = (rec - xs_target)?.sqr()?.mean_all()?.sqrt()?;
        rec_value = term.to_scalar::<f32>()? as f64;
        add(term)?;
    }
    let total = total.context("the model mode enables no head")?;
    Ok((total, fc_value, rec_value))
}

#[derive(Default)]
struct LossSums {
    forecast_sq: f64,
    recon_sq: f64,
    batches: usize,
}

impl LossSums {
    fn add(&mut self, fc: f64, rec: f64, _windows: usize) {
        self.forecast_sq += fc * fc;
        self.recon_sq += rec * rec;
        self.batches += 1;
    }

    fn epoch_losses(&self) -> (f64, f64) {
        let n = self.batches.max(1) as f64;
        ((self.forecast_sq / n).sqrt(), (self.recon_sq / n).sqrt())
    }
}

/// Variables in name order, so reductions over them run in a fixed order.
fn sorted_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map poisoned"))?;
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(vars)
}

fn all_finite(vars: &[(String, Var)]) -> Result<bool> {
    for (_, var) in vars {
        let total = var.as_tensor().sum_all()?.to_scalar::<f32>()?;
        if !total.is_finite() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deep copies (a `Var` updates its storage in place, so clones would follow it).
fn snapshot(vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
    vars.iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)))
        .collect()
}

fn restore(vars: &[(String, Var)], weights: &HashMap<String, Tensor>) -> Result<()> {
    for (name, var) in vars {
        let saved = weights
            .get(name)
            .with_context(|| format!("no saved weights for `{name}`"))?;
        var.set(saved)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
