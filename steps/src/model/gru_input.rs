//! The reconstruction decoder's input projection for ML4ITS's interleaved layout, as one op.
//!
//! Step t of the decoder reads a few constant runs of the encoder state h, so its input
//! projection is `b_ih + sum over runs r of h[source(t, r)] * run_weight(t, r)`, run_weight
//! being the sum of W_ih's columns in the run ([`super::gru::InterleavedLayout`]). In candle
//! ops that was a gather, a transposed copy, a [W, B, runs] x [W, runs, 3H] batched product
//! (its W small products on one thread), another transpose and a bias pass, and as many
//! again backwards; here each task writes its rows' [W, 3H] projections directly.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::linalg::values;
use super::simd::multiversion;

/// Batch rows per rayon task (fixed, so results do not depend on the thread count).
const ROWS_PER_TASK: usize = 16;

/// Arguments `h` [B, in], `run_weights` [steps * runs, 3H], `bias` [3H]; result
/// gi [B, steps, 3H]. `source[t * runs + r]` is the entry of h that run r of step t repeats.
pub struct InterleavedProjection {
    pub source: Vec<usize>,
    pub steps: usize,
    pub runs: usize,
}

impl InterleavedProjection {
    pub fn apply(
        h: &Tensor,
        run_weights: &Tensor,
        bias: &Tensor,
        source: Vec<usize>,
        steps: usize,
    ) -> Result<Tensor> {
        let runs = source.len() / steps.max(1);
        h.contiguous()?.apply_op3(
            &run_weights.contiguous()?,
            &bias.contiguous()?,
            InterleavedProjection {
                source,
                steps,
                runs,
            },
        )
    }

    /// (batch, in, width = 3H), checked.
    fn dims(&self, h: &Shape, run_weights: &Shape, bias: &Shape) -> Result<(usize, usize, usize)> {
        let (batch, in_dim) = h.dims2()?;
        let (n_runs, width) = run_weights.dims2()?;
        if n_runs != self.steps * self.runs
            || self.source.len() != n_runs
            || bias.dims() != [width]
            || self.source.iter().any(|&s| s >= in_dim)
        {
            candle_core::bail!(
                "interleaved-projection: h {h:?}, run weights {run_weights:?}, bias {bias:?} do not fit {} steps of {} runs",
                self.steps,
                self.runs
            )
        }
        Ok((batch, in_dim, width))
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "interleaved-projection", what)
}

impl CustomOp3 for InterleavedProjection {
    fn name(&self) -> &'static str {
        "interleaved-projection"
    }

    fn cpu_fwd(
        &self,
        h_storage: &CpuStorage,
        h_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, in_dim, width) =
            self.dims(h_layout.shape(), w_layout.shape(), b_layout.shape())?;
        let h = contiguous(h_storage, h_layout, "h")?;
        let run_weights = contiguous(w_storage, w_layout, "run_weights")?;
        let bias = contiguous(b_storage, b_layout, "bias")?;
        let per_row = self.steps * width;
        let mut gi = vec![0f32; batch * per_row];
        if per_row > 0 && in_dim > 0 {
            gi.par_chunks_mut(ROWS_PER_TASK * per_row)
                .zip(h.par_chunks(ROWS_PER_TASK * in_dim))
                .for_each(|(gi, h)| {
                    for (gi, h) in gi.chunks_exact_mut(per_row).zip(h.chunks_exact(in_dim)) {
                        for (t, out) in gi.chunks_exact_mut(width).enumerate() {
                            out.copy_from_slice(bias);
                            for r in 0..self.runs {
                                let run = t * self.runs + r;
                                axpy(
                                    h[self.source[run]],
                                    &run_weights[run * width..][..width],
                                    out,
                                );
                            }
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(gi), Shape::from((batch, self.steps, width))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        run_weights: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, in_dim, width) = self.dims(h.shape(), run_weights.shape(), bias.shape())?;
        let (h_c, w_c, g_c) = (
            h.contiguous()?,
            run_weights.contiguous()?,
            grad_res.contiguous()?,
        );
        let h_v = values(&h_c, "interleaved-projection", "h")?;
        let w_v = values(&w_c, "interleaved-projection", "run_weights")?;
        let g_v = values(&g_c, "interleaved-projection", "gradient")?;
        let (hs, rw, grad) = (h_v.get(), w_v.get(), g_v.get());
        let per_row = self.steps * width;
        let n_runs = self.steps * self.runs;
        let mut dh = vec![0f32; batch * in_dim];
        // Per task: d(run_weights) [steps * runs, 3H] and d(bias) [3H].
        let partials: Vec<(Vec<f32>, Vec<f32>)> = if per_row == 0 || in_dim == 0 {
            Vec::new()
        } else {
            dh.par_chunks_mut(ROWS_PER_TASK * in_dim)
                .zip(hs.par_chunks(ROWS_PER_TASK * in_dim))
                .zip(grad.par_chunks(ROWS_PER_TASK * per_row))
                .map(|((dh, h), grad)| {
                    let mut d_rw = vec![0f32; n_runs * width];
                    let mut d_bias = vec![0f32; width];
                    for ((dh, h), grad) in dh
                        .chunks_exact_mut(in_dim)
                        .zip(h.chunks_exact(in_dim))
                        .zip(grad.chunks_exact(per_row))
                    {
                        for (t, g) in grad.chunks_exact(width).enumerate() {
                            add(g, &mut d_bias);
                            for r in 0..self.runs {
                                let run = t * self.runs + r;
                                let src = self.source[run];
                                dh[src] += dot(g, &rw[run * width..][..width]);
                                axpy(h[src], g, &mut d_rw[run * width..][..width]);
                            }
                        }
                    }
                    (d_rw, d_bias)
                })
                .collect()
        };
        let mut d_rw = vec![0f32; n_runs * width];
        let mut d_bias = vec![0f32; width];
        for (pw, pb) in &partials {
            add(pw, &mut d_rw);
            add(pb, &mut d_bias);
        }
        let device = h.device();
        Ok((
            Some(Tensor::from_vec(dh, h.shape(), device)?),
            Some(Tensor::from_vec(d_rw, run_weights.shape(), device)?),
            Some(Tensor::from_vec(d_bias, bias.shape(), device)?),
        ))
    }
}

multiversion! {
    /// y += a x
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
    }
}

multiversion! {
    /// y += x
    fn add(x: &[f32], y: &mut [f32]) {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
    }
}

multiversion! {
    fn dot(x: &[f32], y: &[f32]) -> f32 {
        super::simd::dot(x, y)
    }
}
