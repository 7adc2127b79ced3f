//! One graph-attention layer over a complete graph, used twice: feature-oriented (nodes are
//! the K features, each a vector of W values) and time-oriented (nodes are the W timestamps,
//! each a vector of K values). Mirrors ML4ITS `FeatureAttentionLayer`/`TemporalAttentionLayer`.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::gat_kernel::Gatv2Logits;
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

#[derive(Debug, Clone)]
pub struct GraphAttention {
    kind: GatKind,
    lin_weight: Tensor,
    lin_bias: Tensor,
    a: Tensor,
    /// Learned [N, N] bias added to the logits.
    bias: Tensor,
    node_dim: usize,
    embed: usize,
    alpha: f64,
    dropout: f64,
    rng: Arc<SeededDropout>,
}

impl GraphAttention {
    /// `nodes` nodes of dimension `node_dim`. Keys: `lin.weight`, `lin.bias`, `a`, `bias`.
    pub fn new(
        kind: GatKind,
        nodes: usize,
        node_dim: usize,
        alpha: f64,
        dropout: f64,
        rng: Arc<SeededDropout>,
        vb: VarBuilder,
    ) -> Result<GraphAttention> {
        // GATv2 concatenates before the linear map, so both its input and output double.
        let (lin_in, embed, a_dim) = match kind {
            GatKind::Gatv2 => (2 * node_dim, 2 * node_dim, 2 * node_dim),
            GatKind::Gat => (node_dim, node_dim, 2 * node_dim),
        };
        let lin = vb.pp("lin");
        Ok(GraphAttention {
            kind,
            lin_weight: lin.get_with_hints((embed, lin_in), "weight", torch_default(lin_in))?,
            lin_bias: lin.get_with_hints(embed, "bias", torch_default(lin_in))?,
            a: vb.get_with_hints((a_dim, 1), "a", xavier_uniform(1, a_dim, 1.414))?,
            bias: vb.get_with_hints((nodes, nodes), "bias", candle_nn::init::ZERO)?,
            node_dim,
            embed,
            alpha,
            dropout,
            rng,
        })
    }

    /// Nodes [B, N, node_dim] -> sigmoid(attention @ nodes) [B, N, node_dim].
    pub fn forward(&self, nodes: &Tensor, train: bool) -> Result<Tensor> {
        let attention = BiasSoftmax::apply(&self.logits(nodes)?, &self.bias)?;
        let attention = self.rng.apply(&attention, self.dropout, train)?;
        candle_nn::ops::sigmoid(&attention.matmul(&nodes.contiguous()?)?)
    }

    /// Unnormalised scores e [B, N, N].
    fn logits(&self, nodes: &Tensor) -> Result<Tensor> {
        let (batch, n, dim) = nodes.dims3()?;
        let flat = nodes.reshape((batch * n, dim))?;
        let project = |weight: &Tensor, bias: Option<&Tensor>| -> Result<Tensor> {
            let out = flat.matmul(&weight.t()?)?;
            let out = match bias {
                Some(bias) => out.broadcast_add(bias)?,
                None => out,
            };
            out.reshape((batch, n, self.embed))
        };
        match self.kind {
            GatKind::Gatv2 => {
                // L [v_i || v_j] + b = (L1 v_i + b) + L2 v_j.
                let p = project(
                    &self.lin_weight.narrow(1, 0, self.node_dim)?,
                    Some(&self.lin_bias),
                )?;
                let q = project(
                    &self.lin_weight.narrow(1, self.node_dim, self.node_dim)?,
                    None,
                )?;
                Gatv2Logits::apply(&p, &q, &self.a, self.alpha)
            }
            GatKind::Gat => {
                let wx = project(&self.lin_weight, Some(&self.lin_bias))?;
                let source = wx.broadcast_matmul(&self.a.narrow(0, 0, self.embed)?)?;
                let target = wx.broadcast_matmul(&self.a.narrow(0, self.embed, self.embed)?)?;
                let pairs = source.broadcast_add(&target.transpose(1, 2)?)?;
                candle_nn::ops::leaky_relu(&pairs, self.alpha)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::seeded_var_builder;
    use crate::model::linalg::max_abs_diff;
    use candle_core::Device;
    use candle_nn::VarMap;

    /// ML4ITS's formulation: build [v_i || v_j] for every pair, then lin, LeakyReLU, a.
    fn naive_gatv2_logits(layer: &GraphAttention, nodes: &Tensor) -> Tensor {
        let (b, n, d) = nodes.dims3().unwrap();
        let left = nodes
            .unsqueeze(2)
            .unwrap()
            .broadcast_as((b, n, n, d))
            .unwrap();
        let right = nodes
            .unsqueeze(1)
            .unwrap()
            .broadcast_as((b, n, n, d))
            .unwrap();
        let pairs = Tensor::cat(&[left, right], 3).unwrap();
        let pairs = pairs.reshape((b * n * n, 2 * d)).unwrap();
        let lin = pairs
            .matmul(&layer.lin_weight.t().unwrap())
            .unwrap()
            .broadcast_add(&layer.lin_bias)
            .unwrap();
        let act = candle_nn::ops::leaky_relu(&lin, layer.alpha).unwrap();
        act.matmul(&layer.a).unwrap().reshape((b, n, n)).unwrap()
    }

    #[test]
    fn both_kinds_keep_shapes_and_gatv2_matches_the_concatenated_form() {
        let device = Device::Cpu;
        let nodes = Tensor::randn(0f32, 1.0, (2, 4, 6), &device).unwrap();
        for kind in [GatKind::Gatv2, GatKind::Gat] {
            let varmap = VarMap::new();
            let rng = Arc::new(SeededDropout::new(0));
            let layer = GraphAttention::new(
                kind,
                4,
                6,
                0.2,
                0.3,
                rng,
                seeded_var_builder(&varmap, 1, &device),
            )
            .unwrap();
            let out = layer.forward(&nodes, true).unwrap();
            assert_eq!(out.dims(), &[2, 4, 6]);
            let out = layer
                .forward(&nodes, false)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
            if kind == GatKind::Gatv2 {
                let fused = layer.logits(&nodes).unwrap();
                let naive = naive_gatv2_logits(&layer, &nodes);
                let diff = max_abs_diff(&fused, &naive);
                assert!(diff < 1e-5, "logits differ by {diff}");
            }
        }
    }
}
