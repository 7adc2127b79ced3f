//! The 1-D convolution in front of the attention layers: zero padding of (k-1)/2 on both
//! sides, Conv1d(K -> K channels, kernel k) over time, ReLU. ML4ITS `ConvLayer`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::dense::Dense;
use super::init::torch_default;

#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// PyTorch layout [out_channels, in_channels, kernel].
    weight: Tensor,
    bias: Tensor,
    kernel_size: usize,
}

impl ConvLayer {
    /// Keys `weight` [K, K, k] and `bias` [K]; `kernel_size` must be odd (checked by `Config`).
    pub fn new(n_features: usize, kernel_size: usize, vb: VarBuilder) -> Result<ConvLayer> {
        let fan_in = n_features * kernel_size;
        Ok(ConvLayer {
            weight: vb.get_with_hints(
                (n_features, n_features, kernel_size),
                "weight",
                torch_default(fan_in),
            )?,
            bias: vb.get_with_hints(n_features, "bias", torch_default(fan_in))?,
            kernel_size,
        })
    }

    /// [B, W, K] -> [B, W, K]. Computed as one dense layer over the unfolded windows
    /// ([B*W, k*K] x [k*K, K]), whose backward pass is two more products.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, window, n_features) = xs.dims3()?;
        let pad = (self.kernel_size - 1) / 2;
        let padded = xs.pad_with_zeros(1, pad, pad)?;
        let taps: Vec<Tensor> = (0..self.kernel_size)
            .map(|shift| padded.narrow(1, shift, window))
            .collect::<Result<_>>()?;
        let unfolded = Tensor::cat(&taps, 2)?;
        // Row c_out, column shift*K + c_in holds weight[c_out, c_in, shift].
        let kernel = self
            .weight
            .permute((0, 2, 1))?
            .reshape((n_features, self.kernel_size * n_features))?;
        let out = Dense::apply(&unfolded, &kernel, &self.bias, true)?;
        debug_assert_eq!(out.dims(), [batch, window, n_features]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::seeded_var_builder;
    use crate::model::linalg::max_abs_diff;
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn matches_candle_conv1d_with_same_padding() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let conv = ConvLayer::new(3, 5, seeded_var_builder(&varmap, 2, &device)).unwrap();
        let xs = Tensor::randn(0f32, 1.0, (2, 9, 3), &device).unwrap();
        let ours = conv.forward(&xs).unwrap();
        assert_eq!(ours.dims(), &[2, 9, 3]);
        let reference = xs
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .conv1d(&conv.weight, 2, 1, 1, 1)
            .unwrap()
            .broadcast_add(&conv.bias.unsqueeze(1).unwrap())
            .unwrap()
            .relu()
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff < 1e-5, "differs by {diff}");
    }
}
