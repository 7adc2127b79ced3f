//! softmax(logits + bias) over the last dimension as one op with its own backward (GAT's
//! attention), and the row kernels it shares with the fused GATv2 layer.
//!
//! candle's differentiable softmax is five ops (max, sub, exp, sum, div), each a pass over the
//! [B, N, N] attention logits, and its backward is built from those ops again; its fused
//! `softmax_last_dim` has no backward. Here the forward is one pass per row and the
//! backward is the closed form dx = y * (g - sum(g * y)), with the bias gradient summed over
//! the batch in a fixed order (results do not depend on the thread count).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::simd::{self, multiversion};

/// Arguments `logits` [B, N, M] and `bias` [N, M]; result softmax(logits + bias) [B, N, M].
pub struct BiasSoftmax;

impl BiasSoftmax {
    pub fn apply(logits: &Tensor, bias: &Tensor) -> Result<Tensor> {
        logits
            .contiguous()?
            .apply_op2(&bias.contiguous()?, BiasSoftmax)
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "bias-softmax", what)
}

impl CustomOp2 for BiasSoftmax {
    fn name(&self) -> &'static str {
        "bias-softmax"
    }

    fn cpu_fwd(
        &self,
        logits_storage: &CpuStorage,
        logits_layout: &Layout,
        bias_storage: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, rows, cols) = logits_layout.shape().dims3()?;
        if bias_layout.shape().dims() != [rows, cols] {
            candle_core::bail!(
                "bias-softmax: expected bias [{rows}, {cols}], got {:?}",
                bias_layout.shape()
            )
        }
        let logits = contiguous(logits_storage, logits_layout, "logits")?;
        let bias = contiguous(bias_storage, bias_layout, "bias")?;
        let mut out = vec![0f32; batch * rows * cols];
        if rows * cols > 0 {
            out.par_chunks_mut(rows * cols)
                .zip(logits.par_chunks(rows * cols))
                .for_each(|(out, logits)| softmax_rows(logits, bias, cols, out));
        }
        Ok((CpuStorage::F32(out), Shape::from((batch, rows, cols))))
    }

    fn bwd(
        &self,
        _logits: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, rows, cols) = res.dims3()?;
        let y = res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; y.len()];
        if rows * cols > 0 {
            dx.copy_from_slice(&g);
            dx.par_chunks_mut(rows * cols)
                .zip(y.par_chunks(rows * cols))
                .for_each(|(dx, y)| softmax_rows_backward(y, cols, dx));
        }
        let mut dbias = vec![0f32; rows * cols];
        for sample in dx.chunks_exact((rows * cols).max(1)).take(batch) {
            dbias.iter_mut().zip(sample).for_each(|(acc, v)| *acc += v);
        }
        let device = res.device();
        Ok((
            Some(Tensor::from_vec(dx, (batch, rows, cols), device)?),
            Some(Tensor::from_vec(dbias, bias.shape(), device)?),
        ))
    }
}

/// out = softmax(logits + bias) row by row, rows of `cols`.
pub fn softmax_rows(logits: &[f32], bias: &[f32], cols: usize, out: &mut [f32]) {
    for ((out, logits), bias) in out
        .chunks_exact_mut(cols)
        .zip(logits.chunks_exact(cols))
        .zip(bias.chunks_exact(cols))
    {
        softmax_row(logits, bias, out);
    }
}

multiversion! {
    /// out = softmax(logits + bias) for one row.
    fn softmax_row(logits: &[f32], bias: &[f32], out: &mut [f32]) {
        for ((out, l), b) in out.iter_mut().zip(logits).zip(bias) {
            *out = l + b;
        }
        let max = simd::max(out);
        out.iter_mut().for_each(|v| *v = simd::exp(*v - max));
        let inv = 1.0 / simd::sum(out);
        out.iter_mut().for_each(|v| *v *= inv);
    }
}

multiversion! {
    /// The backward pass of [`softmax_rows`]: `grad` (rows of `cols`) becomes
    /// dlogits = y (grad - sum(grad y)), row by row.
    pub fn softmax_rows_backward(y: &[f32], cols: usize, grad: &mut [f32]) {
        for (g, y) in grad.chunks_exact_mut(cols).zip(y.chunks_exact(cols)) {
            let dot = simd::dot(g, y);
            g.iter_mut().zip(y).for_each(|(g, y)| *g = y * (*g - dot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linalg::max_abs_diff;
    use candle_core::{Device, Var, D};

    #[test]
    fn matches_candle_softmax_forward_and_backward() {
        let device = Device::Cpu;
        let logits =
            Var::from_tensor(&Tensor::randn(0f32, 3.0, (4, 5, 7), &device).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &device).unwrap()).unwrap();
        let fused = BiasSoftmax::apply(&logits, &bias).unwrap();
        let plain =
            candle_nn::ops::softmax(&logits.broadcast_add(bias.as_tensor()).unwrap(), D::Minus1)
                .unwrap();
        assert!(max_abs_diff(&fused, &plain) < 1e-6);

        let weights = Tensor::randn(0f32, 1.0, (4, 5, 7), &device).unwrap();
        let grads = |out: &Tensor| {
            (out * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g_fused, g_plain) = (grads(&fused), grads(&plain));
        for var in [&logits, &bias] {
            let diff = max_abs_diff(g_fused.get(var).unwrap(), g_plain.get(var).unwrap());
            assert!(
                diff < 1e-5,
                "gradient of {:?} differs by {diff}",
                var.shape()
            );
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let device = Device::Cpu;
        let logits = Tensor::new(&[[[1000f32, 1001.0, -1000.0]]], &device).unwrap();
        let bias = Tensor::zeros((1, 3), candle_core::DType::F32, &device).unwrap();
        let out = BiasSoftmax::apply(&logits, &bias)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[1] > out[0] && out[2] == 0.0);
    }
}
