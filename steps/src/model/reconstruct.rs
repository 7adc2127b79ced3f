//! The reconstruction head: the GRU's last hidden state, laid out over W steps, feeds a GRU
//! decoder, and a linear layer maps each decoder state to the target features. ML4ITS
//! `ReconstructionModel` (one decoder layer, so no dropout between GRU layers).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::gru::{Gru, InterleavedLayout};
use super::linear;

/// What the decoder reads at each of its W steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DecoderInput {
    /// ML4ITS's layout, `h.repeat_interleave(W, dim=1).view(B, W, H)`: step t reads
    /// `h[(t*H + j) / W]`, a different slice of h per step. The reference's published
    /// models were trained with it, and it reconstructs better (full MSL, epoch 10:
    /// reconstruction RMSE 0.041 against 0.052 for `repeated`).
    Interleaved,
    /// h itself at every step (the paper's wording). Bundles written before the choice
    /// existed used it.
    Repeated,
}

impl DecoderInput {
    /// The layout of bundles whose manifest predates the field.
    pub fn legacy() -> DecoderInput {
        DecoderInput::Repeated
    }
}

#[derive(Debug, Clone)]
pub struct ReconstructionHead {
    decoder: Gru,
    /// How h spreads over the `window` decoder steps under [`DecoderInput::Interleaved`].
    layout: InterleavedLayout,
    fc: Linear,
}

impl ReconstructionHead {
    /// Keys `decoder.rnn.*` (a GRU) and `fc.weight`, `fc.bias`; reconstructs `window` steps.
    pub fn new(
        in_dim: usize,
        hidden: usize,
        out_dim: usize,
        window: usize,
        vb: VarBuilder,
    ) -> Result<ReconstructionHead> {
        Ok(ReconstructionHead {
            decoder: Gru::new(in_dim, hidden, vb.pp("decoder").pp("rnn"))?,
            layout: InterleavedLayout::new(in_dim, window, vb.device())?,
            fc: linear(hidden, out_dim, vb.pp("fc"))?,
        })
    }

    /// [B, H_in] -> [B, W, n_target].
    pub fn forward(&self, h_end: &Tensor, input: DecoderInput) -> Result<Tensor> {
        let states = match input {
            DecoderInput::Interleaved => self.decoder.forward_interleaved(h_end, &self.layout)?,
            DecoderInput::Repeated => self.decoder.forward_constant(h_end, self.layout.steps())?,
        };
        let (batch, steps, hidden) = states.dims3()?;
        let out = self.fc.forward(&states.reshape((batch * steps, hidden))?)?;
        out.reshape((batch, steps, ()))
    }
}
