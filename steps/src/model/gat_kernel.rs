//! Fused GATv2 attention logits, forward and backward, without the pairwise tensor.
//!
//! GATv2 scores a pair of nodes as e_ij = a^T LeakyReLU(L [v_i || v_j] + b). Since
//! L [v_i || v_j] + b = (L1 v_i + b) + L2 v_j = P_i + Q_j, the per-node projections P and Q
//! are ordinary matmuls; this op computes e_ij = sum_d a_d LeakyReLU(P_id + Q_jd) directly.
//! The naive form materialises [B, N, N, E] (for MSL's feature graph 256*55*55*110 floats,
//! 340 MB, plus its gradient); here memory is [B, N, N] and the batch runs over rayon.

use std::borrow::Cow;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Arguments `p` [B, N, E], `q` [B, N, E], `a` [E]; result e [B, N, N].
pub struct Gatv2Logits {
    pub alpha: f32,
}

impl Gatv2Logits {
    pub fn apply(p: &Tensor, q: &Tensor, a: &Tensor, alpha: f64) -> Result<Tensor> {
        p.contiguous()?.apply_op3(
            &q.contiguous()?,
            &a.contiguous()?.flatten_all()?,
            Gatv2Logits {
                alpha: alpha as f32,
            },
        )
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "gatv2-logits", what)
}

impl CustomOp3 for Gatv2Logits {
    fn name(&self) -> &'static str {
        "gatv2-logits"
    }

    fn cpu_fwd(
        &self,
        p_storage: &CpuStorage,
        p_layout: &Layout,
        q_storage: &CpuStorage,
        q_layout: &Layout,
        a_storage: &CpuStorage,
        a_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, nodes, embed) = p_layout.shape().dims3()?;
        if q_layout.shape().dims() != [batch, nodes, embed] || a_layout.shape().dims() != [embed] {
            candle_core::bail!(
                "gatv2-logits: expected p, q [{batch}, {nodes}, {embed}] and a [{embed}], got q {:?}, a {:?}",
                q_layout.shape(),
                a_layout.shape()
            )
        }
        let padded = padded_embed(embed);
        let p = pad_rows(contiguous(p_storage, p_layout, "p")?, embed, padded);
        let q = pad_rows(contiguous(q_storage, q_layout, "q")?, embed, padded);
        let a = pad_rows(contiguous(a_storage, a_layout, "a")?, embed, padded);
        let mut e = vec![0f32; batch * nodes * nodes];
        if nodes > 0 {
            e.par_chunks_mut(nodes * nodes)
                .enumerate()
                .for_each(|(b, e)| {
                    let p = &p[b * nodes * padded..][..nodes * padded];
                    let q = &q[b * nodes * padded..][..nodes * padded];
                    kernels::forward(p, q, &a, self.alpha, nodes, padded, e);
                });
        }
        Ok((CpuStorage::F32(e), Shape::from((batch, nodes, nodes))))
    }

    fn bwd(
        &self,
        p: &Tensor,
        q: &Tensor,
        a: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, nodes, embed) = p.dims3()?;
        let padded = padded_embed(embed);
        let (p_vec, q_vec, a_vec) = (
            p.flatten_all()?.to_vec1::<f32>()?,
            q.flatten_all()?.to_vec1::<f32>()?,
            a.to_vec1::<f32>()?,
        );
        let p_data = pad_rows(&p_vec, embed, padded);
        let q_data = pad_rows(&q_vec, embed, padded);
        let a_data = pad_rows(&a_vec, embed, padded);
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dp = vec![0f32; batch * nodes * padded];
        let mut dq = vec![0f32; batch * nodes * padded];
        let mut da_per_batch = vec![0f32; batch * padded];
        if nodes > 0 && embed > 0 {
            dp.par_chunks_mut(nodes * padded)
                .zip(dq.par_chunks_mut(nodes * padded))
                .zip(da_per_batch.par_chunks_mut(padded))
                .enumerate()
                .for_each(|(b, ((dp, dq), da))| {
                    let p = &p_data[b * nodes * padded..][..nodes * padded];
                    let q = &q_data[b * nodes * padded..][..nodes * padded];
                    let g = &g[b * nodes * nodes..][..nodes * nodes];
                    kernels::backward(p, q, &a_data, g, self.alpha, nodes, padded, dp, dq, da);
                });
        }
        // Sum the per-batch partials in a fixed order so results do not depend on threads.
        let mut da = vec![0f32; padded];
        for row in da_per_batch.chunks_exact(padded.max(1)) {
            da.iter_mut().zip(row).for_each(|(acc, v)| *acc += v);
        }
        let (dp, dq, da) = (
            unpad_rows(dp, embed, padded),
            unpad_rows(dq, embed, padded),
            unpad_rows(da, embed, padded),
        );
        let device = p.device();
        Ok((
            Some(Tensor::from_vec(dp, p.shape(), device)?),
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(da, a.shape(), device)?),
        ))
    }
}

