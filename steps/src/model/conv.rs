//! The 1-D convolution in front of the attention layers: zero padding of (k-1)/2 on both
//! sides, Conv1d(K -> K channels, kernel k) over time, ReLU. ML4ITS `ConvLayer`.
//!
//! It runs as one op ([`Conv1dRelu`]): each task unfolds a few windows into the
//! [W, k*K] matrix of their shifted rows and multiplies it by the kernel in one GEMM, the
//! bias preloaded and the ReLU in the same pass; backwards, two GEMMs and the unfolding
//! reversed. In candle ops the padding, the k shifted views, their concatenation (copied
//! element by element, the views being strided) and the ReLU each made a pass of their own.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::init::torch_default;
use super::linalg::{gemm, values, Mat, MatMut};

#[derive(Debug, Clone)]
pub struct ConvLayer {
    /// PyTorch layout [out_channels, in_channels, kernel].
    weight: Tensor,
    bias: Tensor,
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
        })
    }

    /// [B, W, K] -> [B, W, K].
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.contiguous()?.apply_op3(
            &self.weight.contiguous()?,
            &self.bias.contiguous()?,
            Conv1dRelu,
        )
    }
}

/// Windows per rayon task (fixed, so results do not depend on the thread count).
const WINDOWS_PER_TASK: usize = 8;

/// Arguments `x` [B, W, C_in], `weight` [C_out, C_in, k] (k odd), `bias` [C_out]; result
/// ReLU(conv(x) + bias) [B, W, C_out], same-length zero padding.
pub struct Conv1dRelu;

#[derive(Clone, Copy)]
struct Dims {
    window: usize,
    c_in: usize,
    c_out: usize,
    kernel: usize,
}

impl Dims {
    fn new(x: &Shape, weight: &Shape, bias: &Shape) -> Result<Dims> {
        let (_, window, c_in) = x.dims3()?;
        let (c_out, w_in, kernel) = weight.dims3()?;
        if w_in != c_in || bias.dims() != [c_out] || kernel.is_multiple_of(2) {
            candle_core::bail!(
                "conv1d-relu: x {x:?}, weight {weight:?} (odd kernel) and bias {bias:?} do not fit"
            )
        }
        Ok(Dims {
            window,
            c_in,
            c_out,
            kernel,
        })
    }

    /// Columns of the unfolded matrix: shift s, channel c at s * C_in + c.
    fn unfolded(&self) -> usize {
        self.kernel * self.c_in
    }

    /// The kernel as a [k * C_in, C_out] matrix: row s * C_in + c, column o = weight[o, c, s].
    fn pack(&self, weight: &[f32]) -> Vec<f32> {
        let mut packed = vec![0f32; self.unfolded() * self.c_out];
        for o in 0..self.c_out {
            for c in 0..self.c_in {
                for s in 0..self.kernel {
                    packed[(s * self.c_in + c) * self.c_out + o] =
                        weight[(o * self.c_in + c) * self.kernel + s];
                }
            }
        }
        packed
    }

    /// Windows `x` ([n, W, C_in]) unfolded into [n * W, k * C_in]: row (b, t) holds rows
    /// t - pad .. t + pad of window b, zeros past its ends.
    fn unfold(&self, x: &[f32]) -> Vec<f32> {
        let (w, c, k) = (self.window, self.c_in, self.kernel);
        let pad = (k - 1) / 2;
        let n = x.len() / (w * c).max(1);
        let mut out = vec![0f32; n * w * k * c];
        for b in 0..n {
            let window = &x[b * w * c..][..w * c];
            for t in 0..w {
                let row = &mut out[(b * w + t) * k * c..][..k * c];
                for s in 0..k {
                    if let Some(src) = (t + s).checked_sub(pad).filter(|&r| r < w) {
                        row[s * c..][..c].copy_from_slice(&window[src * c..][..c]);
                    }
                }
            }
        }
        out
    }

    /// The reverse of [`Dims::unfold`]: adds each unfolded gradient back to its input row.
    fn fold_add(&self, unfolded: &[f32], dx: &mut [f32]) {
        let (w, c, k) = (self.window, self.c_in, self.kernel);
        let pad = (k - 1) / 2;
        let n = dx.len() / (w * c).max(1);
        for b in 0..n {
            let window = &mut dx[b * w * c..][..w * c];
            for t in 0..w {
                let row = &unfolded[(b * w + t) * k * c..][..k * c];
                for s in 0..k {
                    if let Some(dst) = (t + s).checked_sub(pad).filter(|&r| r < w) {
                        window[dst * c..][..c]
                            .iter_mut()
                            .zip(&row[s * c..][..c])
                            .for_each(|(d, g)| *d += g);
                    }
                }
            }
        }
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "conv1d-relu", what)
}

