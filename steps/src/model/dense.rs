//! A dense layer `x W^T + b`, optionally followed by ReLU, as one candle op.
//!
//! candle builds it from a matmul and a broadcast add (a second pass over the output, and
//! in the backward pass a single-threaded column sum for the bias), plus the ReLU's own
//! pass each way. Here the bias initialises the output the GEMM accumulates into, the ReLU
//! is applied in the same task, and the backward pass computes dX, dW and db per block of
//! rows. Blocks do not depend on the thread count, and their partial weight gradients are
//! summed in block order, so neither do the results.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::linalg::{Mat, MatMut};
use super::packed_gemm::{gemm_packed, PackedRhs};

/// A `nn.Linear`'s parameters, applied through [`Dense`].
#[derive(Debug, Clone)]
pub struct DenseLayer {
    /// [out, in]
    pub weight: Tensor,
    /// [out]
    pub bias: Tensor,
}

impl DenseLayer {
    /// x [.., in] -> [.., out].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Dense::apply(x, &self.weight, &self.bias, false)
    }

    /// ReLU(x W^T + b).
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        Dense::apply(x, &self.weight, &self.bias, true)
    }
}

/// Rows of x per task.
const ROWS_PER_TASK: usize = 1024;

/// `x` [.., in] times `weight` [out, in] transposed, plus `bias` [out]; ReLU when `relu`.
pub struct Dense {
    relu: bool,
}

impl Dense {
    pub fn apply(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
        x.contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Dense { relu })
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "dense", what)
}

/// (rows of x, in, out), checked.
fn dims(x: &Shape, weight: &Shape, bias: &Shape) -> Result<(usize, usize, usize)> {
    let in_dim = *x.dims().last().unwrap_or(&0);
    let (out_dim, w_in) = weight.dims2()?;
    if x.rank() == 0 || w_in != in_dim || bias.dims() != [out_dim] {
        candle_core::bail!("dense: x {x:?}, weight {weight:?} and bias {bias:?} do not fit")
    }
    Ok((x.elem_count() / in_dim.max(1), in_dim, out_dim))
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "dense"
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
        let (rows, in_dim, out_dim) = dims(x_layout.shape(), w_layout.shape(), b_layout.shape())?;
        let x = contiguous(x_storage, x_layout, "x")?;
        let w = contiguous(w_storage, w_layout, "weight")?;
        let b = contiguous(b_storage, b_layout, "bias")?;
        let mut out = vec![0f32; rows * out_dim];
        if out_dim > 0 {
            let w_t = PackedRhs::new(Mat::rows(w, out_dim, in_dim, in_dim).t());
            out.par_chunks_mut(ROWS_PER_TASK * out_dim)
                .zip(x.par_chunks(ROWS_PER_TASK * in_dim.max(1)))
                .for_each(|(out, x)| {
                    let n = out.len() / out_dim;
                    for row in out.chunks_exact_mut(out_dim) {
                        row.copy_from_slice(b);
                    }
                    gemm_packed(
                        Mat::rows(x, n, in_dim, in_dim),
                        &w_t,
                        MatMut::rows(out, n, out_dim, out_dim),
                    );
                    if self.relu {
                        out.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                });
        }
        let mut shape = x_layout.shape().dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out_dim;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, in_dim, out_dim) = dims(x.shape(), weight.shape(), bias.shape())?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { t.contiguous()?.flatten_all()?.to_vec1() };
        let (x_vec, w) = (flat(x)?, flat(weight)?);
        let mut grad = flat(grad_res)?;
        if self.relu {
            let out = flat(res)?;
            grad.par_chunks_mut(ROWS_PER_TASK * out_dim.max(1))
                .zip(out.par_chunks(ROWS_PER_TASK * out_dim.max(1)))
                .for_each(|(g, y)| {
                    g.iter_mut()
                        .zip(y)
                        .for_each(|(g, y)| *g = if *y > 0.0 { *g } else { 0.0 });
                });
        }
        let mut dx = vec![0f32; rows * in_dim];
        let partials: Vec<(Vec<f32>, Vec<f32>)> = if in_dim == 0 || out_dim == 0 {
            Vec::new()
        } else {
            let w_packed = PackedRhs::new(Mat::rows(&w, out_dim, in_dim, in_dim));
            dx.par_chunks_mut(ROWS_PER_TASK * in_dim)
                .zip(x_vec.par_chunks(ROWS_PER_TASK * in_dim))
                .zip(grad.par_chunks(ROWS_PER_TASK * out_dim))
                .map(|((dx, x), g)| {
                    let n = dx.len() / in_dim;
                    let g_mat = Mat::rows(g, n, out_dim, out_dim);
                    gemm_packed(g_mat, &w_packed, MatMut::rows(dx, n, in_dim, in_dim));
                    let mut dw = vec![0f32; out_dim * in_dim];
                    gemm_packed(
                        g_mat.t(),
                        &PackedRhs::new(Mat::rows(x, n, in_dim, in_dim)),
                        MatMut::rows(&mut dw, out_dim, in_dim, in_dim),
                    );
                    let mut db = vec![0f32; out_dim];
                    for row in g.chunks_exact(out_dim) {
                        db.iter_mut().zip(row).for_each(|(acc, v)| *acc += v);
                    }
                    (dw, db)
                })
                .collect()
        };
        let mut dw = vec![0f32; out_dim * in_dim];
        let mut db = vec![0f32; out_dim];
        for (pw, pb) in &partials {
            dw.iter_mut().zip(pw).for_each(|(a, v)| *a += v);
            db.iter_mut().zip(pb).for_each(|(a, v)| *a += v);
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, weight.shape(), device)?),
            Some(Tensor::from_vec(db, bias.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linalg::max_abs_diff;
    use candle_core::{Device, Module, Var};

    #[test]
    fn matches_candle_linear_and_relu_forward_and_backward() {
        let device = Device::Cpu;
        let var = |shape: &[usize]| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &device).unwrap()).unwrap()
        };
        // 2 x 700 rows: a full task of 1024 and a short one.
        let x = var(&[2, 700, 5]);
        let w = var(&[3, 5]);
        let b = var(&[3]);
        for relu in [false, true] {
            let fused = Dense::apply(&x, &w, &b, relu).unwrap();
            let plain = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
                .forward(&x)
                .unwrap();
            let plain = if relu { plain.relu().unwrap() } else { plain };
            assert_eq!(fused.dims(), &[2, 700, 3]);
            assert!(max_abs_diff(&fused, &plain) < 1e-5);
            let upstream = Tensor::randn(0f32, 1.0, (2, 700, 3), &device).unwrap();
            let grads = |out: &Tensor| {
                (out * &upstream)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            };
            let (g_fused, g_plain) = (grads(&fused), grads(&plain));
            for v in [&x, &w, &b] {
                let diff = max_abs_diff(g_fused.get(v).unwrap(), g_plain.get(v).unwrap());
                assert!(
                    diff < 1e-3,
                    "gradient of {:?} differs by {diff} (relu {relu})",
                    v.shape()
                );
            }
        }
    }
}
