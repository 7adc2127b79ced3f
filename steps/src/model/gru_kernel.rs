//! A fused GRU recurrence as one candle op, forward and backward (BPTT).
//!
//! candle's autograd would record ~15 small ops per time step (and as many again in the
//! backward pass); over 100 steps and two GRUs that is thousands of graph nodes, each with
//! its own allocation. Here the input projection `x W_ih^T + b_ih` stays a single big candle
//! matmul, and this op runs the recurrence: per step one `h W_hh^T` GEMM and the gates, with
//! the batch split over rayon threads. The backward pass walks time in reverse, and the
//! weight gradient `dW_hh = sum_t dG_t^T h_{t-1}` is one large GEMM per thread at the end.
//!
//! Gate layout and equations are PyTorch's `nn.GRU` (r, z, n):
//! r = σ(gi_r + W_hr h + b_hr), z = σ(gi_z + W_hz h + b_hz),
//! n = tanh(gi_n + r ⊙ (W_hn h + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h, h_0 = 0.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The recurrence over `steps` time steps. Arguments: `gi` [B, steps, 3H] (or [B, 1, 3H]
/// when the input is the same at every step, as in the reconstruction decoder), `w_hh`
/// [3H, H], `b_hh` [3H]. Result: every hidden state, [B, steps, H].
pub struct GruRecurrence {
    pub hidden: usize,
    pub steps: usize,
    /// Gate activations saved by the forward pass for the backward pass.
    saved: Mutex<Option<Saved>>,
}

struct Saved {
    /// Per batch chunk, time-major [steps, rows, 4H]: r, z, n and W_hn h + b_hn.
    gates: Vec<f32>,
    chunk_rows: usize,
}

impl GruRecurrence {
    pub fn new(hidden: usize, steps: usize) -> GruRecurrence {
        GruRecurrence {
            hidden,
            steps,
            saved: Mutex::new(None),
        }
    }

    /// Runs the op with autograd: `gi` [B, steps|1, 3H], `w_hh` [3H, H], `b_hh` [3H].
    pub fn apply(gi: &Tensor, w_hh: &Tensor, b_hh: &Tensor, steps: usize) -> Result<Tensor> {
        let hidden = w_hh.dim(1)?;
        gi.contiguous()?.apply_op3(
            &w_hh.contiguous()?,
            &b_hh.contiguous()?,
            GruRecurrence::new(hidden, steps),
        )
    }
}

/// Rows of the batch each rayon task owns; the same split in forward and backward.
fn chunk_rows(batch: usize) -> usize {
    let tasks = rayon::current_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(tasks).max(1)
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "gru-recurrence", what)
}

