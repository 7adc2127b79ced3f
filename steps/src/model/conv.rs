//! The 1-D convolution in front of the attention layers: zero padding of (k-1)/2 on both
//! sides, Conv1d(K -> K channels, kernel k) over time, ReLU. ML4ITS `ConvLayer`.
//!
//! It is one dense layer over the unfolded windows ([B*W, k*K] x [k*K, K], bias and ReLU
//! fused by [`Dense`]). The unfolding is an op of its own ([`Unfold`]): row copies forward,
//! their sum back into the input rows backward. In candle ops the padding, the k shifted
//! views and their concatenation (copied element by element, the views being strided)
//! cost ten times the GEMM.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::dense::Dense;
use super::init::torch_default;
use super::linalg::values;

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

    /// [B, W, K] -> [B, W, K].
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let n_features = xs.dim(2)?;
        let unfolded = xs.contiguous()?.apply_op1(Unfold {
            kernel: self.kernel_size,
        })?;
        // Row c_out, column shift*K + c_in holds weight[c_out, c_in, shift].
        let kernel = self
            .weight
            .permute((0, 2, 1))?
            .reshape((n_features, self.kernel_size * n_features))?;
        Dense::apply(&unfolded, &kernel, &self.bias, true)
    }
}

/// Windows per rayon task.
const WINDOWS_PER_TASK: usize = 8;

/// `x` [B, W, C] -> [B, W, k*C]: row (b, t) holds rows t - pad .. t + pad of window b
/// (shift s at columns s*C ..), zeros past its ends; k odd, pad (k-1)/2.
pub struct Unfold {
    pub kernel: usize,
}

impl Unfold {
    /// Unfolds the windows `x` ([n, W, C]) into `out` ([n, W, k*C], zeroed).
    fn unfold(&self, x: &[f32], window: usize, channels: usize, out: &mut [f32]) {
        let (w, c, k) = (window, channels, self.kernel);
        for (window, out) in x.chunks_exact(w * c).zip(out.chunks_exact_mut(w * k * c)) {
            for (t, row) in out.chunks_exact_mut(k * c).enumerate() {
                for (s, tap) in row.chunks_exact_mut(c).enumerate() {
                    if let Some(src) = self.source(t, s, w) {
                        tap.copy_from_slice(&window[src * c..][..c]);
                    }
                }
            }
        }
    }

    /// The reverse of [`Unfold::unfold`]: adds each unfolded row's taps back to `dx`.
    fn fold_add(&self, unfolded: &[f32], window: usize, channels: usize, dx: &mut [f32]) {
        let (w, c, k) = (window, channels, self.kernel);
        for (rows, dx) in unfolded
            .chunks_exact(w * k * c)
            .zip(dx.chunks_exact_mut(w * c))
        {
            for (t, row) in rows.chunks_exact(k * c).enumerate() {
                for (s, tap) in row.chunks_exact(c).enumerate() {
                    if let Some(dst) = self.source(t, s, w) {
                        dx[dst * c..][..c]
                            .iter_mut()
                            .zip(tap)
                            .for_each(|(d, g)| *d += g);
                    }
                }
            }
        }
    }

    /// The input row that output row `t`'s shift `s` reads, if inside the window.
    fn source(&self, t: usize, s: usize, window: usize) -> Option<usize> {
        (t + s)
            .checked_sub((self.kernel - 1) / 2)
            .filter(|&r| r < window)
    }
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "unfold"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, window, channels) = layout.shape().dims3()?;
        if self.kernel.is_multiple_of(2) {
            candle_core::bail!("unfold: kernel {} must be odd", self.kernel)
        }
        let x = super::linalg::contiguous_f32(storage, layout, "unfold", "x")?;
        let width = self.kernel * channels;
        let mut out = vec![0f32; batch * window * width];
        if window * channels > 0 {
            out.par_chunks_mut(WINDOWS_PER_TASK * window * width)
                .zip(x.par_chunks(WINDOWS_PER_TASK * window * channels))
                .for_each(|(out, x)| self.unfold(x, window, channels, out));
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, window, width))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, window, channels) = x.dims3()?;
        let width = self.kernel * channels;
        let grad = grad_res.contiguous()?;
        let grad_v = values(&grad, "unfold", "gradient")?;
        let mut dx = vec![0f32; x.elem_count()];
        if window * channels > 0 {
            dx.par_chunks_mut(WINDOWS_PER_TASK * window * channels)
                .zip(grad_v.get().par_chunks(WINDOWS_PER_TASK * window * width))
                .for_each(|(dx, grad)| self.fold_add(grad, window, channels, dx));
        }
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::seeded_var_builder;
    use crate::model::linalg::max_abs_diff;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn matches_candle_conv1d_with_same_padding_forward_and_backward() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let conv = ConvLayer::new(3, 5, seeded_var_builder(&varmap, 2, &device)).unwrap();
        // 11 windows: a full task of 8 and a short one.
        let xs = Var::from_tensor(&Tensor::randn(0f32, 1.0, (11, 9, 3), &device).unwrap()).unwrap();
        let ours = conv.forward(&xs).unwrap();
        assert_eq!(ours.dims(), &[11, 9, 3]);
        // The unfolded product in plain candle ops (pad, shifted views, one matmul), which
        // candle differentiates itself.
        let padded = xs.pad_with_zeros(1, 2, 2).unwrap();
        let taps: Vec<Tensor> = (0..5).map(|s| padded.narrow(1, s, 9).unwrap()).collect();
        let unfolded = Tensor::cat(&taps, 2).unwrap();
        let kernel = conv
            .weight
            .permute((0, 2, 1))
            .unwrap()
            .reshape((3, 15))
            .unwrap();
        let reference = unfolded
            .broadcast_matmul(&kernel.t().unwrap())
            .unwrap()
            .broadcast_add(&conv.bias)
            .unwrap()
            .relu()
            .unwrap();
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff < 1e-5, "differs by {diff}");

        let upstream = Tensor::randn(0f32, 1.0, (11, 9, 3), &device).unwrap();
        let grads = |out: &Tensor| {
            (out * &upstream)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g_ours, g_ref) = (grads(&ours), grads(&reference));
        let vars = varmap.all_vars();
        for v in vars.iter().chain([&xs]) {
            let diff = max_abs_diff(g_ours.get(v).unwrap(), g_ref.get(v).unwrap());
            assert!(diff < 1e-4, "gradient of {:?} differs by {diff}", v.shape());
        }
    }
}
