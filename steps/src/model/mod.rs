//! MTAD-GAT (Zhao et al., "Multivariate Time-series Anomaly Detection via Graph Attention
//! Network", ICDM 2020, arXiv 2009.02040) in candle.
//!
//! Architecture and defaults follow the public reference ML4ITS/mtad-gat-pytorch, and the
//! safetensors keys are its state-dict names (`conv.conv.weight`, `feature_gat.lin.weight`,
//! `gru.gru.weight_ih_l0`, `forecasting_model.layers.0.weight`, `recon_model.fc.weight`, ...):
//!
//! ```text
//! x [B,W,K] -> conv -> c [B,W,K]
//!   c -> feature-oriented GAT -> [B,W,K]     c -> time-oriented GAT -> [B,W,K]
//!   [c, feat, time] [B,W,3K] -> GRU -> h [B,H]
//!   h -> forecasting MLP -> next row [B,n_target]
//!   h -> GRU decoder (h repeated W times) -> reconstruction [B,W,n_target]
//! ```
//! The expensive parts run in fused kernels: [`gat_op`] (a whole GATv2 layer, its logits
//! computed by [`gat_kernel`] without the pairwise tensor) and [`gru_kernel`] (the GRU
//! recurrence with its own BPTT).

pub mod adam;
pub mod alloc;
pub mod conv;
pub mod dense;
pub mod fit;
pub mod forecast;
pub mod gat;
pub mod gat_kernel;
pub mod gat_op;
pub mod gru;
pub mod gru_input;
pub mod gru_kernel;
pub mod init;
pub mod linalg;
pub mod packed_gemm;
pub mod reconstruct;
pub mod simd;
pub mod softmax;

use std::sync::Arc;

use anyhow::bail;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use gat::GatKind;
pub use reconstruct::DecoderInput;

use conv::ConvLayer;
use dense::DenseLayer;
use forecast::ForecastHead;
use gat::{GraphAttention, Orientation};
use gru::Gru;
use init::{torch_default, SeededDropout};
use reconstruct::ReconstructionHead;

/// Which heads are trained and scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Forecast,
    Reconstruct,
    Both,
}

impl Mode {
    pub fn forecasts(self) -> bool {
        matches!(self, Mode::Forecast | Mode::Both)
    }

    pub fn reconstructs(self) -> bool {
        matches!(self, Mode::Reconstruct | Mode::Both)
    }
}

/// Hyper-parameters; stored in the bundle manifest so a model can be rebuilt from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// K: input features.
    pub n_features: usize,
    /// W: window length.
    pub window: usize,
    /// Features forecast and reconstructed (the target dims).
    pub n_target: usize,
    pub kernel_size: usize,
    pub gat: GatKind,
    pub gru_hidden: usize,
    /// Hidden Linear layers of the forecasting MLP (an output layer comes on top).
    pub forecast_layers: usize,
    pub forecast_hidden: usize,
    pub recon_hidden: usize,
    #[serde(default = "DecoderInput::legacy")]
    pub decoder_input: DecoderInput,
    pub dropout: f64,
    /// Negative slope of the attention LeakyReLU.
    pub alpha: f64,
    pub mode: Mode,
}

impl Config {
    /// The published settings (ML4ITS args.py defaults, as used for its MSL/SMAP/SMD outputs).
    pub fn paper(n_features: usize, window: usize, n_target: usize) -> Config {
        Config {
            n_features,
            window,
            n_target,
            kernel_size: 7,
            gat: GatKind::Gatv2,
            gru_hidden: 150,
            forecast_layers: 3,
            forecast_hidden: 150,
            recon_hidden: 150,
            decoder_input: DecoderInput::Interleaved,
            dropout: 0.3,
            alpha: 0.2,
            mode: Mode::Both,
        }
    }

    /// Rejects settings the network cannot be built with, naming the parameter.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("n_features", self.n_features),
            ("window", self.window),
            ("n_target", self.n_target),
            ("kernel-size", self.kernel_size),
            ("gru-hidden", self.gru_hidden),
            ("forecast-layers", self.forecast_layers),
            ("forecast-hidden", self.forecast_hidden),
            ("recon-hidden", self.recon_hidden),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("model parameter `{name}` must be at least 1");
            }
        }
        if self.kernel_size.is_multiple_of(2) {
            bail!(
                "`--kernel-size` must be odd (same-length padding), got {}",
                self.kernel_size
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("`--dropout` must be in [0, 1), got {}", self.dropout);
        }
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            bail!(
                "`--alpha` must be a non-negative number, got {}",
                self.alpha
            );
        }
        if self.n_target > self.n_features {
            bail!(
                "{} target features but only {} input features",
                self.n_target,
                self.n_features
            );
        }
        Ok(())
    }
}