impl CustomOp3 for GruRecurrence {
    fn name(&self) -> &'static str {
        "gru-recurrence"
    }

    fn cpu_fwd(
        &self,
        gi_storage: &CpuStorage,
        gi_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let hid = self.hidden;
        let steps = self.steps;
        let (batch, gi_steps, gi_width) = gi_layout.shape().dims3()?;
        if gi_width != 3 * hid || (gi_steps != steps && gi_steps != 1) {
            candle_core::bail!(
                "gru-recurrence: input projection is [{batch}, {gi_steps}, {gi_width}], expected [B, {steps} or 1, {}]",
                3 * hid
            )
        }
        if w_layout.shape().dims() != [3 * hid, hid] || b_layout.shape().dims() != [3 * hid] {
            candle_core::bail!(
                "gru-recurrence: W_hh must be [{}, {hid}] and b_hh [{}]",
                3 * hid,
                3 * hid
            )
        }
        let gi = contiguous(gi_storage, gi_layout, "gi")?;
        let w_hh = contiguous(w_storage, w_layout, "w_hh")?;
        let b_hh = contiguous(b_storage, b_layout, "b_hh")?;
        let rows_per_chunk = chunk_rows(batch);
        let mut hs = vec![0f32; batch * steps * hid];
        let mut gates = vec![0f32; batch * steps * 4 * hid];
        hs.par_chunks_mut(rows_per_chunk * steps * hid)
            .zip(gates.par_chunks_mut(rows_per_chunk * steps * 4 * hid))
            .enumerate()
            .for_each(|(chunk, (hs, gates))| {
                let row0 = chunk * rows_per_chunk;
                let rows = hs.len() / (steps * hid);
                let mut h = vec![0f32; rows * hid];
                let mut gh = vec![0f32; rows * 3 * hid];
                for t in 0..steps {
                    for row in gh.chunks_exact_mut(3 * hid) {
                        row.copy_from_slice(b_hh);
                    }
                    // gh += h W_hh^T
                    super::linalg::gemm(
                        super::linalg::Mat::new(&h, rows, hid, hid, 1),
                        super::linalg::Mat::new(w_hh, hid, 3 * hid, 1, hid),
                        &mut gh,
                        3 * hid,
                        true,
                    );
                    let gi_t = if gi_steps == 1 { 0 } else { t };
                    for r in 0..rows {
                        let gi_row = &gi[((row0 + r) * gi_steps + gi_t) * 3 * hid..][..3 * hid];
                        let gh_row = &gh[r * 3 * hid..][..3 * hid];
                        let saved = &mut gates[(t * rows + r) * 4 * hid..][..4 * hid];
                        let h_row = &mut h[r * hid..][..hid];
                        gates::forward_row(gi_row, gh_row, h_row, saved);
                        hs[(r * steps + t) * hid..][..hid].copy_from_slice(h_row);
                    }
                }
            });
        if let Ok(mut saved) = self.saved.lock() {
            *saved = Some(Saved {
                gates,
                chunk_rows: rows_per_chunk,
            });
        }
        Ok((CpuStorage::F32(hs), Shape::from((batch, steps, hid))))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        w_hh: &Tensor,
        _b_hh: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hid = self.hidden;
        let steps = self.steps;
        let (batch, gi_steps, _) = gi.dims3()?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("gru-recurrence: saved state poisoned".into()))?
            .take();
        let Some(Saved {
            gates,
            chunk_rows: rows_per_chunk,
        }) = saved
        else {
            candle_core::bail!("gru-recurrence: backward called twice or without a forward pass")
        };
        let w = w_hh.flatten_all()?.to_vec1::<f32>()?;
        let hs = res.flatten_all()?.to_vec1::<f32>()?;
        let grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dgi = vec![0f32; batch * gi_steps * 3 * hid];
        let n_chunks = batch.div_ceil(rows_per_chunk);
        // Per chunk: (dW_hh [3H, H], db_hh [3H]); summed in chunk order for determinism.
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dgi
            .par_chunks_mut(rows_per_chunk * gi_steps * 3 * hid)
            .zip(gates.par_chunks(rows_per_chunk * steps * 4 * hid))
            .enumerate()
            .map(|(chunk, (dgi, gates))| {
                let row0 = chunk * rows_per_chunk;
                let rows = gates.len() / (steps * 4 * hid);
                // Time-major [steps, rows, .] so each step's rows are contiguous for the GEMMs.
                let mut dgh = vec![0f32; steps * rows * 3 * hid];
                let mut h_prev = vec![0f32; steps * rows * hid];
                for t in 1..steps {
                    for r in 0..rows {
                        h_prev[(t * rows + r) * hid..][..hid]
                            .copy_from_slice(&hs[((row0 + r) * steps + t - 1) * hid..][..hid]);
                    }
                }
                let mut dh = vec![0f32; rows * hid];
                for t in (0..steps).rev() {
                    for r in 0..rows {
                        let g_row = &grad[((row0 + r) * steps + t) * hid..][..hid];
                        let saved = &gates[(t * rows + r) * 4 * hid..][..4 * hid];
                        let hp = &h_prev[(t * rows + r) * hid..][..hid];
                        let dgh_row = &mut dgh[(t * rows + r) * 3 * hid..][..3 * hid];
                        let gi_t = if gi_steps == 1 { 0 } else { t };
                        let dgi_row = &mut dgi[(r * gi_steps + gi_t) * 3 * hid..][..3 * hid];
                        let dh_row = &mut dh[r * hid..][..hid];
                        for j in 0..hid {
                            let (rr, zz, nn, hn) = (
                                saved[j],
                                saved[hid + j],
                                saved[2 * hid + j],
                                saved[3 * hid + j],
                            );
                            let g = g_row[j] + dh_row[j];
                            let dn_pre = g * (1.0 - zz) * (1.0 - nn * nn);
                            let dz_pre = g * (hp[j] - nn) * zz * (1.0 - zz);
                            let dr_pre = dn_pre * hn * rr * (1.0 - rr);
                            dgh_row[j] = dr_pre;
                            dgh_row[hid + j] = dz_pre;
                            dgh_row[2 * hid + j] = dn_pre * rr;
                            dgi_row[j] += dr_pre;
                            dgi_row[hid + j] += dz_pre;
                            dgi_row[2 * hid + j] += dn_pre;
                            dh_row[j] = g * zz;
                        }
                    }
                    // dh += dG_t W_hh
                    super::linalg::gemm(
                        super::linalg::Mat::new(
                            &dgh[t * rows * 3 * hid..][..rows * 3 * hid],
                            rows,
                            3 * hid,
                            3 * hid,
                            1,
                        ),
                        super::linalg::Mat::new(&w, 3 * hid, hid, hid, 1),
                        &mut dh,
                        hid,
                        true,
                    );
                }
                // dW_hh = sum over (t, row) of dG^T h_prev: [3H, T*rows] x [T*rows, H].
                let n = steps * rows;
                let mut dw = vec![0f32; 3 * hid * hid];
                super::linalg::gemm(
                    super::linalg::Mat::new(&dgh, 3 * hid, n, 1, 3 * hid),
                    super::linalg::Mat::new(&h_prev, n, hid, hid, 1),
                    &mut dw,
                    hid,
                    false,
                );
                let mut db = vec![0f32; 3 * hid];
                for row in dgh.chunks_exact(3 * hid) {
                    for (acc, v) in db.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
                (dw, db)
            })
            .collect();
        debug_assert_eq!(partial.len(), n_chunks);
        let mut dw = vec![0f32; 3 * hid * hid];
        let mut db = vec![0f32; 3 * hid];
        for (pw, pb) in &partial {
            dw.iter_mut().zip(pw).for_each(|(a, v)| *a += v);
            db.iter_mut().zip(pb).for_each(|(a, v)| *a += v);
        }
        let device = gi.device();
        Ok((
            Some(Tensor::from_vec(dgi, gi.shape(), device)?),
            Some(Tensor::from_vec(dw, (3 * hid, hid), device)?),
            Some(Tensor::from_vec(db, 3 * hid, device)?),
        ))
    }
}

