//! Fused GATv2 attention logits, forward and backward, without the pairwise tensor.
//!
//! GATv2 scores a pair of nodes as e_ij = a^T LeakyReLU(L [v_i || v_j] + b). Since
//! L [v_i || v_j] + b = (L1 v_i + b) + L2 v_j = P_i + Q_j, the per-node projections P and Q
//! are ordinary matmuls; this op computes e_ij = sum_d a_d LeakyReLU(P_id + Q_jd) directly.
//! The naive form materialises [B, N, N, E] (for MSL's feature graph 256*55*55*110 floats,
//! 340 MB, plus its gradient); here memory is [B, N, N] and the batch runs over rayon.

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

fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("gatv2-logits: `{what}` must be contiguous"),
    }
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
        let p = contiguous(p_storage, p_layout, "p")?;
        let q = contiguous(q_storage, q_layout, "q")?;
        let a = contiguous(a_storage, a_layout, "a")?;
        let mut e = vec![0f32; batch * nodes * nodes];
        if nodes > 0 {
            e.par_chunks_mut(nodes * nodes)
                .enumerate()
                .for_each(|(b, e)| {
                    let p = &p[b * nodes * embed..][..nodes * embed];
                    let q = &q[b * nodes * embed..][..nodes * embed];
                    kernels::forward(p, q, a, self.alpha, nodes, embed, e);
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
        let p_data = p.flatten_all()?.to_vec1::<f32>()?;
        let q_data = q.flatten_all()?.to_vec1::<f32>()?;
        let a_data = a.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dp = vec![0f32; batch * nodes * embed];
        let mut dq = vec![0f32; batch * nodes * embed];
        let mut da_per_batch = vec![0f32; batch * embed];
        if nodes > 0 && embed > 0 {
            dp.par_chunks_mut(nodes * embed)
                .zip(dq.par_chunks_mut(nodes * embed))
                .zip(da_per_batch.par_chunks_mut(embed))
                .enumerate()
                .for_each(|(b, ((dp, dq), da))| {
                    let p = &p_data[b * nodes * embed..][..nodes * embed];
                    let q = &q_data[b * nodes * embed..][..nodes * embed];
                    let g = &g[b * nodes * nodes..][..nodes * nodes];
                    kernels::backward(p, q, &a_data, g, self.alpha, nodes, embed, dp, dq, da);
                });
        }
        // Sum the per-batch partials in a fixed order so results do not depend on threads.
        let mut da = vec![0f32; embed];
        for row in da_per_batch.chunks_exact(embed.max(1)) {
            da.iter_mut().zip(row).for_each(|(acc, v)| *acc += v);
        }
        let device = p.device();
        Ok((
            Some(Tensor::from_vec(dp, p.shape(), device)?),
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(da, a.shape(), device)?),
        ))
    }
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
        for i in 0..nodes {
            let p_i = &p[i * embed..][..embed];
            let dp_i = &mut dp[i * embed..][..embed];
            for j in 0..nodes {
                let g_ij = g[i * nodes + j];
                if g_ij == 0.0 {
                    continue;
                }
                let q_j = &q[j * embed..][..embed];
                let dq_j = &mut dq[j * embed..][..embed];
                for d in 0..embed {
                    let s = p_i[d] + q_j[d];
                    let slope = if s > 0.0 { 1.0 } else { alpha };
                    let ds = g_ij * a[d] * slope;
                    dp_i[d] += ds;
                    dq_j[d] += ds;
                    da[d] += g_ij * s * slope;
                }
            }
        }
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
        // embed 11: exercises both the 8-lane body and the tail.
        let var = |shape: (usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &device).unwrap()).unwrap()
        };
        let p = var((3, 5, 11));
        let q = var((3, 5, 11));
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, 11, &device).unwrap()).unwrap();
        let fused = Gatv2Logits::apply(&p, &q, &a, 0.2).unwrap();
        let naive = reference(&p, &q, &a, 0.2);
        assert_eq!(fused.dims(), &[3, 5, 5]);
        let diff: f32 = (&fused - &naive)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
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
            let diff: f32 = (g_fused.get(v).unwrap() - g_naive.get(v).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(diff < 1e-4, "gradient of {:?} differs by {diff}", v.shape());
        }
    }
}
