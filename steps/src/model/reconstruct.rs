//! The reconstruction head: the GRU's last hidden state repeated W times feeds a GRU decoder,
//! and a linear layer maps each decoder state to the target features. ML4ITS
//! `ReconstructionModel` (one decoder layer, so no dropout between GRU layers).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::gru::Gru;
use super::linear;

#[derive(Debug, Clone)]
pub struct ReconstructionHead {
    decoder: Gru,
    fc: Linear,
}

impl ReconstructionHead {
    /// Keys `decoder.rnn.*` (a GRU) and `fc.weight`, `fc.bias`.
    pub fn new(
        in_dim: usize,
        hidden: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<ReconstructionHead> {
        Ok(ReconstructionHead {
            decoder: Gru::new(in_dim, hidden, vb.pp("decoder").pp("rnn"))?,
            fc: linear(hidden, out_dim, vb.pp("fc"))?,
        })
    }

    /// [B, H_in] -> [B, W, n_target].
    pub fn forward(&self, h_end: &Tensor, window: usize) -> Result<Tensor> {
        let states = self.decoder.forward_constant(h_end, window)?;
        let (batch, steps, hidden) = states.dims3()?;
        let out = self.fc.forward(&states.reshape((batch * steps, hidden))?)?;
        out.reshape((batch, steps, ()))
    }
}