/// The gate arithmetic of one row, vectorised: libm's `expf`/`tanhf` are scalar calls and were
/// the largest cost of the recurrence, so exp is a Cephes-style polynomial (relative error
/// ~2e-7) that LLVM turns into AVX2 code, and tanh(x) = 2 sigmoid(2x) - 1.
mod gates {
    #[inline(always)]
    fn exp(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        let x = x.clamp(-87.0, 88.0);
        let k = (x * LOG2E + 0.5).floor();
        let r = x - k * LN2_HI - k * LN2_LO;
        let mut p = 1.987_569_1e-4;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        y * f32::from_bits(((k as i32 + 127) << 23) as u32)
    }

    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + exp(-x))
    }

    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        2.0 * sigmoid(2.0 * x) - 1.0
    }

    /// gi, gh: [3H] (r, z, n); h: [H], updated in place; saved: [4H] gets r, z, n, W_hn h + b_hn.
    #[inline(always)]
    fn forward_row_generic(gi: &[f32], gh: &[f32], h: &mut [f32], saved: &mut [f32]) {
        let hid = h.len();
        let (gi_r, gi_zn) = gi[..3 * hid].split_at(hid);
        let (gi_z, gi_n) = gi_zn.split_at(hid);
        let (gh_r, gh_zn) = gh[..3 * hid].split_at(hid);
        let (gh_z, gh_n) = gh_zn.split_at(hid);
        let (s_r, s_rest) = saved[..4 * hid].split_at_mut(hid);
        let (s_z, s_rest) = s_rest.split_at_mut(hid);
        let (s_n, s_hn) = s_rest.split_at_mut(hid);
        for j in 0..hid {
            let r = sigmoid(gi_r[j] + gh_r[j]);
            let z = sigmoid(gi_z[j] + gh_z[j]);
            let hn = gh_n[j];
            let n = tanh(gi_n[j] + r * hn);
            h[j] = (1.0 - z) * n + z * h[j];
            s_r[j] = r;
            s_z[j] = z;
            s_n[j] = n;
            s_hn[j] = hn;
        }
    }

    pub fn forward_row(gi: &[f32], gh: &[f32], h: &mut [f32], saved: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { forward_row_avx2(gi, gh, h, saved) };
            return;
        }
        forward_row_generic(gi, gh, h, saved)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn forward_row_avx2(gi: &[f32], gh: &[f32], h: &mut [f32], saved: &mut [f32]) {
        forward_row_generic(gi, gh, h, saved)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn fast_exp_sigmoid_tanh_are_accurate() {
            for i in -2000..=2000 {
                let x = i as f32 * 0.01;
                let rel = (super::exp(x) - x.exp()).abs() / x.exp();
                assert!(rel < 1e-6, "exp({x}) off by {rel}");
                assert!((super::sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-6);
                assert!((super::tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            }
            assert!(super::exp(-200.0) >= 0.0 && super::exp(-200.0) < 1e-37);
            assert!(super::exp(200.0).is_finite());
            assert!(super::sigmoid(-200.0) < 1e-37 && super::sigmoid(200.0) == 1.0);
        }
    }
}
