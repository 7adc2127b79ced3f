//! The reconstruction head: the GRU's last hidden state, laid out over W steps, feeds a GRU
//! decoder, and a linear layer maps each decoder state to the target features. ML4ITS
//! `ReconstructionModel` (one decoder layer, so no dropout between GRU layers).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::dense::DenseLayer;
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
    spread: Spread,
    fc: DenseLayer,
}

/// How h reaches the decoder's steps: the layout is built once, with the head.
#[derive(Debug, Clone)]
enum Spread {
    Interleaved(InterleavedLayout),
    Repeated { steps: usize },
}

impl ReconstructionHead {
    /// Keys `decoder.rnn.*` (a GRU) and `fc.weight`, `fc.bias`; reconstructs `window` steps,
    /// the decoder reading `input` at each.
    pub fn new(
        in_dim: usize,
        hidden: usize,
        out_dim: usize,
        window: usize,
        input: DecoderInput,
        vb: VarBuilder,
    ) -> Result<ReconstructionHead> {
        let spread = match input {
            DecoderInput::Interleaved => {
                Spread::Interleaved(InterleavedLayout::new(in_dim, window, vb.device())?)
            }
            DecoderInput::Repeated => Spread::Repeated { steps: window },
        };
        Ok(ReconstructionHead {
            decoder: Gru::new(in_dim, hidden, vb.pp("decoder").pp("rnn"))?,
            spread,
            fc: linear(hidden, out_dim, vb.pp("fc"))?,
        })
    }

    /// [B, H_in] -> [B, W, n_target].
    pub fn forward(&self, h_end: &Tensor) -> Result<Tensor> {
        let states = match &self.spread {
            Spread::Interleaved(layout) => self.decoder.forward_interleaved(h_end, layout)?,
            Spread::Repeated { steps } => self.decoder.forward_constant(h_end, *steps)?,
        };
        self.fc.forward(&states)
    }
}
