//! One graph-attention layer over a complete graph, used twice on the [W, K] window:
//! feature-oriented (nodes are the K features, each a vector of W values) and time-oriented
//! (nodes are the W timestamps, each a vector of K values). Mirrors ML4ITS
//! `FeatureAttentionLayer`/`TemporalAttentionLayer`.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::gat_op::Gatv2Attention;
use super::init::{torch_default, xavier_uniform, SeededDropout};
use super::softmax::BiasSoftmax;

/// Which attention score the layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GatKind {
    /// Brody et al. 2021: e_ij = a^T LeakyReLU(L [v_i || v_j]); the reference's default.
    Gatv2,
    /// Velickovic et al. 2018: e_ij = LeakyReLU(a^T [L v_i || L v_j]).
    Gat,
}

/// Which way a layer reads the [W, K] window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Nodes are the K features, each a vector of W values.
    Feature,
    /// Nodes are the W timestamps, each a vector of K values.
    Time,
}

#[derive(Debug, Clone)]
pub struct GraphAttention {
    kind: GatKind,
    orientation: Orientation,
    lin_weight: Tensor,
    lin_bias: Tensor,
    a: Tensor,
    /// Learned [N, N] bias added to the logits.
    bias: Tensor,
    embed: usize,
    alpha: f64,
    dropout: f64,
    rng: Arc<SeededDropout>,
}

impl GraphAttention {
    /// A layer over windows of `window` rows and `n_features` columns. Keys: `lin.weight`,
    /// `lin.bias`, `a`, `bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: GatKind,
        orientation: Orientation,
        window: usize,
        n_features: usize,
        alpha: f64,
        dropout: f64,
        rng: Arc<SeededDropout>,
        vb: VarBuilder,
    ) -> Result<GraphAttention> {
        let (nodes, node_dim) = match orientation {
            Orientation::Feature => (n_features, window),
            Orientation::Time => (window, n_features),
        };
        // GATv2 concatenates before the linear map, so both its input and output double.
        let (lin_in, embed, a_dim) = match kind {
            GatKind::Gatv2 => (2 * node_dim, 2 * node_dim, 2 * node_dim),
            GatKind::Gat => (node_dim, node_dim, 2 * node_dim),
        };
        let lin = vb.pp("lin");
        Ok(GraphAttention {
            kind,
            orientation,
            lin_weight: lin.get_with_hints((embed, lin_in), "weight", torch_default(lin_in))?,
            lin_bias: lin.get_with_hints(embed, "bias", torch_default(lin_in))?,
            a: vb.get_with_hints((a_dim, 1), "a", xavier_uniform(1, a_dim, 1.414))?,
            bias: vb.get_with_hints((nodes, nodes), "bias", candle_nn::init::ZERO)?,
            embed,
            alpha,
            dropout,
            rng,
        })
    }

    /// Windows [B, W, K] -> sigmoid(attention @ nodes), in the same [B, W, K] layout.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mask = self.rng.next_mask(self.dropout, train)?;
        let nodes_are_columns = self.orientation == Orientation::Feature;
        match self.kind {
            GatKind::Gatv2 => {
                let params = Tensor::cat(
                    &[
                        &self.lin_bias,
                        &self.a.flatten_all()?,
                        &self.bias.flatten_all()?,
                    ],
                    0,
                )?;
                Gatv2Attention::apply(
                    x,
                    &self.lin_weight,
                    &params,
                    nodes_are_columns,
                    self.alpha,
                    mask,
                )
            }
            GatKind::Gat => {
                let nodes = match nodes_are_columns {
                    true => x.transpose(1, 2)?.contiguous()?,
                    false => x.contiguous()?,
                };
                let attention = BiasSoftmax::apply(&self.gat_logits(&nodes)?, &self.bias)?;
                let attention = match mask {
                    Some(mask) => mask.apply(&attention)?,
                    None => attention,
                };
                let out = candle_nn::ops::sigmoid(&attention.matmul(&nodes)?)?;
                match nodes_are_columns {
                    true => out.transpose(1, 2),
                    false => Ok(out),
                }
            }
        }
    }

    /// GAT's unnormalised scores e [B, N, N] of nodes [B, N, node_dim].
    fn gat_logits(&self, nodes: &Tensor) -> Result<Tensor> {
        let (batch, n, dim) = nodes.dims3()?;
        let wx = nodes
            .reshape((batch * n, dim))?
            .matmul(&self.lin_weight.t()?)?
            .broadcast_add(&self.lin_bias)?
            .reshape((batch, n, self.embed))?;
        let source = wx.broadcast_matmul(&self.a.narrow(0, 0, self.embed)?)?;
        let target = wx.broadcast_matmul(&self.a.narrow(0, self.embed, self.embed)?)?;
        let pairs = source.broadcast_add(&target.transpose(1, 2)?)?;
        candle_nn::ops::leaky_relu(&pairs, self.alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::seeded_var_builder;
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn both_kinds_and_orientations_keep_the_window_layout() {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 4), &device).unwrap();
        for kind in [GatKind::Gatv2, GatKind::Gat] {
            for orientation in [Orientation::Feature, Orientation::Time] {
                let varmap = VarMap::new();
                let rng = Arc::new(SeededDropout::new(0));
                let layer = GraphAttention::new(
                    kind,
                    orientation,
                    6,
                    4,
                    0.2,
                    0.3,
                    rng,
                    seeded_var_builder(&varmap, 1, &device),
                )
                .unwrap();
                let out = layer.forward(&x, true).unwrap();
                assert_eq!(out.dims(), &[2, 6, 4]);
                let out = layer
                    .forward(&x, false)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }
}