/// The embedding rounded up to whole 8-lane vectors: zero lanes add LeakyReLU(0) * 0 = 0 to
/// the logits, and their gradients are dropped, so the kernels never run a scalar tail.
fn padded_embed(embed: usize) -> usize {
    embed.next_multiple_of(8)
}

/// Rows of `embed` values, each zero-extended to `padded`.
fn pad_rows(data: &[f32], embed: usize, padded: usize) -> Cow<'_, [f32]> {
    if embed == padded {
        return Cow::Borrowed(data);
    }
    let mut out = vec![0f32; data.len() / embed * padded];
    for (out, row) in out.chunks_exact_mut(padded).zip(data.chunks_exact(embed)) {
        out[..embed].copy_from_slice(row);
    }
    Cow::Owned(out)
}

/// The inverse of [`pad_rows`].
fn unpad_rows(data: Vec<f32>, embed: usize, padded: usize) -> Vec<f32> {
    if embed == padded {
        return data;
    }
    data.chunks_exact(padded)
        .flat_map(|row| &row[..embed])
        .copied()
        .collect()
}

/// The inner loops, written so LLVM vectorises them over the embedding dimension; on x86-64
/// they are compiled a second time for AVX2+FMA and picked at run time.
mod kernels {
    #[inline(always)]
    fn forward_generic(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        e: &mut [f32],
    ) {
        const LANES: usize = 8;
        for i in 0..nodes {
            let p_i = &p[i * embed..][..embed];
            for j in 0..nodes {
                let q_j = &q[j * embed..][..embed];
                let mut acc = [0f32; LANES];
                let mut chunks = p_i
                    .chunks_exact(LANES)
                    .zip(q_j.chunks_exact(LANES))
                    .zip(a.chunks_exact(LANES));
                for ((pc, qc), ac) in &mut chunks {
                    for l in 0..LANES {
                        let s = pc[l] + qc[l];
                        let slope = if s > 0.0 { 1.0 } else { alpha };
                        acc[l] += ac[l] * s * slope;
                    }
                }
                let mut total: f32 = acc.iter().sum();
                let tail = embed - embed % LANES;
                for d in tail..embed {
                    let s = p_i[d] + q_j[d];
                    total += a[d] * if s > 0.0 { s } else { alpha * s };
                }
                e[i * nodes + j] = total;
            }
        }
    }