impl CustomOp3 for Conv1dRelu {
    fn name(&self) -> &'static str {
        "conv1d-relu"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::new(x_layout.shape(), w_layout.shape(), b_layout.shape())?;
        let x = contiguous(x_storage, x_layout, "x")?;
        let kernel = dims.pack(contiguous(w_storage, w_layout, "weight")?);
        let bias = contiguous(b_storage, b_layout, "bias")?;
        let (batch, _, _) = x_layout.shape().dims3()?;
        let (w, c_in, c_out) = (dims.window, dims.c_in, dims.c_out);
        let mut out = vec![0f32; batch * w * c_out];
        if w * c_in * c_out > 0 {
            out.par_chunks_mut(WINDOWS_PER_TASK * w * c_out)
                .zip(x.par_chunks(WINDOWS_PER_TASK * w * c_in))
                .for_each(|(out, x)| {
                    let rows = out.len() / c_out;
                    let unfolded = dims.unfold(x);
                    for row in out.chunks_exact_mut(c_out) {
                        row.copy_from_slice(bias);
                    }
                    gemm(
                        Mat::rows(&unfolded, rows, dims.unfolded(), dims.unfolded()),
                        Mat::rows(&kernel, dims.unfolded(), c_out, c_out),
                        MatMut::rows(out, rows, c_out, c_out),
                        true,
                    );
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, w, c_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Dims::new(x.shape(), weight.shape(), bias.shape())?;
        let (w, c_in, c_out) = (dims.window, dims.c_in, dims.c_out);
        let (x_c, w_c, res_c, g_c) = (
            x.contiguous()?,
            weight.contiguous()?,
            res.contiguous()?,
            grad_res.contiguous()?,
        );
        let (x_v, w_v, out_v, g_v) = (
            values(&x_c, "conv1d-relu", "x")?,
            values(&w_c, "conv1d-relu", "weight")?,
            values(&res_c, "conv1d-relu", "result")?,
            values(&g_c, "conv1d-relu", "gradient")?,
        );
        let kernel = dims.pack(w_v.get());
        let unfolded_width = dims.unfolded();
        let mut dx = vec![0f32; x.elem_count()];
        // Per task: d(packed kernel) [k * C_in, C_out] and d(bias) [C_out].
        let partials: Vec<(Vec<f32>, Vec<f32>)> = if w * c_in * c_out == 0 {
            Vec::new()
        } else {
            dx.par_chunks_mut(WINDOWS_PER_TASK * w * c_in)
                .zip(x_v.get().par_chunks(WINDOWS_PER_TASK * w * c_in))
                .zip(out_v.get().par_chunks(WINDOWS_PER_TASK * w * c_out))
                .zip(g_v.get().par_chunks(WINDOWS_PER_TASK * w * c_out))
                .map(|(((dx, x), out), grad)| {
                    let rows = out.len() / c_out;
                    let d_pre: Vec<f32> = grad
                        .iter()
                        .zip(out)
                        .map(|(g, y)| if *y > 0.0 { *g } else { 0.0 })
                        .collect();
                    let d_pre_mat = Mat::rows(&d_pre, rows, c_out, c_out);
                    let unfolded = dims.unfold(x);
                    let mut d_kernel = vec![0f32; unfolded_width * c_out];
                    gemm(
                        Mat::rows(&unfolded, rows, unfolded_width, unfolded_width).t(),
                        d_pre_mat,
                        MatMut::rows(&mut d_kernel, unfolded_width, c_out, c_out),
                        false,
                    );
                    let mut d_unfolded = unfolded;
                    gemm(
                        d_pre_mat,
                        Mat::rows(&kernel, unfolded_width, c_out, c_out).t(),
                        MatMut::rows(&mut d_unfolded, rows, unfolded_width, unfolded_width),
                        false,
                    );
                    dims.fold_add(&d_unfolded, dx);
                    let mut d_bias = vec![0f32; c_out];
                    for row in d_pre.chunks_exact(c_out) {
                        d_bias.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                    }
                    (d_kernel, d_bias)
                })
                .collect()
        };
        let mut d_kernel = vec![0f32; unfolded_width * c_out];
        let mut d_bias = vec![0f32; c_out];
        for (pk, pb) in &partials {
            d_kernel.iter_mut().zip(pk).for_each(|(a, v)| *a += v);
            d_bias.iter_mut().zip(pb).for_each(|(a, v)| *a += v);
        }
        let mut d_weight = vec![0f32; weight.elem_count()];
        for o in 0..c_out {
            for c in 0..c_in {
                for s in 0..dims.kernel {
                    d_weight[(o * c_in + c) * dims.kernel + s] =
                        d_kernel[(s * c_in + c) * c_out + o];
                }
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(d_weight, weight.shape(), device)?),
            Some(Tensor::from_vec(d_bias, bias.shape(), device)?),
        ))
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
