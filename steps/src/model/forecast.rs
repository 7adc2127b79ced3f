//! The forecasting head: an MLP from the GRU's last hidden state to the next row's target
//! features. ML4ITS `Forecasting_Model` builds `n_layers` hidden Linear layers plus the output
//! layer (4 Linear layers for the published n_layers = 3), ReLU and dropout after each hidden one.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::dense::DenseLayer;
use super::init::SeededDropout;
use super::linear;

#[derive(Debug, Clone)]
pub struct ForecastHead {
    layers: Vec<DenseLayer>,
    dropout: f64,
    rng: Arc<SeededDropout>,
}

impl ForecastHead {
    /// Keys `layers.{i}.weight`, `layers.{i}.bias` for i in 0..=n_layers.
    pub fn new(
        in_dim: usize,
        hidden: usize,
        out_dim: usize,
        n_layers: usize,
        dropout: f64,
        rng: Arc<SeededDropout>,
        vb: VarBuilder,
    ) -> Result<ForecastHead> {
        let vb = vb.pp("layers");
        let mut layers = vec![linear(in_dim, hidden, vb.pp(0))?];
        for i in 1..n_layers {
            layers.push(linear(hidden, hidden, vb.pp(i))?);
        }
        layers.push(linear(hidden, out_dim, vb.pp(n_layers))?);
        Ok(ForecastHead {
            layers,
            dropout,
            rng,
        })
    }

    /// [B, H] -> [B, n_target].
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (output, hidden) = self.layers.split_last().expect("at least one layer");
        let mut xs = xs.clone();
        for layer in hidden {
            xs = self
                .rng
                .apply(&layer.forward_relu(&xs)?, self.dropout, train)?;
        }
        output.forward(&xs)
    }

    pub fn n_linear_layers(&self) -> usize {
        self.layers.len()
    }
}