    /// The gradients factor as dP_id = a_d sum_j g_ij slope_ijd, dQ_jd = a_d sum_i g_ij
    /// slope_ijd and da_d = sum_ij g_ij slope_ijd s_ijd (slope = 1 or alpha, s = P_id + Q_jd).
    /// The embedding is walked in tiles of up to 32 lanes so that node i's dP and da partial
    /// sums stay in registers across all j; only dQ_j goes through memory. `a` is applied once
    /// at the end instead of per pair.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_generic(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        g: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        dp: &mut [f32],
        dq: &mut [f32],
        da: &mut [f32],
    ) {
        let mut start = 0;
        while start < embed {
            let left = embed - start;
            let width = if left >= 32 {
                backward_tile::<32>(p, q, g, alpha, nodes, embed, start, dp, dq, da);
                32
            } else if left >= 8 {
                backward_tile::<8>(p, q, g, alpha, nodes, embed, start, dp, dq, da);
                8
            } else {
                backward_tile::<1>(p, q, g, alpha, nodes, embed, start, dp, dq, da);
                1
            };
            start += width;
        }
        for row in dp.chunks_exact_mut(embed).chain(dq.chunks_exact_mut(embed)) {
            row.iter_mut().zip(a).for_each(|(v, a)| *v *= a);
        }
    }

    /// Embedding lanes `start..start + N` of [`backward_generic`], before the factor `a`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_tile<const N: usize>(
        p: &[f32],
        q: &[f32],
        g: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        start: usize,
        dp: &mut [f32],
        dq: &mut [f32],
        da: &mut [f32],
    ) {
        let mut da_acc = [0f32; N];
        for i in 0..nodes {
            let p_i: &[f32; N] = p[i * embed + start..][..N].try_into().expect("tile");
            let mut dp_acc = [0f32; N];
            for j in 0..nodes {
                let g_ij = g[i * nodes + j];
                if g_ij == 0.0 {
                    continue;
                }
                let q_j: &[f32; N] = q[j * embed + start..][..N].try_into().expect("tile");
                let dq_j: &mut [f32; N] = (&mut dq[j * embed + start..][..N])
                    .try_into()
                    .expect("tile");
                for d in 0..N {
                    let s = p_i[d] + q_j[d];
                    let t = if s > 0.0 { g_ij } else { g_ij * alpha };
                    dp_acc[d] += t;
                    da_acc[d] += t * s;
                    dq_j[d] += t;
                }
            }
            dp[i * embed + start..][..N]
                .iter_mut()
                .zip(dp_acc)
                .for_each(|(v, acc)| *v += acc);
        }
        da[start..][..N]
            .iter_mut()
            .zip(da_acc)
            .for_each(|(v, acc)| *v += acc);
    }

    pub fn forward(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        e: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { forward_avx2(p, q, a, alpha, nodes, embed, e) };
            return;
        }
        forward_generic(p, q, a, alpha, nodes, embed, e)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        g: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        dp: &mut [f32],
        dq: &mut [f32],
        da: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { backward_avx2(p, q, a, g, alpha, nodes, embed, dp, dq, da) };
            return;
        }
        backward_generic(p, q, a, g, alpha, nodes, embed, dp, dq, da)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_avx2(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        e: &mut [f32],
    ) {
        forward_generic(p, q, a, alpha, nodes, embed, e)
    }

    #[allow(clippy::too_many_arguments)]
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_avx2(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        g: &[f32],
        alpha: f32,
        nodes: usize,
        embed: usize,
        dp: &mut [f32],
        dq: &mut [f32],
        da: &mut [f32],
    ) {
        backward_generic(p, q, a, g, alpha, nodes, embed, dp, dq, da)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linalg::max_abs_diff;
    use candle_core::{Device, Var, D};

    /// The naive GATv2 logits through the pairwise tensor, in plain candle ops.
    fn reference(p: &Tensor, q: &Tensor, a: &Tensor, alpha: f64) -> Tensor {
        let pairs = p
            .unsqueeze(2)
            .unwrap()
            .broadcast_add(&q.unsqueeze(1).unwrap())
            .unwrap();
        let activated = candle_nn::ops::leaky_relu(&pairs, alpha).unwrap();
        activated.broadcast_mul(a).unwrap().sum(D::Minus1).unwrap()
    }

    #[test]
    fn fused_logits_and_gradients_match_the_pairwise_reference() {
        let device = Device::Cpu;
        let var = |shape: (usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &device).unwrap()).unwrap()
        };
        // embed 51: one 32-lane tile, two 8-lane tiles and three single lanes.
        let p = var((3, 5, 51));
        let q = var((3, 5, 51));
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, 51, &device).unwrap()).unwrap();
        let fused = Gatv2Logits::apply(&p, &q, &a, 0.2).unwrap();
        let naive = reference(&p, &q, &a, 0.2);
        assert_eq!(fused.dims(), &[3, 5, 5]);
        let diff = max_abs_diff(&fused, &naive);
        assert!(diff < 1e-5, "forward differs by {diff}");

        let weights = Tensor::randn(0f32, 1.0, (3, 5, 5), &device).unwrap();
        let g_fused = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_naive = (naive * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&p, &q, &a] {
            let diff = max_abs_diff(g_fused.get(v).unwrap(), g_naive.get(v).unwrap());
            assert!(diff < 1e-4, "gradient of {:?} differs by {diff}", v.shape());
        }
    }
}