/// What one forward pass produces; a head is skipped when the mode does not use it.
#[derive(Debug, Clone)]
pub struct Output {
    /// [B, n_target]: the row after the window.
    pub forecast: Option<Tensor>,
    /// [B, W, n_target]: the window itself.
    pub reconstruction: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct MtadGat {
    conv: ConvLayer,
    feature_gat: GraphAttention,
    temporal_gat: GraphAttention,
    gru: Gru,
    forecast: ForecastHead,
    reconstruction: ReconstructionHead,
    dropout: Arc<SeededDropout>,
    cfg: Config,
}

impl MtadGat {
    /// Builds (or, from a loaded var builder, restores) the network. Dropout masks start
    /// from `seed`; see [`MtadGat::reseed_dropout`].
    pub fn new(cfg: &Config, vb: VarBuilder, seed: u64) -> Result<MtadGat> {
        let dropout = Arc::new(SeededDropout::new(seed ^ 0x5EED_D20F));
        let (k, w) = (cfg.n_features, cfg.window);
        Ok(MtadGat {
            conv: ConvLayer::new(k, cfg.kernel_size, vb.pp("conv").pp("conv"))?,
            feature_gat: GraphAttention::new(
                cfg.gat,
                Orientation::Feature,
                w,
                k,
                cfg.alpha,
                cfg.dropout,
                dropout.clone(),
                vb.pp("feature_gat"),
            )?,
            temporal_gat: GraphAttention::new(
                cfg.gat,
                Orientation::Time,
                w,
                k,
                cfg.alpha,
                cfg.dropout,
                dropout.clone(),
                vb.pp("temporal_gat"),
            )?,
            gru: Gru::new(3 * k, cfg.gru_hidden, vb.pp("gru").pp("gru"))?,
            forecast: ForecastHead::new(
                cfg.gru_hidden,
                cfg.forecast_hidden,
                cfg.n_target,
                cfg.forecast_layers,
                cfg.dropout,
                dropout.clone(),
                vb.pp("forecasting_model"),
            )?,
            reconstruction: ReconstructionHead::new(
                cfg.gru_hidden,
                cfg.recon_hidden,
                cfg.n_target,
                w,
                cfg.decoder_input,
                vb.pp("recon_model"),
            )?,
            dropout,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Restarts the dropout mask sequence (the trainer does this once, from `--seed`).
    pub fn reseed_dropout(&self, seed: u64) {
        self.dropout.reseed(seed);
    }

    /// x [B, W, K] -> forecast [B, n_target] and reconstruction [B, W, n_target].
    /// `train` turns dropout on.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Output> {
        let h_end = self.encode(xs, train)?;
        let forecast = match self.cfg.mode.forecasts() {
            true => Some(self.forecast.forward(&h_end, train)?),
            false => None,
        };
        let reconstruction = match self.cfg.mode.reconstructs() {
            true => Some(self.reconstruction.forward(&h_end)?),
            false => None,
        };
        Ok(Output {
            forecast,
            reconstruction,
        })
    }

    /// x [B, W, K] -> the GRU's last hidden state [B, H].
    fn encode(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (_, window, n_features) = xs.dims3()?;
        if window != self.cfg.window || n_features != self.cfg.n_features {
            candle_core::bail!(
                "mtad-gat: input is [B, {window}, {n_features}], the model expects [B, {}, {}]",
                self.cfg.window,
                self.cfg.n_features
            )
        }
        let conv = self.conv.forward(xs)?;
        let h_feat = self.feature_gat.forward(&conv, train)?;
        let h_time = self.temporal_gat.forward(&conv, train)?;
        let joined = Tensor::cat(&[&conv, &h_feat, &h_time], 2)?;
        let states = self.gru.forward(&joined)?;
        states.narrow(1, window - 1, 1)?.squeeze(1)
    }
}

/// A `nn.Linear` with PyTorch's default initialisation; keys `weight` [out, in], `bias` [out].
pub(crate) fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<DenseLayer> {
    let init = torch_default(in_dim);
    Ok(DenseLayer {
        weight: vb.get_with_hints((out_dim, in_dim), "weight", init)?,
        bias: vb.get_with_hints(out_dim, "bias", init)?,
    })
}

#[cfg(test)]
mod tests;
